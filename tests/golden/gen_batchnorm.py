"""Golden values for ops/batchnorm.c: F.batch_norm in training and eval mode, affine and
not, with running statistics before and after, over two training steps in a row."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(0)
arrays = {}


def case(name, shape, training, affine, track, steps):
    """steps: list of (momentum, eps); each step gets fresh x and dout."""
    C = shape[1]
    if affine:
        w = f32(torch.rand(C) + 0.5)
        b = f32(torch.randn(C))
        arrays[name + ".w"] = w
        arrays[name + ".b"] = b
    if track:
        rm = f32(torch.randn(C) * 0.5)
        rv = f32(torch.rand(C) + 0.5)
        arrays[name + ".rm0"] = rm.clone()
        arrays[name + ".rv0"] = rv.clone()
    for s, (momentum, eps) in enumerate(steps):
        p = "%s.%d." % (name, s)
        x = f32(torch.randn(*shape) * 2 + torch.randn(1, C, 1, 1))
        dout = f32(torch.randn(*shape))
        xi = x.clone().requires_grad_(True)
        wi = w.clone().requires_grad_(True) if affine else None
        bi = b.clone().requires_grad_(True) if affine else None
        y = F.batch_norm(xi, rm if track else None, rv if track else None, wi, bi,
                         training=training, momentum=momentum, eps=eps)
        y.backward(dout)
        arrays[p + "x"] = x
        arrays[p + "dout"] = dout
        arrays[p + "y"] = y
        arrays[p + "dx"] = xi.grad
        if affine:
            arrays[p + "dw"] = wi.grad
            arrays[p + "db"] = bi.grad
        if track:  # F.batch_norm updated rm, rv in place (training only)
            arrays[p + "rm"] = rm.clone()
            arrays[p + "rv"] = rv.clone()


case("train", (3, 4, 5, 7), True, True, True, [(0.1, 1e-5), (0.25, 1e-3)])
case("eval", (3, 4, 5, 7), False, True, True, [(0.1, 1e-5)])
case("noaffine", (1, 3, 4, 5), True, False, True, [(0.1, 1e-5), (0.1, 1e-5)])
case("eval_noaffine", (2, 3, 3, 2), False, False, True, [(0.1, 1e-5)])
case("notrack", (2, 3, 5, 3), True, True, False, [(0.1, 1e-5)])
save(here / "batchnorm.bin", arrays)
