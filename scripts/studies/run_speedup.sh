#!/usr/bin/env bash
# Issue 18's main measure: `run` of dataflows/paper.toml (surrogates 0) on its 2 mm
# simulation (65,984 voxels, 2 subjects × 2 runs × 150 scans, seed 17), this checkout
# against commit 0cbd5a7 (before the work), alternated ROUNDS times on one machine, with
# the outputs compared (gzip files by their decompressed bytes; files that hold paths or
# checksums of themselves left out).
#
#   ROUNDS=7 OUT=/tmp/run_speedup bash scripts/studies/run_speedup.sh
#
# BASE_BIN=path skips building 0cbd5a7 (a cold release build, ~10 minutes, in a git
# worktree under $OUT). Writes $OUT/run_speedup.tsv (round, build, seconds, user_s,
# system_s, peak_kib) and prints each round's ratio and their median. Exits 1 when the
# outputs differ other than in the basis files the README names (0cbd5a7's basis state,
# objective trace and an_atom.parquet differ in their last bits).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-7}
OUT=${OUT:-/tmp/run_speedup}
BASE=0cbd5a7
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cargo build --release --quiet
NEW_BIN=$(pwd)/target/release/cortexflow
if [ -z "${BASE_BIN:-}" ]; then
  [ -d "$OUT/base" ] || git worktree add --detach "$OUT/base" "$BASE" > /dev/null
  (cd "$OUT/base" && cargo build --release --quiet)
  BASE_BIN=$OUT/base/target/release/cortexflow
fi
[ -d "$OUT/sim" ] || "$NEW_BIN" simulate --grid 2mm --subjects 2 --runs 2 --scans 150 --seed 17 --out "$OUT/sim" > /dev/null
sed 's/^surrogates = 1000/surrogates = 0/' dataflows/paper.toml > "$OUT/paper0.toml"
grep -q '^surrogates = 0' "$OUT/paper0.toml" || { echo "dataflows/paper.toml has no 'surrogates = 1000' line to turn off" >&2; exit 1; }

# Output hashes of a store: gzip files by their decompressed bytes.
hashes() {
  (cd "$1" && find . -type f ! -name .lock ! -name manifest.json ! -name recipe.toml ! -name report.html \
      ! -name group.json ! -name planted.json ! -name sums.json ! -path '*/cache/*' | LC_ALL=C sort |
    while read -r f; do
      case "$f" in *.gz) echo "$(gzip -dc "$f" | sha256sum | cut -d' ' -f1)  $f" ;; *) sha256sum "$f" ;; esac
    done)
}

TSV=$OUT/run_speedup.tsv
printf 'round\tbuild\tseconds\tuser_s\tsystem_s\tpeak_kib\n' > "$TSV"
for r in $(seq 1 "$ROUNDS"); do
  # Alternate which build goes first.
  if (( r % 2 )); then order="base new"; else order="new base"; fi
  for b in $order; do
    bin=$NEW_BIN; [ "$b" = base ] && bin=$BASE_BIN
    rm -rf "$OUT/store-$b"
    /usr/bin/time -o "$OUT/time" -f "%e %U %S %M" "$bin" run "$OUT/paper0.toml" --data "$OUT/sim" --out "$OUT/store-$b" > "$OUT/log-$b" 2>&1 \
      || { cat "$OUT/log-$b" >&2; exit 1; }
    printf '%s\t%s\t%s\n' "$r" "$b" "$(tr ' ' '\t' < "$OUT/time")" >> "$TSV"
  done
  if [ "$r" = 1 ]; then
    hashes "$OUT/store-base" > "$OUT/hashes-base"
    hashes "$OUT/store-new" > "$OUT/hashes-new"
    differ=$(diff "$OUT/hashes-base" "$OUT/hashes-new" | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u | grep -v -E '^\./basis/(an_atom\.parquet|objective\.tsv|state/[a-z_]+\.f64)$' || true)
    if [ -n "$differ" ]; then
      echo "outputs differ from $BASE's beyond the basis files:" >&2
      echo "$differ" >&2
      exit 1
    fi
    echo "outputs: the same as $BASE's (the basis files' last bits aside)"
  fi
done
awk -F'\t' 'NR > 1 { t[$1, $2] = $3; n = $1 }
  END {
    for (r = 1; r <= n; r++) { ratio[r] = t[r, "base"] / t[r, "new"]; printf "round %d: %s %.2f s, now %.2f s, %.2fx\n", r, base, t[r, "base"], t[r, "new"], ratio[r] }
    # median by insertion sort
    for (i = 2; i <= n; i++) { v = ratio[i]; j = i - 1; while (j >= 1 && ratio[j] > v) { ratio[j + 1] = ratio[j]; j-- } ratio[j + 1] = v }
    m = (n % 2) ? ratio[(n + 1) / 2] : (ratio[n / 2] + ratio[n / 2 + 1]) / 2
    printf "median speed-up over %s: %.2fx (min %.2fx, max %.2fx)\n", base, m, ratio[1], ratio[n]
  }' base="$BASE" "$TSV"
