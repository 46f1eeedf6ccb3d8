#!/bin/sh
# bench/run_dist.sh — data-parallel figures for bench/RESULTS.md and docs/SCALING.md:
# all-reduce vs copy bandwidth and the overlap with 2 ranks x 1 thread, then the same
# training steps in 1 process x 2 threads.   usage: bench/run_dist.sh [BUILD_DIR] [STEPS]
set -eu
build=${1:-build}
steps=${2:-5}
mpirun --oversubscribe --allow-run-as-root --bind-to none -np 2 \
    "$build/bench/dist_bench" --threads 1 --steps "$steps"
echo
"$build/bench/dist_bench" --threads 2 --steps "$steps"
