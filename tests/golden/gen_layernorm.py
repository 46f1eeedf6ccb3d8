"""Golden values for ops/layernorm.c: nn.functional.layer_norm over the last 1 and 2
dims, with and without weight and bias; forward and every gradient."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(13)
x = f32(torch.randn(3, 4, 6) * 2 + 0.5)
dout = f32(torch.randn(3, 4, 6))
arrays = {"x": x, "dout": dout}
for k in (1, 2):
    shape = x.shape[-k:]
    w = f32(torch.randn(shape))
    b = f32(torch.randn(shape))
    arrays[f"w{k}"] = w
    arrays[f"b{k}"] = b
    for affine in (0, 1):
        xi = x.clone().requires_grad_(True)
        wi = w.clone().requires_grad_(True) if affine else None
        bi = b.clone().requires_grad_(True) if affine else None
        y = torch.nn.functional.layer_norm(xi, shape, wi, bi, eps=1e-5)
        y.backward(dout)
        key = f"ln{k}.{affine}"
        arrays[key + ".y"] = y
        arrays[key + ".dx"] = xi.grad
        if affine:
            arrays[key + ".dw"] = wi.grad
            arrays[key + ".db"] = bi.grad
save(here / "layernorm.bin", arrays)
