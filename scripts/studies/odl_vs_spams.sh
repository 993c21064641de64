#!/usr/bin/env bash
# How cortexflow's dictionary learning compares with SPAMS (the method's own implementation)
# beyond the one matrix of benches/basis.rs: matrices of the bench's kind (300 scans ×
# 36,864 series, sparse codes on 96 random atoms plus noise, centred, unit-norm columns)
# drawn by numpy with several seeds; K = 64, λ = 0.1, batch 256, 3 passes, then the final
# codes of every series, on both sides. Prints each seed's objectives, their ratio and the
# times (2 threads each; times vary ±20% run to run on shared machines).
#
#   scripts/studies/odl_vs_spams.sh [SEEDS...]      (default: 1 2 3 4 5 6 7 8)
#
# Needs python3 with numpy and spams-bin (pip install spams-bin).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
seeds=("${@:-1 2 3 4 5 6 7 8}")
bench=$(cd "$top" && cargo bench --bench basis --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$top/$bench" ] && bench="$top/$bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| seed | cortexflow objective | SPAMS objective | ratio | cortexflow s | SPAMS s |"
echo "|---|---|---|---|---|---|"
for seed in ${seeds[@]}; do
  python3 - "$seed" "$work/x.f32" <<'PY'
import sys
import numpy as np
seed, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(seed)
t, n = 300, 36864
d = rng.standard_normal((t, 96))
a = rng.standard_normal((96, n)) * (rng.random((96, n)) < 0.05)
x = d @ a + 0.5 * rng.standard_normal((t, n))
x -= x.mean(0)
x /= np.linalg.norm(x, axis=0)
x.astype("<f4").tofile(path)
PY
  mine=$(RAYON_NUM_THREADS=2 "$bench" --child "$work/x.f32")
  ours=$(echo "$mine" | head -1 | cut -d' ' -f3)
  ours_s=$(echo "$mine" | tail -1 | cut -d' ' -f1)
  out=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python3 "$top/benches/anchors/basis_spams.py" "$work/x.f32" 300 36864 64 0.1 3)
  spams=$(echo "$out" | head -1 | cut -d' ' -f3)
  spams_s=$(echo "$out" | tail -1 | cut -d' ' -f1)
  python3 -c "print(f'| $seed | {$ours:.1f} | {$spams:.1f} | {$ours / $spams:.4f} | {$ours_s:.3f} | {$spams_s:.3f} |')"
done
