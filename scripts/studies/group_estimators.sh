#!/usr/bin/env bash
# Group estimator study (issue 16): which subject-level β should the group test take?
# For each seed × jitter (0, 1 voxel) × SNR (0.25, 0.5), one simulation (6 subjects × 2
# runs, default scans); `run` with dataflows/paper.toml (8 mm smoothing, FDR 0.05, Yeo-7,
# IoU 0.2) at K = 16 and 64 atoms, under each estimator (ols, ridge, marginal), scored by
# `cortexflow recovery`. Then NULL `--null` seeds at K = 64 under each estimator.
# Per condition: seeds where every planted network is recovered (an assigned atom's map
# has Dice ≥ 0.7 with the planted map), seeds where every network's tied ANs (by their
# dominant atom) match the planted ANs with F1 ≥ 0.8, seeds with both, mean best Dice,
# mean and minimum AN F1, and false assignments. Prints markdown tables; every scored run
# goes to stderr and, with OUT=file, to a TSV.
# Usage: scripts/studies/group_estimators.sh [SEEDS=10] [NULL=10] [CORTEXFLOW=target/release/cortexflow]
# FIRST=F runs seeds F..SEEDS and null seeds F..NULL (so two processes can share the work
# on a 2-core machine, each with its own OUT); TABLE=a.tsv,b.tsv only prints the tables of
# finished TSVs.
set -euo pipefail
seeds=${1:-10}
nulls=${2:-10}
first=${FIRST:-1}
read -r -a estimators <<< "${ESTIMATORS:-ols ridge marginal}"
read -r -a atoms <<< "${ATOMS:-16 64}"

# The tables from TSV rows (runs and nulls), averaged over the seeds present.
table() {
  echo "| atoms | estimator | jitter | SNR | seeds | all 3 recovered | every AN F1 ≥ 0.8 | both | mean best Dice | mean AN F1 | min AN F1 | false assignments |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '$1 != "seed" && $2 != "null" {
      key = $4 "\t" $5 "\t" $2 "\t" $3; if (!(key in n)) { lo[key] = 1 }
      n[key]++; all3[key] += ($7 == 3); dice[key] += $8; wrong[key] += $9; f1[key] += $11
      if ($12 < lo[key]) lo[key] = $12; good[key] += ($12 >= 0.8); both[key] += ($7 == 3 && $12 >= 0.8) }
    END { for (k in n) { split(k, p, "\t");
      printf "| %s | %s | %s | %s | %d | %d | %d | %d | %.3f | %.3f | %.3f | %d |\n", p[1], p[2], p[3], p[4], n[k], all3[k], good[k], both[k], dice[k] / n[k], f1[k] / n[k], lo[k], wrong[k] } }' "$@" \
    | sort -t'|' -k2,2n -k3,3 -k4,4n -k5,5n
  echo
  echo "| estimator (64 atoms) | null simulations with no assignment |"
  echo "|---|---|"
  awk -F'\t' '$2 == "null" { n[$5]++; clean[$5] += ($9 == 0) }
    END { for (e in n) printf "| %s | %d / %d |\n", e, clean[e], n[e] }' "$@" | sort
}
if [[ -n ${TABLE:-} ]]; then
  IFS=, read -r -a files <<< "$TABLE"
  table "${files[@]}"
  exit 0
fi

cf=$(realpath "${3:-target/release/cortexflow}")
paper=$(realpath "$(dirname "$0")/../../dataflows/paper.toml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tsv=${OUT:-$work/rows.tsv}
echo -e "seed\tjitter\tsnr\tatoms\testimator\tassigned\trecovered\tdice\tfalse\tsubgroup_f1\tan_f1\tmin_an_f1" > "$tsv"

for k in "${atoms[@]}"; do
  for e in "${estimators[@]}"; do
    # The paper recipe with K atoms and estimator e; without its surrogates, which score
    # assignments but do not change them.
    sed -e "s/^atoms = 64/atoms = $k/" -e "s/^estimator = .*/estimator = \"$e\"/" -e "/^surrogates = /d" "$paper" > "$work/$k-$e.toml"
  done
done

# summary: A of 3 … assigned, R recovered …, mean best Dice D, F false …, mean sub-group F1 S, mean AN F1 M, min AN F1 N
score() {
  "$cf" recovery --data "$1" "$2" | sed -n 's/^summary: \([0-9]*\) of [0-9]* planted networks assigned, \([0-9]*\) recovered.*mean best Dice \([0-9.]*\), \([0-9]*\) false assignments, mean sub-group F1 \([0-9.]*\), mean AN F1 \([0-9.]*\), min AN F1 \([0-9.inf]*\)/\1 \2 \3 \4 \5 \6 \7/p'
}
analyse() { # dataset, recipe: prints the score
  rm -rf "$work/store"
  "$cf" run "$2" --data "$1" --out "$work/store" >/dev/null
  score "$1" "$work/store"
}
record() { # seed jitter snr atoms estimator dataset
  local a r d f s m n
  read -r a r d f s m n < <(analyse "$6" "$work/$4-$5.toml")
  echo "seed $1 jitter $2 snr $3 K $4 $5: assigned $a, recovered $r, Dice $d, false $f, sub-group F1 $s, AN F1 $m (min $n)" >&2
  echo -e "$1\t$2\t$3\t$4\t$5\t$a\t$r\t$d\t$f\t$s\t$m\t$n" >> "$tsv"
}

for seed in $(seq "$first" "$seeds"); do
  for jitter in 0 1; do
    for snr in 0.25 0.5; do
      rm -rf "$work/sim"
      "$cf" simulate --out "$work/sim" --subjects 6 --runs 2 --seed "$seed" --jitter "$jitter" --snr "$snr" >/dev/null
      for k in "${atoms[@]}"; do
        for e in "${estimators[@]}"; do record "$seed" "$jitter" "$snr" "$k" "$e" "$work/sim"; done
      done
    done
  done
done
for seed in $(seq "$first" "$nulls"); do
  rm -rf "$work/null"
  "$cf" simulate --out "$work/null" --subjects 6 --runs 2 --seed "$((1000 + seed))" --null >/dev/null
  for e in "${estimators[@]}"; do record "$((1000 + seed))" null - 64 "$e" "$work/null"; done
done
table "$tsv"
