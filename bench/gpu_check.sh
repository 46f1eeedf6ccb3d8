#!/usr/bin/env bash
# bench/gpu_check.sh — the CUDA backend's first GPU run, prepared so that ONE call on a
# lent GPU machine (about 15 minutes of device time in all, start included) answers
# everything at once. Two halves:
#
#   bench/gpu_check.sh prepare   here (no GPU needed): builds only what the run needs
#                                (sm_90, -Dnative=false, release) in build-gpu/ and packs
#                                the binaries, the shared libraries they need that the GPU
#                                image may lack (cudart, OpenBLAS, libgomp, libgfortran,
#                                ...; cuBLAS/cuBLASLt are 600 MB and come from the GPU
#                                machine's CUDA 13) and the headers/static libraries of a
#                                fallback build into gpu_pack/ (git-ignored, < 64 MiB; name
#                                it in the device tool's `carry`).
#   bench/gpu_check.sh run       on the GPU machine, < 9 minutes: parity suite,
#                                compute-sanitizer memcheck/racecheck/synccheck on small
#                                training steps (and memcheck on the parity suite's
#                                small-plane/bias/copy case), the GPU conv benchmark against
#                                event-timed copy bandwidth and same-shape cuBLAS, peaks,
#                                forum --compare at 64/128/256 with --profile, MobileNet
#                                dw/1/4 forward at batch 1 and 32 and one training step.
#                                Logs and a summary go under $OUT (at most 8 files: the
#                                summary, the main logs and a tarball of everything); the
#                                summary is printed last. If the carried binaries cannot
#                                load, it rebuilds them there (16 cores) from the working
#                                tree with nvcc + gcc and the carried headers.
#
# Not in the run list: tests/test_dist_cuda (CUDA data parallel, NCCL). It needs a build
# with MPI and NCCL (NCCL's 218 MB does not fit the pack) and, for its 2-rank half, one
# GPU per rank (NCCL refuses two ranks on one GPU); on this one-GPU machine it could run
# only its one-rank half. Run it where NCCL is installed: meson test --suite cuda.
#
# Device tool call (see bench/RESULTS.md, "The first GPU run"):
#   run(command="bash bench/gpu_check.sh run", carry=["gpu_pack"], timeout_s=590)
# Without a GPU, `run` exits 2 at once with one line saying so.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PACK="$ROOT/gpu_pack"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

die() { echo "gpu_check: $*" >&2; exit 2; }

