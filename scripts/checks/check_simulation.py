#!/usr/bin/env python3
"""Reopens a `cortexflow simulate` dataset with nibabel and pyarrow and checks that TR,
shapes, affines and ground truth agree. Usage: check_simulation.py DIR"""
import json
import pathlib
import sys

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq

root = pathlib.Path(sys.argv[1])
truth = json.load(open(root / "truth/planted.json"))
mask = nib.load(root / "mask.nii.gz")
maps = nib.load(root / "truth/maps.nii.gz")
atlas = next((root / "atlas").glob("*.nii.gz"))
atlas = nib.load(atlas)
assert np.allclose(mask.affine, atlas.affine) and np.allclose(maps.affine, atlas.affine)
assert maps.shape == atlas.shape + (len(truth["networks"]),)
labels = np.asarray(atlas.dataobj)
for g, net in enumerate(truth["networks"]):
    assert np.array_equal(maps.get_fdata()[..., g] > 0, labels == net["label"]), net["name"]
    assert len(net["an_ids"]) == len(set(net["an_ids"]))
neurons = pq.read_table(root / "truth/neurons.parquet")
assert neurons.num_rows == truth["n_neurons"]
runs = {r["run"]: r for r in truth["runs"]}
bolds = sorted(root.glob("sub-*/func/*_bold.nii.gz"))
assert len(bolds) == len(truth["subjects"]) * len(runs), bolds
for path in bolds:
    img = nib.load(path)
    run = path.name.split("_run-")[1].split("_")[0]
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert abs(float(img.header.get_zooms()[3]) - truth["tr"]) < 1e-6
    assert img.shape == atlas.shape + (runs[run]["n_scans"],), (path, img.shape)
    assert np.allclose(img.affine, atlas.affine)
    data = img.get_fdata()
    inside = np.asarray(mask.dataobj) > 0
    assert np.all(data[~inside] == 0) and np.all(data[inside].std(axis=1) > 0)
for key, r in runs.items():
    tc = pq.read_table(root / f"truth/timecourses/task-{truth['task']}_run-{key}.parquet")
    values = np.array(tc.column("values").to_pylist())
    assert values.shape == (len(truth["networks"]), r["n_scans"])
    assert np.allclose(values.mean(axis=1), 0, atol=1e-5) and np.allclose(values.std(axis=1), 1, atol=1e-4)
    words = (root / r["stimulus"]).read_text().splitlines()
    assert len(words) == r["n_words"] + 1
print("ok", root)
