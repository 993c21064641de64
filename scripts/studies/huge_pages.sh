#!/usr/bin/env bash
# Small pages or transparent huge pages: the study behind `io::pages` (every command turns
# THP off for its process unless CORTEXFLOW_HUGE_PAGES=1).
#
# Alternates the two settings REPS times over three cases: the forward pass of the models
# bench (SmolLM2-135M and MiniLM-L6, 1,024 tokens, every tap, 2 threads; its timed part)
# and `run` of dataflows/paper.toml (surrogates 0) on the 2 mm simulation of issue 18
# (65,984 voxels, 2 subjects × 2 runs × 150 scans; wall time).
#
#   REPS=5 OUT=/tmp/huge_pages bash scripts/studies/huge_pages.sh
#
# Writes $OUT/huge_pages.tsv (case, setting, rep, seconds, system seconds, peak KiB) and
# prints the medians the README's table shows; TABLE=1 reprints them from an existing $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-5}
OUT=${OUT:-/tmp/huge_pages}
BIN=${BIN:-target/release/cortexflow}
mkdir -p "$OUT"
TSV="$OUT/huge_pages.tsv"
if [ -z "${TABLE:-}" ]; then
  cargo build --release --quiet
  BENCH=$(cargo bench --bench models --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
  [ -d "$OUT/sim" ] || "$BIN" simulate --grid 2mm --subjects 2 --runs 2 --scans 150 --seed 17 --out "$OUT/sim" > /dev/null
  sed 's/^surrogates = 1000/surrogates = 0/' dataflows/paper.toml > "$OUT/paper0.toml"
  printf 'case\tsetting\trep\tseconds\tsystem_s\tpeak_kib\n' > "$TSV"
  measure() { # case setting rep env... -- command...
    local case=$1 setting=$2 rep=$3; shift 3
    local log="$OUT/last.log"
    /usr/bin/time -o "$OUT/time" -f "%e %S %M" env "$@" > "$log" 2>&1 || { cat "$log" >&2; exit 1; }
    read -r wall sys peak < "$OUT/time"
    # The bench child prints its timed seconds on its last line; `run` is timed whole.
    local secs=$wall
    [ "$case" = run_2mm ] || secs=$(tail -1 "$log" | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$setting" "$rep" "$secs" "$sys" "$peak" >> "$TSV"
  }
  for rep in $(seq 1 "$REPS"); do
    for setting in small huge; do
      pages=CORTEXFLOW_HUGE_PAGES=$([ $setting = huge ] && echo 1 || echo 0)
      echo "== rep $rep, $setting pages" >&2
      measure forward_SmolLM2 $setting "$rep" $pages RAYON_NUM_THREADS=2 "$BENCH" --child models/SmolLM2-135M-Instruct.Q4_1.gguf
      measure forward_MiniLM $setting "$rep" $pages RAYON_NUM_THREADS=2 "$BENCH" --child models/all-MiniLM-L6-v2
      rm -rf "$OUT/store"
      measure run_2mm $setting "$rep" $pages "$BIN" run "$OUT/paper0.toml" --data "$OUT/sim" \
        --responses "$OUT/sim/truth/responses" --out "$OUT/store"
    done
  done
fi
python3 - "$TSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| case | small pages (median s, system s) | huge pages (median s, system s) | huge / small |")
print("|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    med = {}
    for setting in ("small", "huge"):
        sel = [r for r in rows if r["case"] == case and r["setting"] == setting]
        med[setting] = (statistics.median(float(r["seconds"]) for r in sel),
                        statistics.median(float(r["system_s"]) for r in sel), len(sel))
    (s, ss, n), (h, hs, _) = med["small"], med["huge"]
    print(f"| {case} ({n} runs each) | {s:.3f} s, {ss:.2f} s | {h:.3f} s, {hs:.2f} s | {h / s:.2f}× |")
EOF
