#!/usr/bin/env bash
# False-positive rate of the FBN assignment: null simulations (no planted signal) through
# basis → encode → group (FDR 0.05) → map, one per seed; prints the seeds where any atom
# was assigned and the share of seeds with none. Same settings as the planted-recovery test.
# Usage: scripts/checks/group_null_rate.sh [SEEDS=20] [CORTEXFLOW=target/release/cortexflow]
set -euo pipefail
seeds=${1:-20}
cf=$(realpath "${2:-target/release/cortexflow}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
list() { ls "$@" | tr '\n' ',' | sed 's/,$//'; }
clean=0
for seed in $(seq 1 "$seeds"); do
  d="$work/$seed"
  "$cf" simulate --out "$d/sim" --subjects 6 --runs 2 --scans 150 --seed "$seed" --null >/dev/null
  "$cf" basis --responses "$(list "$d"/sim/truth/responses/*.parquet)" --atoms 16 --out "$d/basis" >/dev/null
  "$cf" encode --regressors "$(list "$d"/basis/atoms/*.parquet)" --bold "$(list "$d"/sim/sub-*/func/*_bold.nii.gz)" \
    --mask "$d/sim/mask.nii.gz" --zscore --no-cv --out "$d/enc" >/dev/null
  "$cf" group --encode "$d/enc" --mask "$d/sim/mask.nii.gz" --out "$d/grp" >/dev/null
  summary=$("$cf" map --group "$d/grp" --codes "$d/basis/codes.parquet" --out "$d/map")
  line=${summary%%$'\n'*}
  if [[ $line == *": 0 assigned"* ]]; then clean=$((clean + 1)); else echo "seed $seed: $line"; fi
  rm -rf "$d"
done
echo "null seeds with no assignment: $clean / $seeds"
