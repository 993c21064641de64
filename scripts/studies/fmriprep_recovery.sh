#!/usr/bin/env bash
# Recovery study for real-data preprocessing (issue 15): `simulate --layout fmriprep`
# (6 subjects × 2 runs, one-voxel jitter, default SNR; head motion, spikes, physiological
# noise and non-steady-state scans acting on the BOLD, measured by a confounds table per
# run) through `run` with 16 atoms under each preprocessing condition, over SEEDS seeds;
# then NULL seeds (`--null`) under the chosen default. Prints markdown tables: planted
# networks assigned (of 3), recovered (Dice ≥ 0.7), mean best Dice, and false assignments
# (atoms assigned to a network nothing was planted in).
# Usage: scripts/studies/fmriprep_recovery.sh [SEEDS=10] [NULL=20] [CORTEXFLOW=target/release/cortexflow]
# CONDITIONS="a b …" runs only those conditions (results are the same bytes per seed).
set -euo pipefail
seeds=${1:-10}
nulls=${2:-20}
cf=$(realpath "${3:-target/release/cortexflow}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

recipe() { # name, [encoding] lines, [confounds] lines
  printf 'description = "%s"\n[basis]\natoms = 16\n[encoding]\n%b\n[confounds]\n%b\n' "$1" "$2" "$3" > "$work/$1.toml"
}
scrub='strategy = ["high_pass", "motion", "compcor", "scrub"]'
recipe none '' ''
recipe smooth6 'smoothing_fwhm = 6.0' ''
recipe dummy+smooth6 'smoothing_fwhm = 6.0' 'dummy_scans = 2'
recipe simple+smooth6 'high_pass = 0.0\nsmoothing_fwhm = 6.0' 'strategy = ["high_pass", "motion", "wm_csf"]'
recipe compcor 'high_pass = 0.0' 'strategy = ["high_pass", "motion", "compcor"]'
recipe scrub 'high_pass = 0.0' "$scrub"
recipe scrub+smooth4 'high_pass = 0.0\nsmoothing_fwhm = 4.0' "$scrub"
recipe scrub+smooth6 'high_pass = 0.0\nsmoothing_fwhm = 6.0' "$scrub"
recipe scrub+smooth8 'high_pass = 0.0\nsmoothing_fwhm = 8.0' "$scrub"
recipe scrub+smooth10 'high_pass = 0.0\nsmoothing_fwhm = 10.0' "$scrub"
read -r -a conditions <<< "${CONDITIONS:-none smooth6 dummy+smooth6 simple+smooth6 compcor scrub scrub+smooth4 scrub+smooth6 scrub+smooth8 scrub+smooth10}"
default=scrub+smooth8

# summary: A of 3 planted networks assigned, R recovered (Dice ≥ 0.7), mean best Dice D, F false assignments
score() { "$cf" recovery --data "$1" "$2" | sed -n 's/^summary: \([0-9]*\) of [0-9]* planted networks assigned, \([0-9]*\) recovered.*mean best Dice \([0-9.]*\), \([0-9]*\) false.*/\1 \2 \3 \4/p'; }

declare -A assigned recovered dice wrong all3
for c in "${conditions[@]}"; do assigned[$c]=0; recovered[$c]=0; dice[$c]=0; wrong[$c]=0; all3[$c]=0; done
for seed in $(seq 1 "$seeds"); do
  sim="$work/sim-$seed"
  "$cf" simulate --out "$sim" --layout fmriprep --subjects 6 --runs 2 --seed "$seed" >/dev/null
  for c in "${conditions[@]}"; do
    "$cf" run "$work/$c.toml" --data "$sim" --out "$work/store" >/dev/null
    read -r a r d f < <(score "$sim" "$work/store")
    echo "seed $seed $c: assigned $a, recovered $r, Dice $d, false $f" >&2
    assigned[$c]=$((assigned[$c] + a)); recovered[$c]=$((recovered[$c] + r)); wrong[$c]=$((wrong[$c] + f))
    dice[$c]=$(awk -v a="${dice[$c]}" -v b="$d" 'BEGIN { print a + b }')
    [[ $a == 3 && $f == 0 ]] && all3[$c]=$((all3[$c] + 1))
    rm -rf "$work/store"
  done
  rm -rf "$sim"
done
echo "| condition | seeds with all 3 networks and no false assignment | networks assigned | recovered (Dice ≥ 0.7) | mean best Dice | false assignments |"
echo "|---|---|---|---|---|---|"
for c in "${conditions[@]}"; do
  printf '| %s | %d / %d | %d / %d | %d / %d | %.3f | %d |\n' "$c" "${all3[$c]}" "$seeds" "${assigned[$c]}" $((3 * seeds)) \
    "${recovered[$c]}" $((3 * seeds)) "$(awk -v a="${dice[$c]}" -v n="$seeds" 'BEGIN { print a / n }')" "${wrong[$c]}"
done

clean=0
for seed in $(seq 1 "$nulls"); do
  sim="$work/null-$seed"
  "$cf" simulate --out "$sim" --layout fmriprep --subjects 6 --runs 2 --seed "$((1000 + seed))" --null >/dev/null
  "$cf" run "$work/$default.toml" --data "$sim" --out "$work/store" >/dev/null
  read -r _ _ _ f < <(score "$sim" "$work/store")
  [[ $f == 0 ]] && clean=$((clean + 1)) || echo "null seed $((1000 + seed)): $f false assignments" >&2
  rm -rf "$sim" "$work/store"
done
echo
echo "null simulations ($default) with no assignment: $clean / $nulls"
