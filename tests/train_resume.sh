#!/bin/sh
# tests/train_resume.sh — `tapegrad train mnist` (CNN, one process): two epochs in one go
# and one epoch + a resume to two end in byte-identical checkpoints with --conv gemm; a
# resume under --conv auto (the default) runs and says that bit-exact resume needs a pinned
# algorithm (auto times the convolutions afresh in every process).
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

out=$("$tapegrad" train mnist $common --epochs 3 --resume "$dir/full.ckpt" \
    --checkpoint "$dir/auto.ckpt" 2>&1) || fail "auto resume failed: $out"
echo "$out" | grep -q "bit for bit only with --conv gemm" \
    || fail "auto resume printed no note on bit-exact resume: $out"
[ -s "$dir/auto.ckpt" ] || fail "auto resume wrote no checkpoint"
echo "ok: --conv auto resume runs and says how to make it bit-exact"
