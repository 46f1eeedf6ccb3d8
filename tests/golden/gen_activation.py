"""Golden values for ops/activation.c: relu and relu6 forward and input gradient."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(0)
x = f32(torch.randn(2, 3, 5, 7) * 4)
x.view(-1)[:4] = torch.tensor([0.0, 6.0, -0.0, 3.0])  # the kinks: gradient 0 at 0 and 6
dout = f32(torch.randn(2, 3, 5, 7))
arrays = {"x": x, "dout": dout}
for name, fn in (("relu", torch.relu), ("relu6", torch.nn.functional.relu6)):
    xi = x.clone().requires_grad_(True)
    y = fn(xi)
    y.backward(dout)
    arrays[name + ".y"] = y
    arrays[name + ".dx"] = xi.grad
save(here / "activation.bin", arrays)
