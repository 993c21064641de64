#!/usr/bin/env bash
# The study behind the default of -w (the machine's cores) and the wave rule (⌈workers / runs
# a subject⌉ subjects at once): `run` of a recipe on simulations of several sizes and seeds,
# with one worker and with the default. Prints wall seconds, CPU seconds and peak RSS, and
# checks that both layouts write the same bytes. (The old rule, one subject per worker, is
# no longer reachable from the CLI; its row in the README is from the build before it.)
#
#   scripts/studies/workers.sh RECIPE [SUBJECTS...]     (default subjects: 2 4 8)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin="$top/target/release/cortexflow"
recipe=$(realpath "$1"); shift
counts=("${@:-2 4 8}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| subjects | seed | layout | wall s | cpu s | peak MiB | same bytes as -w 1 |"
echo "|---|---|---|---|---|---|---|"
for n in ${counts[@]}; do
  for seed in 17 29; do
    sim="$work/sim$n-$seed"
    "$bin" simulate --out "$sim" --grid 2mm --subjects "$n" --runs 2 --scans 150 --seed "$seed" > /dev/null
    for layout in "-w 1" "default"; do
      args=(); [ "$layout" = "default" ] || args=($layout)
      out="$work/store-${layout// /}"
      rm -rf "$out"
      /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$bin" run "$recipe" --data "$sim" --out "$out" --no-ceiling "${args[@]}" > /dev/null 2>&1
      read -r wall user sys kb < "$work/t"
      same="—"
      if [ "$layout" = "default" ]; then
        if diff <("$top/scripts/output-hashes" "$work/store--w1") <("$top/scripts/output-hashes" "$out") > /dev/null; then same=yes; else same=NO; fi
      fi
      printf "| %s | %s | %s | %s | %.1f | %d | %s |\n" "$n" "$seed" "$layout" "$wall" "$(echo "$user + $sys" | bc)" $((kb / 1024)) "$same"
    done
    rm -rf "$sim"
  done
done
