"""Anchor for benches/encoding.rs: himalaya RidgeCV (numpy backend), leave-one-run-out.
Usage: encoding.py X.f32 Y.f32 V RUNS SCANS [float64|float32]. Prints `p V Σβ`, then
`seconds peak_mib`; with ALPHAS_OUT set, writes each voxel's chosen α there (f64). float32 is the precision himalaya's documentation recommends for speed;
float64 (the default) matches cortexflow's arithmetic."""
import os
import resource
import sys
import time

import numpy as np
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from sklearn.model_selection import LeaveOneGroupOut

xp, yp, v, runs, scans = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
dtype = np.dtype(sys.argv[6] if len(sys.argv) > 6 else "float64")
set_backend("numpy")
start = time.perf_counter()
x = np.fromfile(xp, dtype="<f4").reshape(runs * scans, -1).astype(dtype)
y = np.fromfile(yp, dtype="<f4").reshape(runs * scans, v).astype(dtype)
groups = np.repeat(np.arange(runs), scans)
model = RidgeCV(alphas=np.logspace(-2, 5, 10), cv=list(LeaveOneGroupOut().split(x, groups=groups)), fit_intercept=False)
model.fit(x, y)
secs = time.perf_counter() - start
coef = np.asarray(model.coef_)
if os.environ.get("ALPHAS_OUT"):
    np.asarray(model.best_alphas_, dtype="<f8").tofile(os.environ["ALPHAS_OUT"])
print(coef.shape[0], coef.shape[1], float(coef.astype(np.float64).sum()))
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
