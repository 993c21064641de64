#!/usr/bin/env bash
# Assignment threshold for stores of region time series: `simulate` (6 subjects × 2 runs
# of 200 scans, one-voxel jitter) parcellated into 28 regions (each Yeo-7 network of the
# simulator's atlas cut into four slabs along x; regions.tsv names each region's network),
# then `run` with 16 atoms at each IoU assignment threshold, over SEEDS seeds; then NULL
# seeds (`--null`) at THRESHOLD. A network has 3-4 regions here, so one stray significant
# region already reaches IoU 0.25: the voxel maps' 0.2 may be too lenient for regions.
# Prints markdown tables. Needs python3 with nibabel and numpy (for the parcellation).
# Usage: scripts/studies/region_assignment.sh [SEEDS=10] [NULL=10] [THRESHOLD=0.3] [CORTEXFLOW=target/release/cortexflow]
set -euo pipefail
seeds=${1:-10}
nulls=${2:-10}
chosen=${3:-0.3}
cf=$(realpath "${4:-target/release/cortexflow}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
thresholds=(0.2 0.3 0.4)

# The parcellation and region list, from the simulator's own atlas (the same for every seed).
"$cf" simulate --out "$work/grid" --subjects 1 --runs 1 --scans 20 --seed 0 >/dev/null
python3 - "$work" <<'PY'
import sys, nibabel as nib, numpy as np
work = sys.argv[1]
img = nib.load(f"{work}/grid/atlas/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz")
a = np.asarray(img.dataobj).astype(int)
yeo = ["1_Visual_Area", "2_Somatomotor_Area", "3_Dorsal_Attention_Area", "4_Ventral_Attention_Area",
       "5_Limbic_Area", "6_Frontoparietal_Area", "7_Default_Network_Area"]
nx = a.shape[0]
lab = np.zeros_like(a)
rows = []
for net in range(1, 8):
    for slab in range(4):
        sel = np.zeros(a.shape, bool)
        sel[slab * nx // 4:(slab + 1) * nx // 4] = True
        sel &= a == net
        if sel.any():
            lab[sel] = net * 10 + slab
            rows.append((net * 10 + slab, f"{yeo[net - 1]}_slab{slab}", yeo[net - 1]))
nib.save(nib.Nifti1Image(lab.astype(np.int16), img.affine), f"{work}/parcels.nii.gz")
open(f"{work}/parcels.csv", "w").write("label,name\n" + "".join(f"{l},{n}\n" for l, n, _ in rows))
open(f"{work}/regions.tsv", "w").write("region\tnetwork\n" + "".join(f"{n}\t{net}\n" for _, n, net in rows))
PY

# summary: A of 3 planted networks assigned, R recovered, mean best Dice D, F false assignments
score() { "$cf" recovery --data "$1" "$2" | sed -n 's/^summary: \([0-9]*\) of [0-9]* planted networks assigned, \([0-9]*\) recovered.*mean best Dice \([0-9.]*\), \([0-9]*\) false.*/\1 \2 \3 \4/p'; }
dataset() { # seed, extra simulate flags: the parcellated dataset in $work/ds
  rm -rf "$work/sim" "$work/ds"
  "$cf" simulate --out "$work/sim" --subjects 6 --runs 2 --scans 200 --seed "$1" ${2:-} >/dev/null
  "$cf" parcellate --bold "$(ls "$work"/sim/sub-*/func/*_bold.nii.gz | paste -sd,)" --labels "$work/parcels.nii.gz" --names "$work/parcels.csv" --out "$work/ds" >/dev/null
  cp "$work/regions.tsv" "$work/ds/"
}
store() { # threshold: prints "A R D F"
  printf 'description = "regions"\n[basis]\natoms = 16\n[map]\nassign_threshold = %s\n' "$1" > "$work/r.toml"
  rm -rf "$work/store"
  "$cf" run "$work/r.toml" --data "$work/ds" --responses "$work/sim/truth/responses" --out "$work/store" >/dev/null
  score "$work/sim" "$work/store"
}

declare -A assigned recovered dice wrong all3
for t in "${thresholds[@]}"; do assigned[$t]=0; recovered[$t]=0; dice[$t]=0; wrong[$t]=0; all3[$t]=0; done
for seed in $(seq 1 "$seeds"); do
  dataset "$seed"
  for t in "${thresholds[@]}"; do
    read -r a r d f <<< "$(store "$t")"
    echo "seed $seed threshold $t: assigned $a, recovered $r, Dice $d, false $f" >&2
    assigned[$t]=$((assigned[$t] + a)); recovered[$t]=$((recovered[$t] + r)); wrong[$t]=$((wrong[$t] + f))
    dice[$t]=$(python3 -c "print(${dice[$t]} + $d)")
    if [ "$a" = 3 ] && [ "$f" = 0 ]; then all3[$t]=$((all3[$t] + 1)); fi
  done
done
echo "| IoU threshold | seeds with all 3 networks and no false assignment | networks assigned | recovered (Dice ≥ 0.7) | mean best Dice | false assignments |"
echo "|---|---|---|---|---|---|"
for t in "${thresholds[@]}"; do
  echo "| $t | ${all3[$t]} / $seeds | ${assigned[$t]} / $((3 * seeds)) | ${recovered[$t]} / $((3 * seeds)) | $(python3 -c "print(f'{${dice[$t]} / $seeds:.3f}')") | ${wrong[$t]} |"
done
clean=0
for seed in $(seq 1 "$nulls"); do
  dataset "$((1000 + seed))" --null
  read -r a r d f <<< "$(store "$chosen")"
  echo "null seed $((1000 + seed)): false $f" >&2
  if [ "$f" = 0 ]; then clean=$((clean + 1)); fi
done
echo
echo "null simulations (threshold $chosen) with no assignment: $clean / $nulls"
