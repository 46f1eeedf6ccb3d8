#!/bin/sh
# tests/check_png.sh — runs a command that writes a PNG, then checks the file: it exists,
# starts with the PNG signature and is larger than 5 KB (a real chart, not an empty one).
# Without gnuplot the test is skipped (status 77).
#   usage: check_png.sh OUT.png -- COMMAND [ARGS...]
if [ -z "$TAPEGRAD_GNUPLOT" ] && ! command -v gnuplot > /dev/null 2>&1; then
    echo "check_png.sh: gnuplot not installed, skipped" >&2
    exit 77
fi
png=$1
shift
[ "$1" = "--" ] && shift
rm -f "$png"
"$@" || { echo "check_png.sh: command failed with status $?: $*" >&2; exit 1; }
[ -f "$png" ] || { echo "check_png.sh: $png was not written" >&2; exit 1; }
sig=$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')
[ "$sig" = "89504e470d0a1a0a" ] || { echo "check_png.sh: $png is not a PNG" >&2; exit 1; }
size=$(wc -c < "$png")
[ "$size" -gt 5120 ] || { echo "check_png.sh: $png is only $size bytes" >&2; exit 1; }
echo "check_png.sh: $png: PNG, $size bytes"
