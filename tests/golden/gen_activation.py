"""Golden values for ops/activation.c: relu and relu6 forward and input gradient, NaN and
+-inf included."""
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

# NaN propagation (issue 10): relu(NaN) = relu6(NaN) = NaN, and the gradient at NaN is dy
# (PyTorch's threshold_backward / hardtanh_backward zero only where x <= 0 or x >= 6);
# relu passes dy at +inf, relu6 does not; -0.0 stays -0.0.
# One caveat, checked on torch 1.13: relu6's CPU backward has a vectorised main loop that
# tests (x > 0) & (x < 6) and so gives 0 at NaN (16 floats at a time), while its scalar
# tail, its CUDA kernel and its formula give dy. tapegrad follows the formula (dy, on both
# devices), so the reference here is computed one element at a time (the scalar path).
nan, inf = float("nan"), float("inf")
xn = torch.tensor([nan, -1.0, 0.0, -0.0, 2.5, 6.0, 7.0, inf, -inf, nan, 5.5, -3.0])
doutn = f32(torch.randn(xn.shape))
arrays.update({"xn": xn, "doutn": doutn})
for name, fn in (("relu", torch.relu), ("relu6", torch.nn.functional.relu6)):
    ys, dxs = [], []
    for i in range(xn.numel()):
        xi = xn[i:i + 1].clone().requires_grad_(True)
        y = fn(xi)
        y.backward(doutn[i:i + 1])
        ys.append(y.detach())
        dxs.append(xi.grad)
    arrays[name + "_nan.y"] = torch.cat(ys)
    arrays[name + "_nan.dx"] = torch.cat(dxs)
save(here / "activation.bin", arrays)
