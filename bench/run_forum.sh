#!/usr/bin/env bash
# Side-by-side runs of tapegrad and the PyTorch peer (bench/forum_pytorch.py) for the two
# forum experiments. One process per configuration (so peak RSS is that config's), JSON
# lines appended to $OUT (default bench/results.jsonl); bench/table.py formats them.
#   bench/run_forum.sh [sizes...]          default: 32 64 128
#   MOBILENET=0 bench/run_forum.sh 256     forum only, at 256
#   WINOGRAD=0 ...                         without the tapegrad-only Winograd rows (the dense
#                                          net, MobileNet groups 1, with --conv $CONV_ROW)
#   CONV_ROW=auto ...                      those rows under --conv auto (the faster of GEMM
#                                          and Winograd per layer shape; default winograd)
# Run on a quiet machine: both tools use 2 threads and the cores must be otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results.jsonl}
tg=${TAPEGRAD:-./build/tools/tapegrad}
conv_row=${CONV_ROW:-winograd}
py="/usr/bin/python3 bench/forum_pytorch.py"
sizes=${*:-32 64 128}
steps_for() { case $1 in 32|64) echo "5 1" ;; 128) echo "3 1" ;; *) echo "2 1" ;; esac; }
for size in $sizes; do
  read -r steps warmup <<<"$(steps_for "$size")"
  for model in dense separable; do
    for tool in "$tg" "$py"; do
      echo "== forum $model ${size}x${size} ($tool)" >&2
      $tool forum --model "$model" --loss ce --optim sgd --size "$size" --steps "$steps" \
        --warmup "$warmup" --threads 2 --json >>"$out"
    done
  done
  if [ "${WINOGRAD:-1}" = 1 ]; then
    echo "== forum dense ${size}x${size} --conv $conv_row ($tg)" >&2
    $tg forum --model dense --conv "$conv_row" --loss ce --optim sgd --size "$size" \
      --steps "$steps" --warmup "$warmup" --threads 2 --json >>"$out"
  fi
done
if [ "${MOBILENET:-1}" = 1 ]; then
  for batch in 1 4 32; do
    for groups in dw 1 4; do
      for tool in "$tg" "$py"; do
        echo "== mobilenet groups $groups batch $batch ($tool)" >&2
        $tool mobilenet --groups "$groups" --batch "$batch" --steps 5 --warmup 1 \
          --threads 2 --json >>"$out"
      done
    done
    if [ "${WINOGRAD:-1}" = 1 ]; then
      echo "== mobilenet groups 1 batch $batch --conv $conv_row ($tg)" >&2
      $tg mobilenet --groups 1 --conv "$conv_row" --batch "$batch" --steps 5 --warmup 1 \
        --threads 2 --json >>"$out"
    fi
  done
fi
