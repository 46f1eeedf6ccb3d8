#!/bin/sh
# tests/words_resume.sh — `tapegrad train words` resumes byte-identically: 40 steps in one
# run and 20 (--stop-after 20 of the same 40-step schedule) + (resume) 20 steps must leave
# identical checkpoint files, dropout included.
#   usage: words_resume.sh TAPEGRAD WORKDIR
set -eu
tg=$1
dir=$2
mkdir -p "$dir"
common="--builtin --batch 8 --block 8 --layers 1 --embd 16 --heads 2 --eval-every 20 --samples 0"
# shellcheck disable=SC2086
"$tg" train words $common --steps 40 --checkpoint "$dir/full.ckpt" >/dev/null
# shellcheck disable=SC2086
"$tg" train words $common --steps 40 --stop-after 20 --checkpoint "$dir/part.ckpt" >/dev/null
# shellcheck disable=SC2086
"$tg" train words $common --steps 40 --resume "$dir/part.ckpt" --checkpoint "$dir/part.ckpt" >/dev/null
if cmp "$dir/full.ckpt" "$dir/part.ckpt"; then
    echo "words_resume: 40 steps == 20 + resumed 20 (byte-identical checkpoints)"
else
    echo "words_resume: the resumed run's checkpoint differs from the uninterrupted one" >&2
    exit 1
fi
