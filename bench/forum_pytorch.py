#!/usr/bin/python3
"""bench/forum_pytorch.py — the PyTorch peer of `tapegrad forum` and `tapegrad mobilenet`.

Same flags, same timing rules, same JSON keys, so the two can be put side by side:

    /usr/bin/python3 bench/forum_pytorch.py forum --compare --size 32 --steps 3
    /usr/bin/python3 bench/forum_pytorch.py forum --model separable --size 64 --json
    /usr/bin/python3 bench/forum_pytorch.py mobilenet --groups dw --batch 4 --json

Rules (as tapegrad's): warm-up steps are excluded; the device is synchronised before
every clock read; a full step is zero_grad + forward + loss + backward + optimizer step
(SGD lr 1e-3 momentum 0.9, or Adam lr 1e-3); the input and targets are made once. CPU
runs use 2 threads (torch.set_num_threads) unless --threads says otherwise.

FLOPs are counted with the same model as tapegrad's conv cost function (forward
2*MACs + bias adds, backward 4*MACs + bias sums), convolutions and linear layers only.
peak_bytes is the process's peak RSS on the CPU and torch.cuda.max_memory_allocated on
CUDA. Fields tapegrad measures and this script does not (roofline) are null.

Memory note (DESIGN §6): glibc serves PyTorch's large activation buffers with mmap and
hands them back to the OS when freed, so every step faults them in again (about 1.5 us
per 4 KiB page on these VMs). To see PyTorch with its memory kept, run it with
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
(every allocation from the heap, never trimmed); on the 2-core development VM this cut
the kernel time of a 128x128 separable run (1 warm-up + 2 steps) from 6.9 s to 4.2 s.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2, as tapegrad does."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: {message}\n")
        sys.exit(2)


# ---------------------------------------------------------------- models

def forum50(separable, loss, channels=256, layers=50, relu=False, bn=False):
    """conv(3->C) + (layers-2) dense 3x3 or depthwise 3x3 + pointwise 1x1 + conv(C->10|3);
    every conv with bias; BN/ReLU after every conv but the last."""
    mods = []

    def conv(cin, cout, k, groups, last=False):
        mods.append(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=True))
        if not last:
            if bn:
                mods.append(nn.BatchNorm2d(cout))
            if relu:
                mods.append(nn.ReLU(inplace=False))

    conv(3, channels, 3, 1)
    for _ in range(layers - 2):
        if separable:
            conv(channels, channels, 3, channels)
            conv(channels, channels, 1, 1)
        else:
            conv(channels, channels, 3, 1)
    conv(channels, 10 if loss == "ce" else 3, 3, 1, last=True)
    return nn.Sequential(*mods)


MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + \
    [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def mobilenet(groups, num_classes=1000):
    """MobileNet v1: conv 3->32 s2, 13 blocks (3x3 groups g + 1x1), BN + ReLU after every
    bias-free conv, global average pool, linear 1024 -> 1000. groups 0 = depthwise."""
    def cbr(cin, cout, k, stride, g):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=g, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    mods = cbr(3, 32, 3, 2, 1)
    cin = 32
    for cout, stride in MOBILENET_BLOCKS:
        mods += cbr(cin, cin, 3, stride, groups or cin)
        mods += cbr(cin, cout, 1, 1, 1)
        cin = cout
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes)]
    return nn.Sequential(*mods)


def count_flops(model, x, train):
    """Conv and linear FLOPs of one forward (and backward when train), tapegrad's model."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            macs = out.numel() * (mod.in_channels // mod.groups) * \
                mod.kernel_size[0] * mod.kernel_size[1]
        else:
            macs = out.numel() * mod.in_features
        bias = out.numel() if mod.bias is not None else 0
        total[0] += 2 * macs + bias + ((4 * macs + bias) if train else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


# ---------------------------------------------------------------- timing

def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def stats(xs):
    return statistics.median(xs), min(xs), max(xs)


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_steps(a, model, x, loss_fn, target, opt, label):
    """Warm-up, then timed steps; returns lists of fwd, fwd+bwd and step seconds."""
    fwd, fb, step = [], [], []
    start = time.perf_counter()
    prof = torch.autograd.profiler.profile() if a.profile else None
    for i in range(a.warmup + a.steps):
        timed = i >= a.warmup
        if timed and prof is not None and i == a.warmup:
            prof.__enter__()
        sync(a.device)
        t0 = time.perf_counter()
        if opt is not None:
            opt.zero_grad()
            sync(a.device)
            ta = time.perf_counter()
            loss = loss_fn(model(x), target)
            sync(a.device)
            tb = time.perf_counter()
            loss.backward()
            sync(a.device)
            tc = time.perf_counter()
            opt.step()
            sync(a.device)
            td = time.perf_counter()
        else:
            with torch.no_grad():
                ta = t0
                model(x)
                sync(a.device)
                tb = tc = td = time.perf_counter()
        if timed:
            fwd.append(tb - ta)
            fb.append(tc - ta)
            step.append(td - t0)
        if time.perf_counter() - start > 3.0:
            print(f"  {label}: {'step' if timed else 'warm-up'} "
                  f"{i - a.warmup + 1 if timed else i + 1}/{a.steps if timed else a.warmup}"
                  f"  {td - t0:.3f} s", file=sys.stderr, flush=True)
    if prof is not None:
        prof.__exit__(None, None, None)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25),
              file=a.out)
    return fwd, fb, step


