#!/usr/bin/env python3
"""Reopens a map written by cortexflow with nibabel and compares it with the stored
expectation (shape, affine, TR, values). Usage: check_map.py MAP.nii.gz EXPECT.json"""
import json
import sys

import nibabel as nib
import numpy as np

img = nib.load(sys.argv[1])
exp = json.load(open(sys.argv[2]))
assert list(img.shape) == exp["shape"], (img.shape, exp["shape"])
assert np.allclose(img.affine[:3], exp["affine"], atol=1e-5), img.affine
assert abs(float(img.header.get_zooms()[3]) - exp["tr"]) < 1e-6
assert img.header.get_xyzt_units() == ("mm", "sec"), img.header.get_xyzt_units()
values = np.asarray(img.get_fdata()).reshape(-1, order="F")
assert np.array_equal(values, np.asarray(exp["values"])), "values differ"
print("ok", sys.argv[1])
