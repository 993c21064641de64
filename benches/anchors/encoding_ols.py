"""Anchor for benches/encoding.rs: nilearn's OLSModel (what FirstLevelModel(noise_model="ols")
fits), β and t of every regressor. Usage: encoding_ols.py X.f32 Y.f32 V RUNS SCANS.
Prints `p V Σβ`, then `seconds peak_mib`."""
import resource
import sys
import time

import numpy as np
from nilearn.glm import OLSModel

xp, yp, v, runs, scans = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
start = time.perf_counter()
x = np.fromfile(xp, dtype="<f4").reshape(runs * scans, -1).astype(np.float64)
y = np.fromfile(yp, dtype="<f4").reshape(runs * scans, v).astype(np.float64)
results = OLSModel(x).fit(y)
t = np.stack([results.t(column=j) for j in range(x.shape[1])])
secs = time.perf_counter() - start
assert np.isfinite(t).all()
print(results.theta.shape[0], results.theta.shape[1], float(results.theta.sum()))
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
