"""Golden values for ops/matmul.c: torch.matmul forward and the gradients of both operands,
for 2-D and batched operands, with batch dims broadcast from either side (the gradient of
a broadcast operand is summed over the broadcast dims), and size-1 matrix dims."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(12)
CASES = [  # name, a shape, b shape
    ("plain", (3, 5), (5, 4)),
    ("batched", (2, 3, 4, 5), (2, 3, 5, 6)),
    ("b2d", (2, 3, 4, 5), (5, 6)),              # b without batch dims (folded)
    ("a2d", (4, 5), (3, 5, 2)),                 # a without batch dims
    ("mixed", (2, 1, 4, 5), (1, 3, 5, 6)),      # both broadcast, different dims
    ("rank34", (3, 4, 5), (2, 1, 5, 2)),        # 3-D with 4-D
    ("unit", (2, 1, 1), (1, 1, 3)),             # M = K = 1, batch broadcast
    ("bcast_b", (2, 3, 4, 5), (2, 1, 5, 3)),    # b broadcast along dim 1 only
]
arrays = {}
for name, sa, sb in CASES:
    a = f32(torch.randn(*sa)).requires_grad_(True)
    b = f32(torch.randn(*sb)).requires_grad_(True)
    out = torch.matmul(a, b)
    dout = f32(torch.randn(tuple(out.shape)))
    out.backward(dout)
    arrays.update({f"{name}.a": a, f"{name}.b": b, f"{name}.dout": dout, f"{name}.out": out,
                   f"{name}.da": a.grad, f"{name}.db": b.grad})
save(here / "matmul.bin", arrays)
