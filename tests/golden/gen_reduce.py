"""Golden values for ops/reduce.c: sum, mean, max, var along a dim (positive and negative
dims, keepdim both ways, biased and unbiased var) and over everything, forward and dx.
Ties: torch.max(x, dim) sends the gradient to the first arg-max; torch.max(x) (over all)
shares it evenly between the tied maxima. The "ties" input holds exact ties."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(14)
arrays = {}
x = f32(torch.randn(3, 4, 5))
ties = torch.tensor([[1., 3., 3., 0.], [2., 2., 2., 2.], [-1., 5., 0., 5.]])
arrays["x"] = x
arrays["ties"] = ties


def record(name, inp, fn):
    xi = inp.clone().requires_grad_(True)
    out = fn(xi)
    dout = f32(torch.randn(tuple(out.shape)))
    out.backward(dout)
    arrays[f"{name}.out"] = out
    arrays[f"{name}.dout"] = dout
    arrays[f"{name}.dx"] = xi.grad


for dim in (0, 1, -1):
    for keep in (0, 1):
        tag = f"d{dim}.k{keep}"
        record(f"sum.{tag}", x, lambda t: t.sum(dim, keepdim=bool(keep)))
        record(f"mean.{tag}", x, lambda t: t.mean(dim, keepdim=bool(keep)))
        record(f"max.{tag}", x, lambda t: t.max(dim, keepdim=bool(keep))[0])
        record(f"var.{tag}", x, lambda t: t.var(dim, unbiased=True, keepdim=bool(keep)))
        record(f"varb.{tag}", x, lambda t: t.var(dim, unbiased=False, keepdim=bool(keep)))
record("sum_all", x, lambda t: t.sum())
record("mean_all", x, lambda t: t.mean())
record("max_all", x, lambda t: t.max())
record("ties.max.d1", ties, lambda t: t.max(1)[0])
record("ties.max.d0", ties, lambda t: t.max(0)[0])
record("ties.max_all", ties, lambda t: t.max())
save(here / "reduce.bin", arrays)
