"""Golden values for ops/pool.c: F.max_pool2d (distinct values, ties, NaN and +-inf),
F.avg_pool2d (count_include_pad=True, floor mode) and adaptive_avg_pool2d(x, 1), forward
and input gradient."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(0)
arrays = {}

# Distinct values (a scaled random permutation): no ties in max pool.
shape = (2, 3, 7, 6)
n = 2 * 3 * 7 * 6
x = f32((torch.randperm(n).to(torch.float64) - n / 2) / 16).reshape(shape)
# Heavy ties: small integers, so max pool must pick the first maximum like PyTorch.
xt = f32(torch.randint(0, 3, shape).to(torch.float64))
# NaN propagation (issue 10): NaNs, +-inf and ties mixed in. PyTorch replaces the running
# max on a strictly larger value or on NaN, so a window with NaN gives NaN and its
# gradient goes to the window's LAST NaN (row-major); a window of -inf only gives -inf
# with the gradient on its first pixel.
xn = xt.clone()
g = torch.Generator().manual_seed(5)
xn[torch.rand(shape, generator=g) < 0.12] = float("nan")
xn[torch.rand(shape, generator=g) < 0.05] = float("inf")
xn[0, 1, 2:5, 1:4] = float("-inf")
arrays["x"] = x
arrays["xt"] = xt
arrays["xn"] = xn

# name -> (kernel, stride, padding) as (h, w) pairs
configs = {
    "k2s2p0": ((2, 2), (2, 2), (0, 0)),
    "k3s2p1": ((3, 3), (2, 2), (1, 1)),
    "k3s1p1": ((3, 3), (1, 1), (1, 1)),
    "k2x3s1x2p1x0": ((2, 3), (1, 2), (1, 0)),
    "k3x2s2x1p0x1": ((3, 2), (2, 1), (0, 1)),
}
for name, (k, s, p) in configs.items():
    dshape = F.max_pool2d(x, k, s, p).shape
    dout = f32(torch.randn(dshape))
    arrays[name + ".dout"] = dout
    for op, fn in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
        for src in ("x", "xt", "xn"):
            if op == "avg" and src != "x":
                continue
            xi = arrays[src].clone().requires_grad_(True)
            y = fn(xi, k, s, p)
            y.backward(dout)
            tag = "%s%s.%s" % (op, {"x": "", "xt": "_ties", "xn": "_nan"}[src], name)
            arrays[tag + ".y"] = y
            arrays[tag + ".dx"] = xi.grad

xi = x.clone().requires_grad_(True)
y = F.adaptive_avg_pool2d(xi, 1)
dout = f32(torch.randn(y.shape))
y.backward(dout)
arrays["gap.dout"] = dout
arrays["gap.y"] = y
arrays["gap.dx"] = xi.grad
save(here / "pool.bin", arrays)
