"""Golden values for ops/loss.c: F.cross_entropy on (N, C) and per-pixel (N, C, H, W)
logits (plus large logits, where a softmax that does not subtract the max overflows), and
F.mse_loss with a target that requires grad too. Each loss is seeded with dloss != 1 so the
scaling by the incoming gradient is checked."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.set_default_dtype(torch.float64)
torch.manual_seed(1)
arrays = {}

# (name, logits shape, scale, offset)
for name, shape, scale, offset in (("ce2d", (5, 7), 2.0, 0.0),
                                   ("ce4d", (2, 3, 4, 5), 2.0, 0.0),
                                   ("ce4d_b1", (1, 5, 3, 7), 2.0, 0.0),
                                   ("ce_big", (4, 6), 40.0, 1000.0)):
    logits = torch.randn(*shape) * scale + offset
    if offset:
        logits[:, 0] = offset - 150  # exp(x - x_0) overflows: only subtracting the max works
    logits = f32(logits).requires_grad_(True)
    target_shape = (shape[0],) + tuple(shape[2:])
    target = torch.randint(0, shape[1], target_shape)
    dloss = f32(torch.tensor(0.7))
    loss = F.cross_entropy(logits, target)
    loss.backward(dloss)
    arrays.update({f"{name}.logits": logits, f"{name}.target": target,
                   f"{name}.dloss": dloss, f"{name}.loss": loss,
                   f"{name}.dlogits": logits.grad})

pred = f32(torch.randn(2, 3, 4)).requires_grad_(True)
target = f32(torch.randn(2, 3, 4)).requires_grad_(True)
dloss = f32(torch.tensor(1.3))
loss = F.mse_loss(pred, target)
loss.backward(dloss)
arrays.update({"mse.pred": pred, "mse.target": target, "mse.dloss": dloss, "mse.loss": loss,
               "mse.dpred": pred.grad, "mse.dtarget": target.grad})
save(here / "loss.bin", arrays)
