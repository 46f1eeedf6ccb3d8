"""Golden values for ops/elementwise.c (add) and ops/shape.c (reshape, flatten)."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(1)
a = f32(torch.randn(2, 3, 4, 5))
b = f32(torch.randn(2, 3, 4, 5))
dout = f32(torch.randn(2, 3, 4, 5))
ai, bi = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
# y = (a + b) + a: a fans out, so da = 2 dout, db = dout.
y = (ai + bi) + ai
y.backward(dout)
arrays = {"a": a, "b": b, "dout": dout, "add.y": y, "add.da": ai.grad, "add.db": bi.grad}

# reshape (2,3,4,5) -> (6,-1) -> relu-free scaling through a flatten: L = sum(w * flat(x))
x = f32(torch.randn(2, 3, 4, 5))
w = f32(torch.randn(6, 20))
xi = x.clone().requires_grad_(True)
r = xi.reshape(6, -1)
(r * w).sum().backward()
arrays.update({"x": x, "w": w, "reshape.y": r, "reshape.dx": xi.grad})
xi.grad = None
f = torch.flatten(xi, 1)
wf = f32(torch.randn(2, 60))
(f * wf).sum().backward()
arrays.update({"wf": wf, "flatten.y": f, "flatten.dx": xi.grad})
save(here / "elementwise.bin", arrays)
