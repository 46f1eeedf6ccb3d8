"""Golden values for ops/linear.c: F.linear forward and the gradients of x, weight and
bias, with and without a bias."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
arrays = {}
# (name, N, in, out, bias)
for name, n, fin, fout, has_bias in (("bias", 3, 5, 7, True), ("nobias", 1, 4, 3, False),
                                     ("wide", 4, 33, 17, True)):
    x = f32(torch.randn(n, fin)).requires_grad_(True)
    w = f32(torch.randn(fout, fin) / fin ** 0.5).requires_grad_(True)
    b = f32(torch.randn(fout)).requires_grad_(True) if has_bias else None
    dout = f32(torch.randn(n, fout))
    y = F.linear(x, w, b)
    y.backward(dout)
    arrays.update({f"{name}.x": x, f"{name}.weight": w, f"{name}.dout": dout,
                   f"{name}.y": y, f"{name}.dx": x.grad, f"{name}.dweight": w.grad})
    if has_bias:
        arrays.update({f"{name}.bias": b, f"{name}.dbias": b.grad})
save(here / "linear.bin", arrays)