def result(a, command, fields, params, flops, fwd, fb, step, train):
    r = {"command": command, **fields, "device": a.device,
         "threads": torch.get_num_threads(), "steps": a.steps, "warmup": a.warmup,
         "seed": a.seed, "framework": f"pytorch {torch.__version__}", "params": params}
    r["fwd_s"], r["fwd_min_s"], r["fwd_max_s"] = stats(fwd)
    if train:
        r["fwdbwd_s"], r["fwdbwd_min_s"], r["fwdbwd_max_s"] = stats(fb)
        r["step_s"], r["step_min_s"], r["step_max_s"] = stats(step)
        per = r["step_s"]
    else:
        r.update(fwdbwd_s=None, step_s=None, step_min_s=None, step_max_s=None)
        per = r["fwd_s"]
    r["flops"] = flops
    r["bytes_moved"] = None
    r["gflops"] = flops / per * 1e-9
    r.update(roofline_s=None, roofline_ratio=None, sgemm_peak_gflops=None, copy_gbps=None,
             arena_peak_bytes=None, store_bytes=None)
    if a.device == "cuda":
        r["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        r["peak_bytes"] = peak_rss()
    r["rss_bytes"] = peak_rss()
    return r


def print_summary(r, f):
    print(f"Trainable Parameters: {r['params']}", file=f)
    per = r["step_s"] if r["step_s"] is not None else r["fwd_s"]
    print(f"Time cost: {per:.4f} s", file=f)
    print(f"  {'(seconds)':18s} {'median':>10s} {'min':>10s} {'max':>10s}", file=f)
    rows = [("forward", "fwd")]
    if r["step_s"] is not None:
        rows += [("forward+backward", "fwdbwd"), ("full step", "step")]
    for name, k in rows:
        print(f"  {name:18s} {r[k + '_s']:10.4f} {r[k + '_min_s']:10.4f} "
              f"{r[k + '_max_s']:10.4f}", file=f)
    print(f"  work: {r['flops'] * 1e-9:.4g} GFLOP (conv + linear); achieved "
          f"{r['gflops']:.1f} GFLOP/s", file=f)
    print(f"  memory: peak {r['peak_bytes'] / 2**20:.1f} MiB", file=f)


# ---------------------------------------------------------------- subcommands

def setup(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out = sys.stderr if a.json else sys.stdout
    if a.device == "cuda" and not torch.cuda.is_available():
        print(f"{a.prog}: no CUDA device available to PyTorch", file=sys.stderr)
        sys.exit(1)


def cmd_forum(a):
    setup(a)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(dev)
    if a.loss == "ce":
        target = torch.randint(0, 10, (a.batch, a.size, a.size), generator=g).to(dev)
        loss_fn = nn.CrossEntropyLoss()
    else:
        target = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(dev)
        loss_fn = nn.MSELoss()
    models = ["dense", "separable"] if a.compare else [a.model]
    optims = ["sgd", "adam"] if a.optim == "all" else [a.optim]
    print(f"forum_pytorch.py forum: loss {a.loss}, input {a.batch}x3x{a.size}x{a.size}, "
          f"{a.channels} channels, {a.layers} layers, {a.device}, "
          f"{torch.get_num_threads()} threads, {a.steps} timed steps after {a.warmup} warm-up",
          file=a.out)
    results = []
    for m in models:
        for o in optims:
            torch.manual_seed(a.seed)
            model = forum50(m == "separable", a.loss, a.channels, a.layers, a.relu,
                            a.bn).to(dev)
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            opt = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if o == "sgd"
                   else torch.optim.Adam(model.parameters(), lr=1e-3))
            flops = count_flops(model, x, True)
            fwd, fb, step = time_steps(a, model, x, loss_fn, target, opt, f"{m}/{o}")
            r = result(a, "forum", {"model": m, "loss": a.loss, "optim": o, "size": a.size,
                                    "channels": a.channels, "batch": a.batch,
                                    "layers": a.layers, "relu": a.relu, "bn": a.bn},
                       params, flops, fwd, fb, step, True)
            results.append(r)
            print(f"\n== {m}/{o}", file=a.out)
            print_summary(r, a.out)
            del model, opt
    for d in results:
        for s in results:
            if d["model"] == "dense" and s["model"] == "separable" and d["optim"] == s["optim"]:
                print(f"\nseparable/dense ({s['optim']}): measured speedup "
                      f"{d['step_s'] / s['step_s']:.2f}x   FLOP ratio "
                      f"{d['flops'] / s['flops']:.2f}x", file=a.out)
    if a.json:
        for r in results:
            print(json.dumps(r), flush=True)


def cmd_mobilenet(a):
    if a.groups == "dw":
        groups = 0
    else:
        try:
            groups = int(a.groups)
        except ValueError:
            groups = -1
        if groups < 1 or 32 % groups:
            print(f"{a.prog}: --groups {a.groups}: expected dw, 1, 4 or another divisor of 32",
                  file=sys.stderr)
            sys.exit(2)
    setup(a)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(dev)
    target = torch.randint(0, 1000, (a.batch,), generator=g).to(dev)
    model = mobilenet(groups).to(dev)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = None
    if a.train:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    else:
        model.eval()
    flops = count_flops(model, x, a.train)
    print(f"forum_pytorch.py mobilenet: groups {a.groups}, input {a.batch}x3x{a.size}x{a.size}, "
          f"{a.device}, {torch.get_num_threads()} threads, "
          f"{'training steps' if a.train else 'eval-mode forwards'}", file=a.out)
    fwd, fb, step = time_steps(a, model, x, nn.CrossEntropyLoss(), target, opt,
                               f"groups {a.groups}")
    r = result(a, "mobilenet", {"model": f"mobilenet-v1-{'dw' if groups == 0 else f'g{groups}'}",
                                "groups": a.groups, "loss": "ce" if a.train else "none",
                                "optim": "sgd" if a.train else "none", "train": a.train,
                                "size": a.size, "channels": 3, "batch": a.batch},
               params, flops, fwd, fb, step, a.train)
    print_summary(r, a.out)
    if a.json:
        print(json.dumps(r), flush=True)


def main():
    p = OneLineParser(prog="forum_pytorch.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def common(s, steps, warmup, size):
        s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        s.add_argument("--steps", type=int, default=steps)
        s.add_argument("--warmup", type=int, default=warmup)
        s.add_argument("--size", type=int, default=size)
        s.add_argument("--batch", type=int, default=1)
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--profile", action="store_true")
        s.add_argument("--json", action="store_true")

    f = sub.add_parser("forum", help="the 50-layer dense vs separable experiment")
    f.add_argument("--model", choices=["dense", "separable"], default="dense")
    f.add_argument("--loss", choices=["ce", "mse"], default="ce")
    f.add_argument("--optim", choices=["sgd", "adam", "all"], default="sgd")
    f.add_argument("--channels", type=int, default=256)
    f.add_argument("--layers", type=int, default=50)
    f.add_argument("--relu", action="store_true")
    f.add_argument("--bn", action="store_true")
    f.add_argument("--compare", action="store_true")
    common(f, 5, 1, 256)
    m = sub.add_parser("mobilenet", help="MobileNet v1 with groups = C, 1 or 4")
    m.add_argument("--groups", default="dw")
    m.add_argument("--train", action="store_true")
    common(m, 10, 2, 224)
    a = p.parse_args()
    a.prog = f"forum_pytorch.py {a.command}"
    for name in ("size", "batch", "steps", "threads") + (("channels",) if a.command == "forum"
                                                         else ()):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.warmup < 0:
        p.error(f"--warmup must be >= 0, got {a.warmup}")
    if a.command == "forum" and a.layers < 2:
        p.error(f"--layers must be >= 2, got {a.layers}")
    (cmd_forum if a.command == "forum" else cmd_mobilenet)(a)


if __name__ == "__main__":
    main()
