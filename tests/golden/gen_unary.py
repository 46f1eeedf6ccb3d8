"""Golden values for ops/unary.c: every element-wise function of one tensor, forward and
input gradient, in float64 from float32-representable inputs.

Each case has its own input (its domain: log, sqrt and fractional powers need x > 0) and
the kinks on purpose: leaky_relu at exactly 0 (PyTorch: slope), clamp at exactly its
bounds (PyTorch: gradient passes), sigmoid/tanh/silu/gelu at +-30.
"""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(13)
SHAPE = (3, 4, 5)


def wide():
    x = torch.randn(SHAPE) * 3
    x.view(-1)[:4] = torch.tensor([0.0, -30.0, 30.0, 1e-3])
    return x


def positive():
    return torch.rand(SHAPE) * 4 + 0.05


# name, input, function (the C test maps each name to the tapegrad call)
CASES = [
    ("add_scalar", wide(), lambda x: x + 0.75),
    ("scale", wide(), lambda x: -1.5 * x),
    ("neg", wide(), lambda x: -x),
    ("exp", torch.randn(SHAPE) * 2, torch.exp),
    ("log", positive(), torch.log),
    ("sqrt", positive(), torch.sqrt),
    ("pow2", wide(), lambda x: torch.pow(x, 2.0)),
    ("pow3", torch.randn(SHAPE), lambda x: torch.pow(x, 3.0)),
    ("pow0.5", positive(), lambda x: torch.pow(x, 0.5)),
    ("pow-1.5", positive(), lambda x: torch.pow(x, -1.5)),
    ("pow0", wide(), lambda x: torch.pow(x, 0.0)),
    ("tanh", wide(), torch.tanh),
    ("sigmoid", wide(), torch.sigmoid),
    ("gelu", wide(), F.gelu),
    ("gelu_tanh", wide(), lambda x: F.gelu(x, approximate="tanh")),
    ("silu", wide(), F.silu),
    ("leaky_relu", wide(), lambda x: F.leaky_relu(x, 0.01)),
    ("leaky_relu0.2", wide(), lambda x: F.leaky_relu(x, 0.2)),
    ("clamp", wide(), lambda x: torch.clamp(x, -0.5, 1.0)),
]
arrays = {}
for name, x, fn in CASES:
    x = f32(x)
    if name == "clamp":
        x.view(-1)[4:6] = torch.tensor([-0.5, 1.0])  # exactly at the bounds
    dout = f32(torch.randn(SHAPE))
    xi = x.clone().requires_grad_(True)
    y = fn(xi)
    y.backward(dout)
    arrays.update({f"{name}.x": x, f"{name}.dout": dout, f"{name}.y": y,
                   f"{name}.dx": xi.grad})
save(here / "unary.bin", arrays)
