"""Anchor for benches/ceiling.rs: BrainIAK's pairwise ISC of one story. argv: folder of
subject files (sub-*.f32, scans × voxels, float32 little-endian), scans, voxels. BrainIAK
needs every subject's series at once (T × V × S), then gives each pair's r per voxel; their
arithmetic mean is cortexflow's ISC. Prints `subjects voxels sum_of_isc`, then
`seconds peak_mib`; the time includes reading the files."""
import resource
import sys
import time
from pathlib import Path

import numpy as np
from brainiak.isc import isc

folder, t, v = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
files = sorted(folder.glob("sub-*.f32"))
data = np.stack([np.fromfile(f, dtype="<f4").reshape(t, v).astype(np.float64) for f in files], axis=2)
r = isc(data, pairwise=True, summary_statistic=None)
mean = r.mean(axis=0)
secs = time.perf_counter() - t0
print(len(files), v, mean.sum())
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
