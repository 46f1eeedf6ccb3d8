#!/bin/sh
# tests/train_resume.sh — `tapegrad train mnist` (CNN, one process):
#   1. --conv gemm: two epochs in one go and one epoch + a resume to two end in
#      byte-identical checkpoints (no timing decides anything);
#   2. --conv auto (the default): the checkpoint carries the algorithm auto chose per conv
#      layer shape and a resume reuses it, so continuing a checkpoint to epoch 3 in one
#      process, or in two (resumed again at epoch 2), ends in the same bytes. (Two fresh
#      auto runs time their convs independently and may differ; that is why part 1 pins
#      gemm. tests/test_conv_auto.c forces a Winograd choice to show that a lost choice
#      changes the bits.)
#   3. a gemm checkpoint resumed under auto holds no choices, and the run says so.
#   usage: train_resume.sh TAPEGRAD MNIST_DIR
set -u
tapegrad=$1
data=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "train_resume.sh: $*" >&2; exit 1; }
common="--data $data --model cnn --batch 50 --threads 1 --quiet"

"$tapegrad" train mnist $common --conv gemm --epochs 2 --checkpoint "$dir/full.ckpt" \
    || fail "full run failed"
"$tapegrad" train mnist $common --conv gemm --epochs 1 --checkpoint "$dir/part.ckpt" \
    || fail "first half failed"
"$tapegrad" train mnist $common --conv gemm --epochs 2 --resume "$dir/part.ckpt" \
    --checkpoint "$dir/part.ckpt" || fail "resumed run failed"
cmp "$dir/full.ckpt" "$dir/part.ckpt" || fail "--conv gemm: resumed checkpoint differs"
echo "ok: --conv gemm resume byte-identical"

"$tapegrad" train mnist $common --epochs 1 --checkpoint "$dir/e1.ckpt" \
    || fail "auto: first epoch failed"
cp "$dir/e1.ckpt" "$dir/once.ckpt"
cp "$dir/e1.ckpt" "$dir/twice.ckpt"
out=$("$tapegrad" train mnist $common --epochs 3 --resume "$dir/once.ckpt" \
    --checkpoint "$dir/once.ckpt" 2>&1) || fail "auto: resume to 3 failed: $out"
echo "$out" | grep -q "conv auto: the checkpoint's choices restored for [1-9]" \
    || fail "auto: the resume restored no conv choices: $out"
"$tapegrad" train mnist $common --epochs 2 --resume "$dir/twice.ckpt" \
    --checkpoint "$dir/twice.ckpt" >/dev/null || fail "auto: resume to 2 failed"
"$tapegrad" train mnist $common --epochs 3 --resume "$dir/twice.ckpt" \
    --checkpoint "$dir/twice.ckpt" >/dev/null || fail "auto: resume from 2 to 3 failed"
cmp "$dir/once.ckpt" "$dir/twice.ckpt" \
    || fail "--conv auto: a run resumed at epoch 2 differs from one that went on"
echo "ok: --conv auto resume byte-identical (the checkpoint carries the choices)"

out=$("$tapegrad" train mnist $common --epochs 3 --resume "$dir/full.ckpt" \
    --checkpoint "$dir/auto.ckpt" 2>&1) || fail "auto resume of a gemm checkpoint failed: $out"
echo "$out" | grep -q "holds no --conv auto choices" \
    || fail "auto resume of a gemm checkpoint printed no note: $out"
[ -s "$dir/auto.ckpt" ] || fail "auto resume wrote no checkpoint"
echo "ok: --conv auto resume of a gemm checkpoint runs and says it times afresh"
