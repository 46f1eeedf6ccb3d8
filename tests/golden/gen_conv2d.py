"""Golden values for ops/conv2d.c: F.conv2d / F.conv1d forward and the gradients of x,
weight and bias, one config per kernel path (dense, strided, dilated, grouped, depthwise,
depthwise with a channel multiplier, pointwise, grouped 1x1) and two conv1d configs."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
arrays = {}

# name, conv1d?, N, C_in, C_out, spatial (H, W) or (L,), kernel, stride, pad, dil, groups, bias
CONFIGS = (
    ("dense3x3", False, 2, 3, 5, (7, 6), (3, 3), 1, 1, 1, 1, True),
    ("stride2", False, 2, 4, 3, (9, 8), (3, 3), 2, 1, 1, 1, True),
    ("dilation2", False, 1, 3, 4, (9, 7), (3, 3), 1, 2, 2, 1, True),
    ("groups2", False, 2, 4, 6, (6, 7), (3, 3), 1, 1, 1, 2, True),
    ("depthwise", False, 2, 5, 5, (7, 8), (3, 3), 1, 1, 1, 5, True),
    ("depthwise_s2_m2", False, 1, 3, 6, (8, 7), (3, 3), 2, 1, 1, 3, False),
    ("pointwise", False, 3, 6, 4, (5, 7), (1, 1), 1, 0, 1, 1, True),
    ("pointwise_g2", False, 2, 4, 6, (3, 5), (1, 1), 1, 0, 1, 2, False),
    ("rect_nobias", False, 2, 3, 4, (6, 9), (2, 5), (1, 2), (0, 2), (2, 1), 1, False),
    ("conv1d", True, 2, 3, 4, (11,), (3,), 1, 1, 1, 1, True),
    ("conv1d_s2d2g3", True, 1, 6, 3, (13,), (3,), 2, 1, 2, 3, True),
)

for (name, is1d, n, cin, cout, spatial, kernel, stride, pad, dil, groups,
     has_bias) in CONFIGS:
    x = f32(torch.randn(n, cin, *spatial)).requires_grad_(True)
    w = f32(torch.randn(cout, cin // groups, *kernel) * 0.5).requires_grad_(True)
    b = f32(torch.randn(cout)).requires_grad_(True) if has_bias else None
    conv = F.conv1d if is1d else F.conv2d
    y = conv(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
    dout = f32(torch.randn(*y.shape))
    y.backward(dout)
    arrays.update({f"{name}.x": x, f"{name}.weight": w, f"{name}.dout": dout,
                   f"{name}.y": y, f"{name}.dx": x.grad, f"{name}.dweight": w.grad})
    if has_bias:
        arrays.update({f"{name}.bias": b, f"{name}.dbias": b.grad})
save(here / "conv2d.bin", arrays)
