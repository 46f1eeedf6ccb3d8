#!/bin/sh
# tests/check_cli_limits.sh — the `tapegrad` program's reproducers from issue 11: every
# bad value exits with its status and ONE line on stderr, absurd sizes are refused before
# anything is allocated, a FIFO never hangs, an unwritable checkpoint directory is found
# before training.
#   usage: check_cli_limits.sh TAPEGRAD DATA_DIR
tg=$1
data=$2
tmp=${TMPDIR:-/tmp}/tg_cli_limits.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect STATUS SECONDS NEEDLE -- COMMAND...: exit status, a time limit, one stderr line
# containing NEEDLE.
expect() {
    want=$1 limit=$2 needle=$3
    shift 4
    timeout "$limit" "$@" > "$tmp/out" 2> "$tmp/err"
    got=$?
    lines=$(wc -l < "$tmp/err")
    if [ "$got" -ne "$want" ]; then
        echo "FAIL (status $got, want $want): $*"; cat "$tmp/err"; fail=1; return
    fi
    if [ "$lines" -ne 1 ]; then
        echo "FAIL ($lines stderr lines, want 1): $*"; cat "$tmp/err"; fail=1; return
    fi
    if ! grep -q -- "$needle" "$tmp/err"; then
        echo "FAIL (stderr lacks '$needle'): $*"; cat "$tmp/err"; fail=1; return
    fi
    echo "ok: $* -> $(cat "$tmp/err")"
}

expect 2 10 "--lr must be a number in" -- "$tg" train mnist --lr 1e-300
expect 2 10 "--lr-decay must be a number in" -- "$tg" train mnist --lr-decay 0
expect 2 10 "--lr must be" -- "$tg" train mnist --lr nan
expect 2 10 "which dataset" -- "$tg" train
expect 2 10 "unknown command" -- "$tg" frobnicate
expect 2 10 "which model" -- "$tg" tape
expect 2 10 "needs" -- "$tg" plot
expect 2 10 "--title must be" -- "$tg" plot x.csv -o x.png --title "$(printf 'a\nset output "/etc/x"')"
expect 1 20 "needs at least" -- "$tg" forum --size 16384
expect 1 20 "needs at least" -- "$tg" forum --batch 1048576
expect 1 20 "needs at least" -- "$tg" mobilenet --size 16384
expect 1 20 "not writable" -- "$tg" train mnist --data "$data" --checkpoint /nonexistent-dir/x.ckpt
mkfifo "$tmp/fifo"
expect 1 30 "not a regular file" -- "$tg" train mnist --data "$data" --resume "$tmp/fifo" --quiet
exit $fail
