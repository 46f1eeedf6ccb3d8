#!/bin/sh
# tests/runtime_defaults.sh — tg_runtime_defaults, as a user's program and the `tapegrad`
# program get it.
#   usage: runtime_defaults.sh RUNTIME_DEFAULTS_MAIN TAPEGRAD
# 1. Nothing set: the program re-executes once (its buffered "start" line appears twice,
#    once per image, never lost), runs with OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=0, and
#    libgomp itself reports that spin count (OMP_DISPLAY_ENV); the BLAS kernels then fit
#    the CPU (tg_blas_core_better is NULL).
# 2. The user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins: no change for OpenMP.
# 3. TAPEGRAD_OMP_DEFAULTS=off keeps libgomp's default spin.
# 4. Started through the dynamic loader (ld.so prog): no re-execution, reported.
# 5. The `tapegrad` program gets the same (checked through libgomp's report).
set -u
prog=$1
tg=$2
fail=0
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

bad() {
    echo "FAIL: $*"
    echo "--- stdout"; cat "$out"
    echo "--- stderr"; grep -i "wait_policy\|spincount" "$err"
    fail=1
}

# run ENV... : the program with OpenMP's variables cleared, then ENV; OMP_DISPLAY_ENV on
run() {
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u TAPEGRAD_OMP_DEFAULTS -u OPENBLAS_CORETYPE \
        -u TAPEGRAD_BLAS_FIXED OMP_DISPLAY_ENV=verbose "$@" >"$out" 2>"$err"
}

# The spin count libgomp reported last (the image that runs the program).
gomp_spin() {
    grep "GOMP_SPINCOUNT = " "$err" | tail -n 1 | sed "s/.*= '\(.*\)'.*/\1/"
}

run "$prog"
starts=$(grep -c '^start$' "$out")
[ "$starts" = 2 ] || bad "defaults: 'start' printed $starts times, want 2 (one re-execution)"
grep -q '^ret=1 policy=passive spin=0 marker=applied better=- ' "$out" ||
    bad "defaults: not in force"
[ "$(gomp_spin)" = 0 ] || bad "defaults: libgomp reports GOMP_SPINCOUNT '$(gomp_spin)', want 0"

run OMP_WAIT_POLICY=active "$prog"
grep -q '^ret=1 policy=active spin=- marker=- ' "$out" || bad "user's OMP_WAIT_POLICY changed"

run GOMP_SPINCOUNT=1234 "$prog"
grep -q '^ret=1 policy=- spin=1234 marker=- ' "$out" || bad "user's GOMP_SPINCOUNT changed"
[ "$(gomp_spin)" = 1234 ] || bad "user's spin: libgomp reports '$(gomp_spin)'"

run TAPEGRAD_OMP_DEFAULTS=off "$prog"
grep -q '^ret=1 policy=- spin=- marker=off ' "$out" || bad "TAPEGRAD_OMP_DEFAULTS=off not kept"
[ "$(gomp_spin)" != 0 ] || bad "TAPEGRAD_OMP_DEFAULTS=off: libgomp spins 0"

# Started through the dynamic loader, /proc/self/exe is the loader: no re-execution (it
# would run argv[1]), the settings are reported not in force.
interp=$(readelf -l "$prog" 2>/dev/null | sed -n 's/.*program interpreter: \(.*\)]$/\1/p')
if [ -n "$interp" ] && [ -x "$interp" ]; then
    run "$interp" "$prog" extra
    starts=$(grep -c '^start$' "$out")
    [ "$starts" = 1 ] || bad "through $interp: 'start' printed $starts times, want 1"
    grep -q '^ret=0 policy=- spin=- marker=- ' "$out" || bad "through $interp: settings claimed"
else
    echo "no program interpreter found: the ld.so case is not checked"
fi

run "$tg" --version
[ "$(gomp_spin)" = 0 ] || bad "tapegrad: libgomp reports GOMP_SPINCOUNT '$(gomp_spin)', want 0"
grep -q '^tapegrad ' "$out" || bad "tapegrad --version printed nothing"

[ "$fail" = 0 ] && echo "runtime_defaults: all cases pass"
exit "$fail"
