#!/usr/bin/env bash
# Noise ceiling: which ISC a voxel needs to count as "reliable" (the summary's medians are
# over those voxels; `cortexflow ceiling --min-isc`, default MIN_ISC in src/stages/ceiling.rs).
#
# For seeds 1..N: a `--null` simulation (no shared signal; seed 1000 + s) and a planted one
# (seed s), 6 subjects × 2 runs of the default scans, analysed with dataflows/demo.toml on
# the simulation's own ANs (its model path removed: the encoding models then hold the
# planted courses, so their cv_r should reach the ceiling), then `cortexflow ceiling`. Scored by ceiling_null_score.py: the null voxels' ISC quantiles
# (pooled over seeds and per seed), and on planted data the share of planted voxels (any
# planted network) and of the others above each candidate cut, with the median cv_r /
# ceiling over the planted voxels.
#
# Then null simulations of 3 subjects × 100 scans and 12 subjects (default scans) check
# that the default cut, scaled as 1/√(pairs × scans), holds the null share as low.
#
# usage: scripts/studies/ceiling_null.sh [seeds=10] [cortexflow binary]
set -euo pipefail
seeds=${1:-10}
cf=$(realpath "${2:-target/release/cortexflow}")
here=$(realpath "$(dirname "$0")")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
recipe=$work/recipe.toml
sed '/^path = /d' "$here/../../dataflows/demo.toml" > "$recipe"
out=${OUT:-$here/results/ceiling_null.tsv}
python3 "$here/ceiling_null_score.py" header > "$out"
for seed in $(seq 1 "$seeds"); do
  for kind in null planted; do
    rm -rf "$work/sim" "$work/store"
    case $kind in
      null) "$cf" simulate --out "$work/sim" --subjects 6 --runs 2 --seed "$((1000 + seed))" --null >/dev/null ;;
      planted) "$cf" simulate --out "$work/sim" --subjects 6 --runs 2 --seed "$seed" >/dev/null ;;
    esac
    "$cf" run "$recipe" --data "$work/sim" --out "$work/store" >/dev/null
    "$cf" ceiling "$work/store" >/dev/null
    python3 "$here/ceiling_null_score.py" row "$seed" "$kind" "$work/store" "$work/sim" | tee -a "$out" >&2
  done
done
python3 "$here/ceiling_null_score.py" table "$out"

# The default cut scales as 1/√(pairs × scans): null simulations of other sizes, seeds 1..5,
# the share of voxels above the cut `ceiling` chose for them (ceiling.json's min_isc).
echo
echo "| null simulations | seeds | default cut | share of voxels above it (mean, max) |"
echo "|---|---|---|---|"
for size in "3 100" "12 0"; do
  read -r subjects scans <<< "$size"
  shares=()
  for seed in $(seq 1 5); do
    rm -rf "$work/sim" "$work/store"
    extra=(); [[ $scans != 0 ]] && extra=(--scans "$scans")
    "$cf" simulate --out "$work/sim" --subjects "$subjects" --runs 2 --seed "$((2000 + seed))" --null "${extra[@]}" >/dev/null
    "$cf" run "$recipe" --data "$work/sim" --out "$work/store" >/dev/null
    shares+=("$(python3 -c "
import json, numpy as np, pyarrow.parquet as pq
cut = json.load(open('$work/store/ceiling/ceiling.json'))['min_isc']
isc = pq.read_table('$work/store/ceiling/voxels.parquet').column('isc').to_numpy()
print(f'{cut:.3f} {(isc[np.isfinite(isc)] > cut).mean():.5f}')")")
  done
  printf '%s\n' "${shares[@]}" | awk -v s="$subjects" -v t="$scans" -v n="${#shares[@]}" '{ c = $1; m += $2; if ($2 > x) x = $2 } END { printf "| %s subjects × 2 runs of %s scans | %d | %s | %.5f, %.5f |\n", s, (t == 0 ? "the default" : t), n, c, m / n, x }'
done
