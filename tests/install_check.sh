#!/usr/bin/env bash
# tests/install_check.sh BUILD_DIR — installs the built tapegrad into a temporary prefix
# and builds a small program against it the way the README tells users to
# ("Use it from your own project"): with pkg-config, linked shared (plus the rpath a
# private prefix needs) and linked static (pkg-config --static), then runs both.
#
# The install is `meson install --destdir`, which leaves BUILD_DIR untouched; the files
# land in $tmp/dest/<prefix> and pkg-config is pointed there with
# --define-variable=prefix (what a relocated prefix needs; a plain `meson setup
# --prefix DIR` install needs nothing of the sort). Run by `meson test` (suite
# 'install'), hence by .ci/run. CC picks the compiler (default cc).
set -euo pipefail
build=$(cd "${1:?usage: install_check.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
# meson test points LD_LIBRARY_PATH at the build tree when a test links the shared
# library; a user's program has no such help, so neither do ours.
unset LD_LIBRARY_PATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/dest" >/dev/null
pc=$(find "$tmp/dest" -name tapegrad.pc -path '*pkgconfig*' | head -n 1)
[ -n "$pc" ] || { echo "install_check: no tapegrad.pc installed" >&2; exit 1; }
prefix=$(pkg-config --variable=prefix "$pc")
export PKG_CONFIG_PATH=$(dirname "$pc")
pc() { pkg-config --define-variable=prefix="$tmp/dest$prefix" "$@" tapegrad; }
libdir=$(pc --variable=libdir)
[ -f "$libdir/libtapegrad.a" ] && [ -e "$libdir/libtapegrad.so" ] ||
    { echo "install_check: libtapegrad.a/.so missing in $libdir" >&2; exit 1; }
echo "installed prefix: $tmp/dest$prefix"
echo "pkg-config --static --libs tapegrad: $(pkg-config --static --libs tapegrad)"

# Shared: the rpath points the program at the private prefix (else LD_LIBRARY_PATH).
# shellcheck disable=SC2046
"$cc" "$here/install/prog.c" -o "$tmp/prog_shared" $(pc --cflags --libs) -lm \
    -Wl,-rpath,"$libdir"
# Static: the archive by name (-l:libtapegrad.a; a bare -ltapegrad would pick the .so
# next to it) followed by everything it needs, from pkg-config --static.
# shellcheck disable=SC2046
"$cc" "$here/install/prog.c" -o "$tmp/prog_static" $(pc --cflags) \
    $(pc --static --libs | sed 's/-ltapegrad/-l:libtapegrad.a/') -lm

# grep without -q reads to the end: with pipefail, grep -q quitting at the first match can
# kill the writer with SIGPIPE and fail the pipeline (seen under load with ldd).
readelf -d "$tmp/prog_shared" | grep 'NEEDED.*libtapegrad\.so' >/dev/null ||
    { echo "install_check: prog_shared does not load libtapegrad.so" >&2; exit 1; }
if readelf -d "$tmp/prog_static" | grep 'NEEDED.*libtapegrad' >/dev/null; then
    echo "install_check: prog_static still loads libtapegrad.so" >&2
    exit 1
fi
ldd "$tmp/prog_shared" | grep "$libdir/libtapegrad.so" >/dev/null ||
    { echo "install_check: prog_shared does not resolve libtapegrad.so from $libdir" >&2; exit 1; }
echo "shared:"; "$tmp/prog_shared"
echo "static:"; "$tmp/prog_static"
# A user's own op and model, from the installed header alone: examples/custom_op.c (a
# learnable PReLU: gradcheck, training, checkpoint) built against the prefix and run.
# shellcheck disable=SC2046
"$cc" "$here/../examples/custom_op.c" -o "$tmp/custom_op" $(pc --cflags --libs) -lm \
    -Wl,-rpath,"$libdir"
"$tmp/custom_op" "$tmp/custom_op.ckpt" | grep -E '^(gradcheck|accuracy)' ||
    { echo "install_check: examples/custom_op.c failed against the installed header" >&2; exit 1; }
echo "install_check: OK (shared and static, and a custom op from the installed header)"
