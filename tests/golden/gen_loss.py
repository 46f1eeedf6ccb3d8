"""Golden values for ops/loss.c: F.cross_entropy on (N, C), (N, C, L) and per-pixel
(N, C, H, W) logits (plus large logits: near 1000, where a softmax that does not subtract
the max overflows, and at +-1e3 and +-1e5, where a float log-sum-exp loses the precision),
with ignore_index (the default -100, another one, every target ignored), and
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

# Large logits (issue 10): offsets of +-1e3 and +-1e5 (alternating along the batch) with a
# spread of 3, plain (N, C), per-position (N, C, L) and per-pixel (N, C, H, W), some
# targets at PyTorch's default ignore_index -100. The reference is float64 on the float32
# inputs (the true values); `{name}.loss_f32` and `.dlogits_f32` are what PyTorch's float32
# kernels give, for the record of how close float32 can get.
for name, shape, offset in (("ce_1e3", (6, 9), 1e3), ("ce_1e3_4d", (2, 5, 3, 4), 1e3),
                            ("ce_1e5", (6, 9), 1e5), ("ce_1e5_4d", (2, 5, 3, 4), 1e5),
                            ("ce_1e5_3d", (4, 7, 5), 1e5)):
    sign = torch.tensor([1.0 if n % 2 == 0 else -1.0 for n in range(shape[0])])
    sign = sign.reshape((shape[0],) + (1,) * (len(shape) - 1))
    logits = f32(torch.randn(*shape) * 3 + sign * offset).requires_grad_(True)
    target_shape = (shape[0],) + tuple(shape[2:])
    target = torch.randint(0, shape[1], target_shape)
    target.view(-1)[::4] = -100
    dloss = f32(torch.tensor(0.7))
    loss = F.cross_entropy(logits, target)
    loss.backward(dloss)
    x32 = logits.detach().to(torch.float32).requires_grad_(True)
    loss32 = F.cross_entropy(x32, target)
    loss32.backward(dloss.to(torch.float32))
    arrays.update({f"{name}.logits": logits, f"{name}.target": target,
                   f"{name}.dloss": dloss, f"{name}.loss": loss,
                   f"{name}.dlogits": logits.grad, f"{name}.loss_f32": loss32,
                   f"{name}.dlogits_f32": x32.grad})

# ignore_index: the default -100 on (N, C, L) logits, another ignore_index (2, a valid
# class) on per-pixel logits, and every target ignored (loss NaN, gradient zero).
for name, shape, ignore_index, every in (("ce_ign_3d", (3, 4, 5), -100, 3),
                                         ("ce_ign2_4d", (2, 4, 3, 3), 2, 0),
                                         ("ce_ign_all", (3, 5), -100, 1)):
    logits = f32(torch.randn(*shape) * 2).requires_grad_(True)
    target_shape = (shape[0],) + tuple(shape[2:])
    target = torch.randint(0, shape[1], target_shape)
    if every:
        target.view(-1)[::every] = ignore_index
    dloss = f32(torch.tensor(1.3))
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index)
    loss.backward(dloss)
    arrays.update({f"{name}.logits": logits, f"{name}.target": target,
                   f"{name}.ignore_index": torch.tensor(float(ignore_index)),
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
