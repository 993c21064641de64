"""Anchor for benches/map_write.rs: a 64-volume float32 map of the voxels of a mask
written as .nii.gz by nibabel (nilearn's `unmask` then `to_filename`, gzip level 1).
The values are the bench's closed form. Prints volumes, voxels and their sum, then
`seconds peak_mib`."""
import resource
import sys
import time

import nibabel as nib
import numpy as np

mask_img = nib.load(sys.argv[1])
mask = np.asarray(mask_img.dataobj) != 0
volumes = int(sys.argv[3])
voxels = int(mask.sum())
a = np.arange(volumes, dtype=np.float64)[:, None]
v = np.arange(voxels, dtype=np.float64)[None, :]
values = (np.sin(a * 0.37 + v * 0.0013) * (1.0 + a)).astype(np.float32)

t = time.perf_counter()
data = np.zeros(mask.shape + (volumes,), dtype=np.float32)
data[mask] = values.T
nib.Nifti1Image(data, mask_img.affine).to_filename(sys.argv[2])
secs = time.perf_counter() - t
print(volumes, voxels, values.astype(np.float64).sum())
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
