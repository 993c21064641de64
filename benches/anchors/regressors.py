"""Anchor for benches/regressors.rs: nilearn compute_regressor per AN on LPP section 1
(amplitudes sin(word index + AN index)). Prints the shape and sum, then `seconds peak_mib`."""
import re
import resource
import sys
import time

import numpy as np
from nilearn.glm.first_level import compute_regressor

raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-16") if raw[:2] in (b"\xfe\xff", b"\xff\xfe") else raw.decode("utf-8")
words = [(float(a), t) for a, b, t in re.findall(r'xmin = ([-\d.e]+)\s*\n\s*xmax = ([-\d.e]+)\s*\n\s*text = "((?:[^"]|"")*)"', text)
         if t.strip() not in ("", "#", "sp", "sil")]
end = float(re.search(r"xmax = ([\d.]+)", text).group(1))
n_an, tr = int(sys.argv[2]), 2.0
t = time.perf_counter()
onsets = np.array([w[0] for w in words])
frame_times = np.arange(int(np.ceil(end / tr))) * tr
idx = np.arange(len(onsets))
x = np.column_stack([
    compute_regressor(np.vstack([onsets, np.zeros_like(onsets), np.sin(idx + u)]), "spm", frame_times, oversampling=50)[0][:, 0]
    for u in range(n_an)
])
secs = time.perf_counter() - t
print(x.shape[0], x.shape[1], x.sum())
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
