"""Scores AN → network rules of finished demo runs (see an_ties.sh) against the planted
equivalent ANs. Usage: an_ties_score.py OUT MODEL... (runs in OUT/<model>-<seed>/)."""
import glob
import json
import os
import sys

import numpy as np
import pandas as pd

RULES = [("dominant", None), ("share", 0.3), ("share", 0.4)] + [
    (rule, c) for rule in ("course", "split") for c in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8)]


def ties(store, rule, cut):
    """{an_id: network} under a rule, from the store's tables."""
    if rule in ("dominant", "share"):
        sg = pd.read_parquet(f"{store}/map/subgroups.parquet").dropna(subset=["fbn"])
        if rule == "share":
            sg = sg[sg.share >= cut]
        return dict(zip(sg.an_id, sg.fbn))
    af = pd.read_parquet(f"{store}/map/an_fbn.parquet")
    r = af.r if rule == "course" else af.r_split  # over all stories, or what both halves agree on
    af = af[r.abs() >= cut].assign(a=r.abs())
    best = af.sort_values(["an_id", "a", "fbn"], ascending=[True, False, True]).drop_duplicates("an_id")
    return dict(zip(best.an_id, best.fbn))


def main(out, models):
    rows = []
    for model in models:
        for run in sorted(glob.glob(f"{out}/{model}-*/store/map/an_fbn.parquet")):
            d = run.split("/store/")[0]
            seed = int(d.rsplit("-", 1)[1])
            planted = json.load(open(f"{d}/data/truth/planted.json"))
            layer = dict(zip(*pd.read_parquet(f"{d}/data/truth/neurons.parquet")[["an_id", "layer"]].T.values))
            for rule, cut in RULES:
                tie = ties(f"{d}/store", rule, cut)
                for net in planted["networks"]:
                    truth = set(net["equivalent_an_ids"])
                    tied = {a for a, n in tie.items() if n == net["name"]}
                    for l in [None] + sorted(set(layer.values())):
                        keep = (lambda s: s) if l is None else (lambda s, l=l: {a for a in s if layer[a] == l})
                        t, e = keep(tied), keep(truth)
                        rows.append(dict(model=model, seed=seed, rule=rule, cut=cut if cut is not None else np.nan,
                                         network=net["name"], layer=-1 if l is None else int(l),
                                         truth=len(e), tied=len(t), hits=len(t & e)))
    df = pd.DataFrame(rows)
    df.to_csv(f"{out}/an_ties.tsv", sep="\t", index=False)
    whole = df[df.layer == -1].groupby(["model", "rule", "cut", "seed"], dropna=False)[["truth", "tied", "hits"]].sum().reset_index()
    whole["recall"] = whole.hits / whole.truth
    whole["precision"] = whole.hits / whole.tied.replace(0, np.nan)
    whole["both"] = (whole.recall >= 0.8) & (whole.precision >= 0.8)
    table = whole.groupby(["model", "rule", "cut"], dropna=False).agg(
        seeds=("seed", "count"), equivalent=("truth", "mean"), tied=("tied", "mean"),
        recall=("recall", "mean"), min_recall=("recall", "min"),
        precision=("precision", "mean"), min_precision=("precision", "min"), both=("both", "sum"),
        hits=("hits", "sum"), all_truth=("truth", "sum"), all_tied=("tied", "sum"))
    # Pooled over the seeds' ANs: every equivalent AN counted once, whichever seed.
    table["pooled_recall"] = table.hits / table.all_truth
    table["pooled_precision"] = table.hits / table.all_tied.replace(0, np.nan)
    table = table.drop(columns=["hits", "all_truth", "all_tied"])
    pd.set_option("display.width", 200)
    print(table.round(2).to_string())
    print("\nper seed (pooled over the planted networks):")
    print(whole.round(2).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
