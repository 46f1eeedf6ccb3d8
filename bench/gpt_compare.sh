#!/bin/sh
# bench/gpt_compare.sh — tapegrad's tiny GPT and its PyTorch peer from the same initial
# weights, on the same data windows, in one run: the first losses side by side (their
# largest relative difference) and the median step times.
#   usage: bench/gpt_compare.sh [STEPS] [THREADS] [WORDS]    (from the repository root)
# Defaults: 20 steps, 2 threads, /usr/share/dict/words (else the built-in sample).
# Dropout is 0 on both sides (the two generators differ); everything else is the
# example's configuration.
set -eu
steps=${1:-20}
threads=${2:-2}
words=${3:-/usr/share/dict/words}
tg=${TAPEGRAD:-./build/tools/tapegrad}
out=${OUT_DIR:-bench/out}
mkdir -p "$out"
if [ -r "$words" ]; then src="--words $words"; else src="--builtin"; fi
# shellcheck disable=SC2086
"$tg" train words $src --steps "$steps" --threads "$threads" --dropout 0 --samples 0 \
    --eval-every "$steps" --init-out "$out/gpt_init.safetensors" \
    --step-log "$out/gpt_tapegrad.csv" >"$out/gpt_tapegrad.log"
# shellcheck disable=SC2086
OMP_NUM_THREADS=$threads /usr/bin/python3 bench/gpt_pytorch.py $src --steps "$steps" \
    --threads "$threads" --init "$out/gpt_init.safetensors" \
    --step-log "$out/gpt_pytorch.csv" >"$out/gpt_pytorch.log"
/usr/bin/python3 - "$out/gpt_tapegrad.csv" "$out/gpt_pytorch.csv" <<'PY'
import csv, statistics, sys
a = list(csv.DictReader(open(sys.argv[1])))
b = list(csv.DictReader(open(sys.argv[2])))
n = min(len(a), len(b))
worst = 0.0
print(f"{'step':>5} {'tapegrad':>12} {'pytorch':>12} {'rel diff':>10}")
for i in range(n):
    la, lb = float(a[i]["loss"]), float(b[i]["loss"])
    d = abs(la - lb) / abs(lb)
    worst = max(worst, d)
    print(f"{a[i]['step']:>5} {la:12.7f} {lb:12.7f} {d:10.2e}")
ta = statistics.median(float(r["ms"]) for r in a[1:])
tb = statistics.median(float(r["ms"]) for r in b[1:])
print(f"first {n} losses: largest relative difference {worst:.2e}")
print(f"median step (after the first): tapegrad {ta:.3f} ms, pytorch {tb:.3f} ms, "
      f"ratio {ta / tb:.2f}x")
PY
