"""Golden values for ops/elementwise.c: add, sub, mul, div with broadcasting.

Cases (index k): shapes of a and b; every op's output and both input gradients for one
random dout. b is kept away from 0 (|b| >= 0.5) so div is well conditioned. The "self"
case feeds one tensor as both operands (x op x): both gradients land in one buffer.
"""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(12)
CASES = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),  # same shapes
    ((2, 3, 4, 5), (5,)),          # rank difference: a bias along the last dim
    ((3, 1, 5), (1, 4, 1)),        # both broadcast
    ((4, 5), ()),                  # scalar b
    ((), (3, 4)),                  # scalar a
    ((2, 1, 4, 1), (3, 1, 5)),     # rank difference and size-1 dims on both sides
    ((1,), (1, 1)),                # all ones
    ((6, 1), (1, 7)),              # outer product
]
OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}
arrays = {}
for k, (sa, sb) in enumerate(CASES):
    a = f32(torch.randn(sa))
    b = torch.randn(sb)
    b = f32(torch.sign(b) * (0.5 + b.abs()))
    out_shape = torch.broadcast_shapes(sa, sb)
    dout = f32(torch.randn(out_shape))
    arrays.update({f"c{k}.a": a, f"c{k}.b": b, f"c{k}.dout": dout})
    for name, fn in OPS.items():
        ai, bi = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = fn(ai, bi)
        y.backward(dout)
        arrays.update({f"{name}.c{k}.y": y, f"{name}.c{k}.da": ai.grad,
                       f"{name}.c{k}.db": bi.grad})

x = torch.randn(3, 4)
x = f32(torch.sign(x) * (0.5 + x.abs()))
dout = f32(torch.randn(3, 4))
arrays.update({"self.x": x, "self.dout": dout})
for name, fn in OPS.items():
    xi = x.clone().requires_grad_(True)
    y = fn(xi, xi)
    y.backward(dout)
    arrays.update({f"{name}.self.y": y, f"{name}.self.dx": xi.grad})
save(here / "broadcast.bin", arrays)
