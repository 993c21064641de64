"""Anchor for benches/nifti_read.rs: nibabel + numpy read of a 4D run inside a mask, or,
given a third argument, nilearn's `smooth_img` at that FWHM (mm) first.
Prints the shape and sum, then `seconds peak_mib`."""
import resource
import sys
import time

import nibabel as nib
import numpy as np

t = time.perf_counter()
mask = np.asarray(nib.load(sys.argv[2]).dataobj) != 0
img = nib.load(sys.argv[1])
if len(sys.argv) > 3:
    from nilearn.image import smooth_img

    img = smooth_img(img, float(sys.argv[3]))
data = np.asarray(img.dataobj, dtype=np.float32)
x = np.ascontiguousarray(data[mask].T)
secs = time.perf_counter() - t
print(*x.shape, x.astype(np.float64).sum())
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
