#!/bin/sh
# tests/dist_cli.sh — `tapegrad train mnist --dist` under mpirun (2 ranks, this host):
#   1. two epochs in one go and one epoch + a resume to two end in byte-identical
#      checkpoints (rank 0 writes after a barrier, every rank loads); with --conv gemm,
#      as two fresh runs under --conv auto time their convolutions independently;
#   2. resuming that checkpoint with 3 ranks, or without --dist, is refused (exit 1, the
#      message names the world size);
#   3. a rank killed mid-run (SIGKILL) ends the whole job with a non-zero status within a
#      bounded time, and the checkpoint written before still loads;
#   4. `tapegrad forum --dist` runs, rank 0 alone prints;
#   5. --dist outside mpirun is one line and exit status 2.
#   usage: dist_cli.sh MPIRUN TAPEGRAD MNIST_DIR
set -u
mpirun=$1
tapegrad=$2
data=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() { "$mpirun" --oversubscribe --allow-run-as-root --bind-to none "$@"; }
fail() { echo "dist_cli.sh: $*" >&2; exit 1; }
common="--data $data --batch 50 --threads 1 --quiet --conv gemm"

# 1. resume under MPI is byte-identical to an uninterrupted run
run -np 2 "$tapegrad" train mnist --dist $common --epochs 2 --checkpoint "$dir/full.ckpt" \
    || fail "2-epoch run failed"
run -np 2 "$tapegrad" train mnist --dist $common --epochs 1 --checkpoint "$dir/part.ckpt" \
    || fail "1-epoch run failed"
run -np 2 "$tapegrad" train mnist --dist $common --epochs 2 --resume "$dir/part.ckpt" \
    --checkpoint "$dir/part.ckpt" || fail "resumed run failed"
cmp "$dir/full.ckpt" "$dir/part.ckpt" || fail "resumed checkpoint differs from the full run"
echo "ok: resume under MPI byte-identical"

# 2. another world size is refused, with the reason
out=$(run -np 3 "$tapegrad" train mnist --dist $common --epochs 3 --resume "$dir/part.ckpt" 2>&1)
[ $? -ne 0 ] || fail "a 3-rank resume of a 2-rank checkpoint was accepted"
case "$out" in *"this run has 3"*) ;; *) fail "no world-size message: $out" ;; esac
out=$("$tapegrad" train mnist $common --epochs 3 --resume "$dir/part.ckpt" 2>&1)
[ $? -eq 1 ] || fail "a 1-process resume of a 2-rank checkpoint was accepted"
case "$out" in *"run of 2 processes"*) ;; *) fail "no world-size message: $out" ;; esac
echo "ok: resume with another world size refused"

# 3. a killed rank ends the job; the checkpoint from before stays loadable
cp "$dir/full.ckpt" "$dir/kill.ckpt"
run -np 2 "$tapegrad" train mnist --dist $common --epochs 1000 --resume "$dir/kill.ckpt" \
    --checkpoint "$dir/kill.ckpt" >"$dir/kill.log" 2>&1 &
job=$!
# wait for the ranks to be running, then kill one of them (a child of mpirun)
victim=""
for _ in $(seq 1 100); do
    victim=$(pgrep -P "$job" -f "tapegrad train" | tail -n 1)
    [ -n "$victim" ] && [ -s "$dir/kill.ckpt" ] && break
    sleep 0.1
done
[ -n "$victim" ] || { kill "$job"; fail "no rank process found under mpirun ($job)"; }
sleep 1
kill -KILL "$victim"
start=$(date +%s)
status=0
# bounded wait: the job must be gone within 30 s
for _ in $(seq 1 300); do
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then
    kill -KILL "$job"
    fail "the job still runs 30 s after a rank was killed"
fi
wait "$job"
status=$?
[ "$status" -ne 0 ] || fail "the job exited 0 after a rank was killed"
echo "ok: killed rank ended the job in $(( $(date +%s) - start )) s with status $status"
run -np 2 "$tapegrad" train mnist --dist $common --epochs 1 --resume "$dir/kill.ckpt" \
    || fail "the checkpoint left by the killed job does not load"
echo "ok: checkpoint after the kill loads"

# 4. forum --dist: rank 0 alone prints one JSON result and the communication line
out=$(run -np 2 "$tapegrad" forum --dist --size 6 --channels 4 --layers 4 --batch 3 --bn \
    --steps 1 --warmup 0 --threads 1 --json 2>"$dir/forum.err") || fail "forum --dist failed"
[ "$(printf '%s\n' "$out" | grep -c '"command": "forum"')" -eq 1 ] \
    || fail "forum --dist: expected one JSON line from rank 0: $out"
grep -q "data parallel (dense/sgd): 2 ranks, global batch 3" "$dir/forum.err" \
    || fail "forum --dist: no data-parallel line"
echo "ok: forum --dist"

# 5. --dist without mpirun
out=$(env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_SIZE "$tapegrad" train mnist --dist 2>&1)
[ $? -eq 2 ] || fail "--dist outside mpirun did not exit 2"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "--dist outside mpirun: not one line: $out"
echo "ok: --dist outside mpirun: $out"
exit 0