# ------------------------------------------------------------------------------ prepare
prepare() {
    export PATH="$CUDA_HOME/bin:$PATH"
    command -v nvcc >/dev/null || die "prepare: nvcc not found (looked in $CUDA_HOME/bin)"
    local B="$ROOT/build-gpu"
    # No MPI: the GPU run is one process, and NCCL alone (about 220 MB) would not fit the
    # 64 MiB the device tool carries.
    if [ -d "$B" ]; then
        meson setup --reconfigure "$B" "$ROOT" -Dcuda=enabled -Dgpu_archs=90 -Dnative=false -Dmpi=disabled \
            -Dbuildtype=release >/dev/null || die "prepare: meson reconfigure failed"
    else
        meson setup "$B" "$ROOT" -Dcuda=enabled -Dgpu_archs=90 -Dnative=false -Dmpi=disabled \
            -Dbuildtype=release >/dev/null || die "prepare: meson setup failed"
    fi
    ninja -C "$B" tools/tapegrad tests/test_cuda bench/gpu_conv_bench ||
        die "prepare: build failed"
    rm -rf "$PACK"
    mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/dev/include" "$PACK/dev/lib"
    cp "$B/tools/tapegrad" "$B/tests/test_cuda" "$B/bench/gpu_conv_bench" "$PACK/bin/"
    # Shared libraries: everything ldd resolves except glibc's own and the CUDA driver,
    # and except cuBLAS/cuBLASLt (too large; the GPU image has CUDA 13.0's).
    for exe in "$PACK"/bin/*; do
        ldd "$exe" | awk '/=> \// {print $3}'
    done | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*) ;;
        libcublas.so*|libcublasLt.so*) ;;
        libstdc++.so*|libgcc_s.so*) ;; # the GPU image's own are newer; an older one would shadow them
        *) cp -L "$lib" "$PACK/lib/" ;;
        esac
    done
    # The fallback build's inputs: the library sources travel with the working tree;
    # headers and static/shared libraries the GPU image may lack travel here.
    local inc=/usr/include ob=/usr/include/x86_64-linux-gnu/openblas-openmp
    for h in "$ob/cblas.h" "$ob/openblas_config.h" "$inc/check.h" "$inc/check_stdint.h" \
             "$inc/zlib.h" "$inc/zconf.h"; do
        [ -f "$h" ] && cp -L "$h" "$PACK/dev/include/"
    done
    for l in /usr/lib/x86_64-linux-gnu/libcheck.a; do
        [ -f "$l" ] && cp -L "$l" "$PACK/dev/lib/"
    done
    local bytes
    bytes=$(du -sb "$PACK" | cut -f1)
    echo "gpu_check: packed $(ls "$PACK/bin" | wc -l) binaries, $(ls "$PACK/lib" | wc -l) libraries into gpu_pack/: $((bytes / 1048576)) MiB"
    [ "$bytes" -lt $((64 * 1048576)) ] || die "prepare: gpu_pack is $bytes bytes, over 64 MiB"
    ls -la "$PACK/bin" "$PACK/lib"
}

# ------------------------------------------------------------------------------ run
START=$(date +%s)
DEADLINE=${GPU_CHECK_DEADLINE:-500} # seconds; steps that would start later are skipped
SUMMARY=()

elapsed() { echo $(( $(date +%s) - START )); }

# step NAME LOGFILE TIMEOUT command...: runs it, records PASS/FAIL/TIMEOUT/SKIPPED.
step() {
    local name=$1 log=$2 limit=$3
    shift 3
    if [ "$(elapsed)" -ge "$DEADLINE" ]; then
        SUMMARY+=("SKIPPED   $name (time budget spent)")
        echo "=== $name: skipped, $(elapsed) s elapsed" >>"$log"
        return
    fi
    local t0 rc
    t0=$(date +%s)
    echo "=== $name ($*)" >>"$log"
    timeout --signal=KILL "$limit" "$@" >>"$log" 2>&1
    rc=$?
    local dt=$(( $(date +%s) - t0 ))
    case $rc in
    0) SUMMARY+=("PASS      $name (${dt} s)") ;;
    137) SUMMARY+=("TIMEOUT   $name (killed after ${limit} s)") ;;
    77) SUMMARY+=("SKIP(77)  $name") ;;
    *) SUMMARY+=("FAIL($rc)  $name (${dt} s; see $(basename "$log"))") ;;
    esac
    echo "=== $name: rc $rc in ${dt} s" >>"$log"
}

# The CUDA libraries of the GPU image: the toolkit's, else the pip wheels' (PyTorch).
cuda_lib_dirs() {
    local d
    for d in "$CUDA_HOME/lib64" "$CUDA_HOME/targets/x86_64-linux/lib" /usr/local/cuda-13*/lib64; do
        [ -e "$d/libcublas.so.13" ] && echo "$d"
    done
    find /usr /opt -name 'libcublasLt.so.13' -printf '%h\n' 2>/dev/null | head -3
}

