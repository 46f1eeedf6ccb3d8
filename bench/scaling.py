#!/usr/bin/env python3
"""bench/scaling.py - the data-parallel cost model of docs/SCALING.md, as a table.

    step(N) = compute(b) + exposed(N)            (weak scaling: b examples per rank)
    allreduce(N) = 2 (N-1)/N * G / busbw + buckets * latency     (ring, bucketed)
    exposed(N) = max(allreduce(N) - hidden * backward(b), last bucket)
    efficiency = compute(b) / step(N)

G is the gradient bytes (4 x trainable parameters); hidden is the share of the backward
pass that can cover communication (on the CPU as measured by bench/dist_bench.c; on CUDA,
where NCCL runs on its own stream next to the backward kernels, not measured yet: the
table gives both ends).
Usage: bench/scaling.py [--check PARAMS BUCKETS COMPUTE_S BACKWARD_S BUSBW_GBPS LATENCY_S
HIDDEN]
prints the projections, or the 2-rank prediction for one measured model on this host.
"""
import sys

# Trainable parameters (printed by the tools; DESIGN section 7 for the forum nets) and
# buckets at 512 KiB cut at parameter boundaries (tg_dist_stats.buckets): a dense layer
# (2.36 MB) is a bucket of its own, two separable layers (2 x 0.27 MB) make one.
MODELS = {
    "forum dense 256^2": (28_354_058, 48),
    "forum separable 256^2": (3_311_114, 25),
    "mnist cnn": (206_922, 2),
}

# Per-GPU compute per step (seconds) and the backward's share of it. ASSUMED, not
# measured (no GPU has run this code yet): an H100 SXM at fp32 (67 TFLOP/s, 3.35 TB/s);
# dense = 11.14 TFLOP at 70% of peak; separable = the dense roofline bound / 6.8 (DESIGN
# section 7) at 50% of its roofline; the MNIST CNN at batch 64 is launch-bound (~60
# kernels forward and backward at ~10 us). Backward is about 2/3 of a step.
GPU_COMPUTE = {
    "forum dense 256^2": 11.14e12 / (0.70 * 67e12),
    "forum separable 256^2": 11.14e12 / 67e12 / 6.8 / 0.50,
    "mnist cnn": 1.0e-3,
}
BACKWARD_SHARE = 2 / 3

# Links: achieved all-reduce bus bandwidth (bytes/s) and latency per bucket (seconds).
LINKS = {
    "8 GPUs, NVLink (1 node)": (8, 360e9, 20e-6),
    "64 GPUs, 100 Gb/s per GPU": (64, 0.8 * 100e9 / 8, 50e-6),
    "64 GPUs, 400 Gb/s per GPU": (64, 0.8 * 400e9 / 8, 50e-6),
}


def allreduce(n, grad_bytes, nb, busbw, latency):
    return 2 * (n - 1) / n * grad_bytes / busbw + nb * latency


def step(n, grad_bytes, nb, compute, backward, busbw, latency, hidden):
    ar = allreduce(n, grad_bytes, nb, busbw, latency)
    last = ar / nb
    exposed = max(ar - hidden * backward, last)
    return compute + exposed, ar, exposed


def projections():
    print(f"{'model':24} {'links':28} {'G MB':>7} {'compute ms':>11} {'allreduce ms':>13} "
          f"{'eff. no overlap':>16} {'eff. full overlap':>18}")
    for name, (params, nb) in MODELS.items():
        g = 4 * params
        c = GPU_COMPUTE[name]
        for link, (n, bw, lat) in LINKS.items():
            s0, ar, _ = step(n, g, nb, c, BACKWARD_SHARE * c, bw, lat, 0.0)
            s1, _, _ = step(n, g, nb, c, BACKWARD_SHARE * c, bw, lat, 1.0)
            print(f"{name:24} {link:28} {g / 1e6:7.1f} {1e3 * c:11.2f} {1e3 * ar:13.3f} "
                  f"{100 * c / s0:15.1f}% {100 * c / s1:17.1f}%")


def check(argv):
    """One measured model on this host: its parameters, buckets, per-rank compute and
    backward seconds, the measured bus bandwidth (GB/s), latency per bucket and hidden."""
    params, nb = int(argv[0]), int(argv[1])
    compute, backward, busbw, latency, hidden = map(float, argv[2:7])
    s, ar, ex = step(2, 4 * params, nb, compute, backward, busbw * 1e9, latency, hidden)
    print(f"predicted 2-rank step {s:.4f} s (all-reduce {ar:.4f} s, exposed {ex:.4f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        check(sys.argv[2:9])
    else:
        projections()
