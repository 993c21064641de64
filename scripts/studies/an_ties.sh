#!/usr/bin/env bash
# Which rule ties ANs to networks: the recovery study behind `[map] ties` and `tie_r`.
#
# Runs `cortexflow demo` with each real model over several seeds, then scores every rule
# (dominant atom; dominant atom with a share threshold; the network's fitted course with
# several |r| cuts, over all stories or as both halves of the stories agree) against the ANs equivalent to each planted course (planted.json
# `equivalent_an_ids`: |r| ≥ 0.7 on the simulated stories and on a held-out section).
#
#   MODELS="minilm smollm2" SEEDS="0 1 2 3 4 5" OUT=/tmp/an_ties bash scripts/studies/an_ties.sh
#
# Writes $OUT/an_ties.tsv (one row per model, seed, rule and network) and prints the summary
# that the README's "Which ANs belong to a network" table shows; TABLE=1 reprints it from
# an existing $OUT without running anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-"minilm smollm2"}
SEEDS=${SEEDS:-"0 1 2 3 4 5"}
OUT=${OUT:-/tmp/an_ties}
BIN=${BIN:-target/release/cortexflow}
mkdir -p "$OUT"
if [ -z "${TABLE:-}" ]; then
  [ -x "$BIN" ] || cargo build --release
  for m in $MODELS; do
    for s in $SEEDS; do
      d="$OUT/$m-$s"
      [ -f "$d/store/map/an_fbn.parquet" ] && continue
      echo "== $m seed $s" >&2
      "$BIN" demo --model "$m" --seed "$s" --out "$d" > "$d.log" 2>&1 || { echo "failed: see $d.log" >&2; exit 1; }
    done
  done
fi
python3 scripts/studies/an_ties_score.py "$OUT" $MODELS
