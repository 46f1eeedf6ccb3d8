"""Golden values for ops/layout.c: transpose, permute, concat and slice (forward and the
gradient of every input), with negative dims and size-1 dims."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(13)
arrays = {}


def record(name, xs, fn):
    xs = [f32(torch.randn(*s)).requires_grad_(True) for s in xs]
    out = fn(*xs)
    dout = f32(torch.randn(tuple(out.shape)))
    out.backward(dout)
    for i, x in enumerate(xs):
        arrays[f"{name}.x{i}"] = x
        arrays[f"{name}.dx{i}"] = x.grad
    arrays[f"{name}.dout"] = dout
    arrays[f"{name}.out"] = out


# transpose: name, shape, dim0, dim1
record("t2d", [(3, 7)], lambda x: x.transpose(0, 1))
record("t_last2", [(2, 3, 4, 5)], lambda x: x.transpose(-1, -2))
record("t_13", [(2, 3, 4, 5)], lambda x: x.transpose(1, 3))
record("t_same", [(3, 1, 4)], lambda x: x.transpose(1, 1))
record("t_unit", [(1, 6, 1)], lambda x: x.transpose(0, 2))
# permute
record("p_0213", [(2, 3, 4, 5)], lambda x: x.permute(0, 2, 1, 3))
record("p_3102", [(2, 3, 4, 5)], lambda x: x.permute(3, 1, 0, 2))
record("p_201", [(3, 4, 5)], lambda x: x.permute(2, 0, 1))
record("p_neg", [(3, 4, 5)], lambda x: x.permute(-1, -3, -2))
# concat
record("c_dim1", [(2, 3, 4), (2, 1, 4), (2, 2, 4)], lambda a, b, c: torch.cat([a, b, c], 1))
record("c_last", [(2, 3), (2, 5)], lambda a, b: torch.cat([a, b], -1))
record("c_dim0", [(1, 3, 2, 2), (2, 3, 2, 2), (1, 3, 2, 2), (3, 3, 2, 2)],
       lambda a, b, c, d: torch.cat([a, b, c, d], 0))
record("c_one", [(4, 2)], lambda a: torch.cat([a], 0))
# slice
record("s_mid", [(3, 7, 5)], lambda x: x[:, 2:5])
record("s_neg", [(3, 7, 5)], lambda x: x[..., -3:100])
record("s_first", [(6, 4)], lambda x: x[0:1])
record("s_negend", [(2, 3, 8)], lambda x: x[:, :, 1:-2])
save(here / "layout.bin", arrays)
