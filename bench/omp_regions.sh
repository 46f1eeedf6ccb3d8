#!/bin/sh
# bench/omp_regions.sh — a command's time per OpenMP parallel region (bench/omp_regions.c):
# calls, total ms and us per call of every region function, the largest first, named.
#
#   usage: bench/omp_regions.sh [--loaded] COMMAND [ARGS...]
#   e.g.   bench/omp_regions.sh build/tools/tapegrad train mnist --model cnn --epochs 1 \
#              --data examples/data/mnist-mini --quiet
#          bench/omp_regions.sh --loaded build/tools/tapegrad train mnist ...   (one busy
#              loop per core while it runs)
# The shim is build/bench/libomp_regions.so (or OMP_REGIONS_SO). The command's own stderr
# lines pass through; its stdout is kept.
set -u
so=${OMP_REGIONS_SO:-$(dirname "$0")/../build/bench/libomp_regions.so}
[ -f "$so" ] || { echo "omp_regions.sh: no $so (meson compile -C build)" >&2; exit 1; }
loaded=0
[ "${1:-}" = --loaded ] && { loaded=1; shift; }
[ $# -ge 1 ] || { sed -n 5,11p "$0" >&2; exit 2; }
pids=""
if [ $loaded = 1 ]; then
    i=0
    while [ $i -lt "$(nproc)" ]; do sh -c 'while :; do :; done' & pids="$pids $!"; i=$((i + 1)); done
    trap 'kill $pids 2>/dev/null' EXIT INT TERM
    sleep 0.3
fi
log=$(mktemp)
LD_PRELOAD="$so" "$@" 2>"$log"
rc=$?
[ -n "$pids" ] && kill $pids 2>/dev/null
grep -v '^omp_regions: ' "$log" >&2
printf '%7s %11s %11s  %s\n' calls "total ms" "us/call" region
grep '^omp_regions: ' "$log" | sort -k3 -g -r | while read -r _ calls ms us file off; do
    name=$(addr2line -f -e "$file" "$off" 2>/dev/null | head -n 1)
    printf '%7s %11s %11s  %s\n' "$calls" "$ms" "$us" "${name:-?} ($(basename "$file"))"
done
rm -f "$log"
exit $rc
