"""Golden values for ops/softmax.c: softmax and log_softmax along every dim of a 4-D
tensor (and a 2-D one with large logits), and the causal mask followed by softmax."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(12)
x = f32(torch.randn(2, 3, 4, 5) * 3)
dout = f32(torch.randn(2, 3, 4, 5))
big = f32(torch.randn(3, 7) * 40 + 100)  # logits far from 0: the max subtraction matters
dbig = f32(torch.randn(3, 7))
arrays = {"x": x, "dout": dout, "big": big, "dbig": dbig}
for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    for dim in range(4):
        xi = x.clone().requires_grad_(True)
        y = fn(xi, dim)
        y.backward(dout)
        arrays[f"{name}.{dim}.y"] = y
        arrays[f"{name}.{dim}.dx"] = xi.grad
    bi = big.clone().requires_grad_(True)
    y = fn(bi, -1)
    y.backward(dbig)
    arrays[f"{name}.big.y"] = y
    arrays[f"{name}.big.dx"] = bi.grad
# Attention scores (B, H, T, T) -> causal mask -> softmax along the last dim.
s = f32(torch.randn(2, 2, 5, 5) * 2)
ds = f32(torch.randn(2, 2, 5, 5))
si = s.clone().requires_grad_(True)
mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
p = torch.softmax(si.masked_fill(mask, float("-inf")), -1)
p.backward(ds)
arrays.update({"scores": s, "dscores": ds, "causal.p": p, "causal.dx": si.grad})
save(here / "softmax.bin", arrays)
