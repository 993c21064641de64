"""Anchor for benches/surrogates.rs: BrainSMASH's variogram-matched surrogates (Base, with
the full distance matrix, resample=True) of one map on a mask. argv: values (float64 file),
voxel coordinates in mm (float64 file, n × 3), surrogates. Prints `surrogates voxels sum`
(the sum of all surrogate values: each is the map's values reordered), then
`seconds peak_mib`; the time includes the distance matrix and BrainSMASH's set-up."""
import resource
import sys
import time

import numpy as np
from brainsmash.mapgen.base import Base
from scipy.spatial.distance import cdist

x = np.fromfile(sys.argv[1], dtype="<f8")
xyz = np.fromfile(sys.argv[2], dtype="<f8").reshape(-1, 3)
n = int(sys.argv[3])
t0 = time.perf_counter()
base = Base(x, cdist(xyz, xyz), resample=True, seed=0)
s = np.atleast_2d(base(n=n))
secs = time.perf_counter() - t0
print(n, s.shape[1], s.sum())
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