loads() { # every packed binary resolves all its libraries and starts
    local exe
    for exe in "$BIN"/*; do
        if ldd "$exe" 2>&1 | grep -q "not found"; then return 1; fi
    done
    "$BIN/tapegrad" --help >/dev/null 2>&1
}

# Builds the library, tools, test and benchmark with nvcc + gcc (no meson or pkg-config
# needed there), 16 jobs, into /tmp/gpu_build.
fallback_build() {
    local W=/tmp/gpu_build D="$PACK/dev"
    rm -rf "$W" && mkdir -p "$W/obj" "$W/bin"
    export PATH="$CUDA_HOME/bin:$PATH"
    local cflags="-O2 -std=c11 -fopenmp -DTG_HAVE_CUDA -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DTG_HAVE_OPENBLAS_THREADS -I$ROOT/include -I$D/include -I$CUDA_HOME/include"
    local srcs
    srcs=$(cd "$ROOT" && ls core/*.c autograd/*.c ops/*.c optim/*.c models/*.c io/*.c)
    (cd "$ROOT" && printf '%s\n' $srcs | xargs -P 16 -I{} sh -c \
        'gcc '"$cflags"' -c {} -o '"$W"'/obj/$(echo {} | tr / _).o') || return 1
    # Without MPI there is no NCCL: dist.cu and batchnorm_sync.cu are left out, as meson
    # leaves them out of a build without NCCL.
    (cd "$ROOT" && ls cuda/*.cu | grep -v -e '^cuda/dist\.cu$' -e '^cuda/batchnorm_sync\.cu$' |
        xargs -P 16 -I{} sh -c \
        'nvcc -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -Xcompiler=-fPIC -DTG_HAVE_CUDA -I'"$ROOT"'/include -c {} -o '"$W"'/obj/$(echo {} | tr / _).o') || return 1
    ar rcs "$W/libtapegrad.a" "$W"/obj/*.o || return 1
    local libs="-L$PACK/lib -L$D/lib $(for d in $(cuda_lib_dirs); do echo -L$d; done) -l:libopenblas.so.0 -l:libz.so.1 -lcublas -lcudart -lgomp -lm -lpthread -Wl,-rpath,$PACK/lib"
    (cd "$ROOT" && gcc $cflags tools/*.c "$W/libtapegrad.a" $libs -o "$W/bin/tapegrad") || return 1
    (cd "$ROOT" && gcc $cflags tests/test_cuda.c tests/test_cuda_ops.c tests/test_cuda_train.c \
        tests/test_cuda_edge.c tests/cuda_parity.c tests/testutil.c tests/optim_golden.c \
        tests/conv_ref.c "$W/libtapegrad.a" "$D/lib/libcheck.a" -l:libsubunit.so.0 $libs \
        -lrt -o "$W/bin/test_cuda") || return 1
    (cd "$ROOT" && gcc $cflags bench/gpu_conv_bench.c "$W/libtapegrad.a" $libs \
        -o "$W/bin/gpu_conv_bench") || return 1
    BIN="$W/bin"
}

run() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU ||
        die "run: no NVIDIA GPU on this machine (nvidia-smi finds none); this half runs on the GPU machine"
    [ -d "$PACK/bin" ] || die "run: $PACK/bin is missing: run 'bench/gpu_check.sh prepare' here and carry gpu_pack"
    OUT=${OUT:-$ROOT/gpu_out}
    local L=/tmp/gpu_check_logs
    rm -rf "$L" && mkdir -p "$L" "$OUT"
    local dirs
    dirs=$(cuda_lib_dirs | tr '\n' ':')
    export LD_LIBRARY_PATH="$PACK/lib:${dirs}${LD_LIBRARY_PATH:-}"
    BIN="$PACK/bin"
    {
        date -u
        nvidia-smi
        nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.draw,power.limit,temperature.gpu,memory.used,memory.total --format=csv
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
        command -v compute-sanitizer nvcc
        nvcc --version 2>/dev/null | tail -1
        for exe in "$BIN"/*; do echo "--- ldd $exe"; ldd "$exe"; done
    } >"$L/gpu.txt" 2>&1
    if loads; then
        SUMMARY+=("PASS      carried binaries load")
    else
        local t0=$(date +%s)
        if fallback_build >"$L/build.log" 2>&1; then
            SUMMARY+=("NOTE      carried binaries did not load: rebuilt here in $(( $(date +%s) - t0 )) s")
        else
            SUMMARY+=("FAIL      carried binaries do not load and the rebuild failed (build.log)")
        fi
    fi
    local T="$BIN/tapegrad"

    step "test_cuda: CPU/GPU parity suite" "$L/tests.log" 150 "$BIN/test_cuda"

    local san
    san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
    local small=(forum --device cuda --size 16 --channels 8 --layers 5 --relu --bn --batch 2
                 --steps 1 --warmup 0)
    if [ -n "$san" ]; then
        step "memcheck: separable forum step" "$L/sanitizer.log" 60 \
            "$san" --tool memcheck --error-exitcode 1 "$T" "${small[@]}" --model separable
        step "memcheck: mobilenet g4 training step" "$L/sanitizer.log" 60 \
            "$san" --tool memcheck --error-exitcode 1 "$T" mobilenet --device cuda --size 32 \
            --batch 2 --groups 4 --train --steps 1 --warmup 0
        step "racecheck: separable + dense forum steps" "$L/sanitizer.log" 60 \
            "$san" --tool racecheck --error-exitcode 1 "$T" "${small[@]}" --compare
        # MobileNet at 64 px: depthwise planes of 32x32 down to 2x2, so every tile shape
        # (several tiles per block) and the chunked bias/batchnorm reductions.
        step "racecheck: mobilenet dw training step (small planes)" "$L/sanitizer.log" 60 \
            "$san" --tool racecheck --error-exitcode 1 "$T" mobilenet --device cuda --size 64 \
            --batch 2 --train --steps 1 --warmup 0
        step "memcheck: test_cuda small planes, chunked bias, staged copies" \
            "$L/sanitizer.log" 90 env CK_RUN_CASE=cuda_small_planes \
            "$san" --tool memcheck --error-exitcode 1 "$BIN/test_cuda"
        step "synccheck: separable forum step" "$L/sanitizer.log" 45 \
            "$san" --tool synccheck --error-exitcode 1 "$T" "${small[@]}" --model separable
    else
        SUMMARY+=("SKIPPED   compute-sanitizer not found")
    fi

    step "gpu_conv_bench (depthwise vs copy, pointwise/dense vs cuBLAS)" "$L/bench.log" 90 \
        "$BIN/gpu_conv_bench" 11
    step "peaks --device cuda" "$L/bench.log" 40 "$T" peaks --device cuda

    for s in 64 128 256; do
        step "forum --compare --size $s --profile" "$L/forum.log" 60 \
            "$T" forum --device cuda --compare --size $s --steps 3 --warmup 1 --profile
    done
    for g in dw 1 4; do
        for b in 1 32; do
            step "mobilenet --groups $g --batch $b forward" "$L/mobilenet.log" 30 \
                "$T" mobilenet --device cuda --groups $g --batch $b --steps 5 --warmup 2
        done
        step "mobilenet --groups $g --batch 32 --train (1 step)" "$L/mobilenet.log" 30 \
            "$T" mobilenet --device cuda --groups $g --batch 32 --train --steps 1 --warmup 1
    done

    {
        echo "gpu_check summary ($(elapsed) s; $(nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null))"
        printf '  %s\n' "${SUMMARY[@]}"
        echo "key figures:"
        grep -hE "copy bandwidth|SGEMM|target|GFLOP/s = |Time cost|of copy" "$L"/bench.log "$L"/forum.log 2>/dev/null | head -80 | sed 's/^/  /'
    } >"$L/summary.txt"
    tar czf "$OUT/gpu_check_logs.tgz" -C "$L" . 2>/dev/null
    [ -f "$L/build.log" ] && cp "$L/build.log" "$L/gpu_build.log" # kept in the tarball
    for f in summary.txt gpu.txt tests.log sanitizer.log bench.log forum.log mobilenet.log; do
        [ -f "$L/$f" ] && cp "$L/$f" "$OUT/$f"
    done
    tail -n 80 "$L/tests.log" 2>/dev/null | grep -E "^[0-9]+%|Checks|FAIL|Error|error" | tail -n 15
    cat "$L/summary.txt"
    ! printf '%s\n' "${SUMMARY[@]}" | grep -qE "^(FAIL|TIMEOUT)"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: bench/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
