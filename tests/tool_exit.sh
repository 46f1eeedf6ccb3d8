#!/bin/sh
# tests/tool_exit.sh — runs a command and checks its exit status (and optionally that
# its stdout contains a string), for meson tests of the `tapegrad` program.
#   usage: tool_exit.sh STATUS [-o STRING]... -- COMMAND [ARGS...]
expected=$1
shift
needles=""
while [ "$1" = "-o" ]; do
    needles="$needles
$2"
    shift 2
done
[ "$1" = "--" ] && shift
out=$("$@")
status=$?
printf '%s\n' "$out"
if [ "$status" -ne "$expected" ]; then
    echo "tool_exit.sh: expected exit status $expected, got $status: $*" >&2
    exit 1
fi
printf '%s\n' "$needles" | while IFS= read -r n; do
    [ -z "$n" ] && continue
    case "$out" in
    *"$n"*) ;;
    *)
        echo "tool_exit.sh: stdout lacks '$n': $*" >&2
        exit 1
        ;;
    esac
done || exit 1
exit 0
