"""Anchor for benches/basis.rs: scikit-learn MiniBatchDictionaryLearning on the same matrix.
Usage: basis.py MATRIX.f32 T N K LAMBDA EPOCHS. Prints `T K objective`, then `seconds peak_mib`."""
import resource
import sys
import time

import numpy as np
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode

path, t, n, k, lam, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
x = np.fromfile(path, dtype="<f4").astype(np.float64).reshape(t, n)
start = time.perf_counter()
m = MiniBatchDictionaryLearning(n_components=k, alpha=lam, batch_size=256, max_iter=epochs, tol=0.0, max_no_improvement=None, random_state=0)
m.fit(x.T)
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before the objective's dense residual
codes = sparse_encode(x.T, m.components_, algorithm="lasso_cd", alpha=lam, max_iter=1000)
obj = 0.5 * float(((x.T - codes @ m.components_) ** 2).sum()) + lam * float(np.abs(codes).sum())
print(t, k, obj)
print(secs, peak)
