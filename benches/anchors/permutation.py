"""Anchor for benches/permutation.rs: nilearn's permuted_ols as non_parametric_inference
calls it for a one-sample design (intercept tested, two-sided, max-t FWER), once per atom
map. Reads subjects × atoms × voxels float64 from argv[1] (shape in argv[2:5]), argv[5]
sign flips. Prints `atoms voxels sum(t)`, then `seconds peak_mib`."""
import resource
import sys
import time

import numpy as np
from nilearn.mass_univariate import permuted_ols

subjects, atoms, voxels, n_perm = (int(a) for a in sys.argv[2:6])
beta = np.fromfile(sys.argv[1], dtype="<f8").reshape(subjects, atoms, voxels)
t0 = time.perf_counter()
total = 0.0
for a in range(atoms):
    r = permuted_ols(np.ones((subjects, 1)), beta[:, a, :], model_intercept=False, n_perm=n_perm,
                     two_sided_test=True, random_state=a, n_jobs=2, output_type="dict", verbose=0)
    total += r["t"].sum()
secs = time.perf_counter() - t0
print(atoms, voxels, total)
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
