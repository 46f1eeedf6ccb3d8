#!/bin/sh
# tests/busy_check.sh — the contention report of the timing commands.
#   usage: busy_check.sh TAPEGRAD
# 1. With one spinning process per core during a short `forum --compare`, the run must
#    still exit 0, print its table and the line "machine busy: ...", and say so in --json.
# 2. Without them, on a machine that is idle (checked first: when other processes already
#    use over 5% of the cores this part is skipped), no busy line may appear.
set -u
tg=$1
run="$tg forum --compare --size 12 --channels 8 --layers 4 --steps 3 --warmup 1 --json"

# Share of all cores that processes used over one second (from /proc/stat).
machine_load() {
    a=$(head -n 1 /proc/stat)
    sleep 1
    b=$(head -n 1 /proc/stat)
    echo "$a
$b" | awk 'NR == 1 { for (i = 2; i <= 9; i++) t0 += $i; i0 = $5 + $6 }
               NR == 2 { for (i = 2; i <= 9; i++) t1 += $i; i1 = $5 + $6 }
               END { printf "%d", 100 * (1 - (i1 - i0) / (t1 - t0)) }'
}

cores=$(getconf _NPROCESSORS_ONLN)
pids=""
i=0
while [ "$i" -lt "$cores" ]; do
    sh -c 'while :; do :; done' &
    pids="$pids $!"
    i=$((i + 1))
done
out=$($run 2>&1)
status=$?
# shellcheck disable=SC2086
kill $pids
printf '%s\n' "$out" | grep -v '^{'
[ "$status" -eq 0 ] || { echo "busy_check: the busy run exited $status" >&2; exit 1; }
printf '%s\n' "$out" | grep -q '^machine busy: other processes used' ||
    { echo "busy_check: no busy line with $cores spinning processes" >&2; exit 1; }
printf '%s\n' "$out" | grep -q '"machine_busy": true' ||
    { echo "busy_check: --json lacks machine_busy true" >&2; exit 1; }
printf '%s\n' "$out" | grep -q 'separable/dense' ||
    { echo "busy_check: the busy run printed no comparison" >&2; exit 1; }

load=$(machine_load)
if [ "$load" -gt 5 ]; then
    echo "busy_check: the machine is already ${load}% busy; the idle half is skipped"
    exit 0
fi
out=$($run 2>&1) || { echo "busy_check: the idle run failed" >&2; exit 1; }
line=$(printf '%s\n' "$out" | grep '^machine busy')
others=$(printf '%s\n' "$line" | sed -n 's/.*other processes used \([0-9]*\)%.*/\1/p')
if [ -n "$line" ] && [ "${others:-100}" -le 5 ] && printf '%s' "$line" | grep -q 'hypervisor stole'; then
    # Steal time is the host's, outside this machine: the line is right to appear.
    echo "busy_check: the hypervisor stole time during the idle run; its half is skipped"
    exit 0
fi
if [ -n "$line" ]; then
    printf '%s\n' "$line" >&2
    echo "busy_check: an idle run printed the busy line" >&2
    exit 1
fi
printf '%s\n' "$out" | grep -q '"machine_busy": false' ||
    { echo "busy_check: --json lacks machine_busy false" >&2; exit 1; }
echo "busy_check: busy run flagged, idle run clean"
