#!/bin/bash
# bench/loaded_pairs.sh — a small-CNN epoch idle and with one busy loop per core, for
# several programs or settings INTERLEAVED round by round, so that the VM's drift (20-40%
# over tens of seconds here) falls on every column alike; bench/wait_policy.sh runs each
# setting's repeats back to back instead. Prints each label's median idle and loaded
# epoch (the epoch's own "seconds" from --json), every run, and loaded / idle.
#
#   usage: bench/loaded_pairs.sh ROUNDS 'LABEL=TAPEGRAD [TRAIN ARGS...]' ...
#   e.g.   bench/loaded_pairs.sh 15 'base=/tmp/old/tools/tapegrad' 'new=build/tools/tapegrad' \
#              'new_auto=build/tools/tapegrad --threads auto'
# TAPEGRAD may be a wrapper script that sets the environment (a spin count, say). Data:
# DATA (default examples/data/mnist-mini). Run it on an otherwise idle machine.
# Every round also runs BOUND (default build/bench/parallel_bound, skipped when absent):
# perfectly parallel work on $(nproc) threads, idle and loaded, the machine's own ceiling
# in that minute; each label's loaded / idle is then also given over the bound's.
set -u
[ $# -ge 2 ] || { sed -n 7,11p "$0" >&2; exit 2; }
rounds=$1
shift
data=${DATA:-examples/data/mnist-mini}
declare -A IDLE LOADED
epoch() { # "TAPEGRAD ARGS..." -> seconds
    local -a cmd
    read -r -a cmd <<<"$1"
    "${cmd[0]}" train mnist --model cnn --epochs 1 --data "$data" --quiet --json "${cmd[@]:1}" \
        2>/dev/null | sed -n 's/.*"seconds": \([0-9.e+-]*\).*/\1/p' | head -n 1
}
bound=${BOUND:-build/bench/parallel_bound}
[ -x "$bound" ] || bound=""
bound_run() { "$bound" "$(nproc)" | sed -n 's/.*"seconds": \([0-9.e+-]*\).*/\1/p'; }
pids=""
stop_load() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; pids=""; }
trap stop_load EXIT
trap 'stop_load; exit 130' INT TERM
echo "loaded_pairs: $rounds rounds, $(nproc) cores, load = $(nproc) busy loops; $(date -u +%FT%TZ)"
run() { # SPEC -> seconds
    if [ "$1" = "bound=" ]; then bound_run; else epoch "${1#*=}"; fi
}
specs=("$@")
[ -n "$bound" ] && specs=("bound=" "$@")
for ((r = 0; r < rounds; r++)); do
    for spec in "${specs[@]}"; do
        label=${spec%%=*}
        IDLE[$label]="${IDLE[$label]:-} $(run "$spec")"
        for ((i = 0; i < $(nproc); i++)); do sh -c 'while :; do :; done' & pids="$pids $!"; done
        sleep 0.3
        LOADED[$label]="${LOADED[$label]:-} $(run "$spec")"
        stop_load
    done
done
for spec in "${specs[@]}"; do
    label=${spec%%=*}
    python3 - "$label" "${IDLE[$label]}" "${LOADED[$label]}" "${IDLE[bound]:-}" \
        "${LOADED[bound]:-}" <<'PY'
import statistics, sys
def floats(s): return [float(x) for x in s.split()]
label, idle, loaded, bidle, bloaded = sys.argv[1], *map(floats, sys.argv[2:6])
if not idle or not loaded:
    print(f"{label:<12} no runs finished"); sys.exit()
mi, ml = statistics.median(idle), statistics.median(loaded)
over = ""
if bidle and bloaded and label != "bound":
    b = statistics.median(bloaded) / statistics.median(bidle)
    over = f" = {ml / mi / b:.2f} x the bound's {b:.2f}x"
    # per round: this label's ratio over the bound's ratio in the same round
    rounds = [(l / i) / (bl / bi) for i, l, bi, bl in zip(idle, loaded, bidle, bloaded)]
    over += f" (per round {min(rounds):.2f}-{max(rounds):.2f})"
print(f"{label:<12} idle {mi:.3f} s, loaded {ml:.3f} s, loaded/idle {ml / mi:.2f}x{over}")
print(f"{'':<12} idle runs   {' '.join(f'{x:.3f}' for x in idle)}")
print(f"{'':<12} loaded runs {' '.join(f'{x:.3f}' for x in loaded)}")
PY
done
