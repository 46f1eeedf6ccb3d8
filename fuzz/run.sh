#!/usr/bin/env bash
# fuzz/run.sh — build the libFuzzer targets with clang (ASan + UBSan) and run each for a
# bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s; targets: idx checkpoint
#                                                     safetensors api)
#
# Builds into build-fuzz/ (the library sources are compiled in directly; no meson), seeds
# each corpus from tests/corpus/<target>/ (the regression inputs the io test suite also
# feeds to the loaders), and runs the targets one after another, each as a single
# process (one core), so it leaves the other cores alone.
# Crashes land in build-fuzz/artifacts/<target>/; copy each into tests/corpus/<target>/
# once fixed, so the io suite keeps checking it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(idx checkpoint safetensors api)

command -v clang >/dev/null || { echo "fuzz/run.sh: clang not found (apt-get install clang)" >&2; exit 1; }
out=build-fuzz
mkdir -p "$out"
cflags=(-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iinclude
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
        -Wno-unknown-pragmas)
srcs=(core/*.c autograd/*.c ops/*.c optim/*.c models/*.c io/*.c)
libs=(-lopenblas -lz -lcjson -lm -lpthread)

# The library once, as objects (instrumented for coverage, not linked with a main).
objs=()
for s in "${srcs[@]}"; do
    o="$out/obj/${s//\//_}.o"
    mkdir -p "$out/obj"
    if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ include/tapegrad.h -nt "$o" ]; then
        clang "${cflags[@]}" -c "$s" -o "$o"
    fi
    objs+=("$o")
done

clang -g -O1 -std=c11 -Iinclude -fsanitize=address "fuzz/seed_checkpoint.c" "${objs[@]}" \
    -fsanitize=fuzzer-no-link,undefined "${libs[@]}" -o "$out/seed_checkpoint"

for t in "${targets[@]}"; do
    clang "${cflags[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "${objs[@]}" "${libs[@]}" \
        -o "$out/fuzz_$t"
    corpus="$out/corpus-$t"
    mkdir -p "$corpus" "$out/artifacts/$t"
    [ -d "tests/corpus/$t" ] && cp -n tests/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    [ "$t" = checkpoint ] && "$out/seed_checkpoint" "$corpus"
    echo "== fuzz_$t for ${secs}s (corpus $corpus)"
    ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_$t" "$corpus" \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
        -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1 2>&1 | tail -n 25
done
