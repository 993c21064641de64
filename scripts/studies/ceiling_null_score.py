"""Scores one store's noise ceiling for ceiling_null.sh (see there): `header`, `row SEED
KIND STORE SIM` (one TSV row) and `table TSV` (the README's markdown table)."""
import sys

import numpy as np

CUTS = [0.02, 0.03, 0.05, 0.1]
COLUMNS = ["seed", "kind", "voxels", "q99", "q999", "max"] + [
    f"{w}_above_{c}" for c in CUTS for w in ("planted", "other")
] + ["median_fraction_planted"]


def row(seed, kind, store, sim):
    import nibabel as nib
    import pyarrow.parquet as pq

    t = pq.read_table(f"{store}/ceiling/voxels.parquet").to_pandas()
    isc = t["isc"].to_numpy(float)
    ok = np.isfinite(isc)
    maps = np.asarray(nib.load(f"{sim}/truth/maps.nii.gz").dataobj)
    planted = (np.abs(maps) > 0).any(axis=3)[t["i"], t["j"], t["k"]] if kind == "planted" else np.zeros(len(t), bool)
    out = [seed, kind, int(ok.sum())] + [f"{x:.4f}" for x in np.quantile(isc[ok], [0.99, 0.999])] + [f"{isc[ok].max():.4f}"]
    for c in CUTS:
        for where in (planted & ok, ~planted & ok):
            out.append(f"{(isc[where] > c).mean():.4f}" if where.any() else "nan")
    frac = t["fraction"].to_numpy(float)[planted & ok]
    frac = frac[np.isfinite(frac)]
    out.append(f"{np.median(frac):.3f}" if frac.size else "nan")
    return "\t".join(map(str, out))


def table(path):
    import pandas as pd

    d = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["nan"])
    null, planted = d[d.kind == "null"], d[d.kind == "planted"]
    print(f"| simulations | seeds | ISC 99th pct | 99.9th pct | max | " + " | ".join(f"above {c}" for c in CUTS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(CUTS))
    print(f"| null, all voxels | {len(null)} | {null.q99.mean():.3f} | {null.q999.mean():.3f} | {null['max'].max():.3f} | "
          + " | ".join(f"{null[f'other_above_{c}'].mean():.4f}" for c in CUTS) + " |")
    print(f"| planted, planted voxels | {len(planted)} | | | | "
          + " | ".join(f"{planted[f'planted_above_{c}'].mean():.3f}" for c in CUTS) + " |")
    print(f"| planted, other voxels | {len(planted)} | | | | "
          + " | ".join(f"{planted[f'other_above_{c}'].mean():.3f}" for c in CUTS) + " |")
    print()
    print(f"median cv_r / ceiling over planted voxels: {planted.median_fraction_planted.mean():.2f} "
          f"(seeds {planted.median_fraction_planted.min():.2f}–{planted.median_fraction_planted.max():.2f})")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "header":
        print("\t".join(COLUMNS))
    elif what == "row":
        print(row(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
    else:
        table(sys.argv[2])
