"""Anchor for benches/basis.rs: SPAMS trainDL (Mairal's online dictionary learning, the
method's reference implementation) then spams.lasso for the final codes of every sample.
Usage: basis_spams.py MATRIX.f32 T N K LAMBDA EPOCHS. Prints `T K objective`, then
`seconds peak_mib`; the seconds cover learning and the final codes (as the cortexflow side).
EPOCHS passes of batch 256 are ⌈EPOCHS·N/256⌉ iterations of trainDL."""
import resource
import sys
import time

import numpy as np
import spams

path, t, n, k, lam, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
x = np.asfortranarray(np.fromfile(path, dtype="<f4").astype(np.float64).reshape(t, n))
start = time.perf_counter()
d = spams.trainDL(x, K=k, lambda1=lam, iter=-(-epochs * n // 256), batchsize=256, mode=2, numThreads=2, verbose=False)
codes = spams.lasso(x, D=np.asfortranarray(d), lambda1=lam, mode=2, numThreads=2)
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before the objective's dense residual
codes = codes.toarray()
obj = 0.5 * float(((x - d @ codes) ** 2).sum()) + lam * float(np.abs(codes).sum())
print(t, k, obj)
print(secs, peak)
