"""Anchor for benches/encoding.rs: himalaya RidgeCV (numpy backend), leave-one-run-out.
Usage: encoding.py X.f32 Y.f32 V RUNS SCANS. Prints `p V Σβ`, then `seconds peak_mib`."""
import resource
import sys
import time

import numpy as np
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from sklearn.model_selection import LeaveOneGroupOut

xp, yp, v, runs, scans = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
set_backend("numpy")
start = time.perf_counter()
x = np.fromfile(xp, dtype="<f4").reshape(runs * scans, -1).astype(np.float64)
y = np.fromfile(yp, dtype="<f4").reshape(runs * scans, v).astype(np.float64)
groups = np.repeat(np.arange(runs), scans)
model = RidgeCV(alphas=np.logspace(-2, 5, 10), cv=list(LeaveOneGroupOut().split(x, groups=groups)), fit_intercept=False)
model.fit(x, y)
secs = time.perf_counter() - start
coef = np.asarray(model.coef_)
print(coef.shape[0], coef.shape[1], float(coef.sum()))
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
