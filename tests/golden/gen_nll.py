"""Golden values for ops/nll.c: nll_loss on log-probabilities ((N, C) with ignored targets
and (N, C, L)), and binary_cross_entropy_with_logits with gradients to logits and
targets (large logits of both signs included)."""
import pathlib

import torch
import torch.nn.functional as F

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(15)
arrays = {}
lp2 = f32(torch.log_softmax(torch.randn(6, 5) * 2, 1))
t2 = torch.tensor([4, -100, 0, 2, 2, -100])
lp3 = f32(torch.log_softmax(torch.randn(2, 4, 7), 1))
t3 = torch.randint(0, 4, (2, 7))
t3[1, 3] = -100
for key, lp, t in (("nll2", lp2, t2), ("nll3", lp3, t3)):
    li = lp.clone().requires_grad_(True)
    loss = F.nll_loss(li, t)
    loss.backward(torch.tensor(1.5))  # an incoming dL other than 1
    arrays.update({key + ".lp": lp, key + ".t": t, key + ".loss": loss, key + ".dlp": li.grad})
x = f32(torch.randn(4, 5) * 3)
x[0, :3] = torch.tensor([40.0, -40.0, 0.0])
t = f32(torch.rand(4, 5))
xi = x.clone().requires_grad_(True)
ti = t.clone().requires_grad_(True)
loss = F.binary_cross_entropy_with_logits(xi, ti)
loss.backward(torch.tensor(0.75))
arrays.update({"bce.x": x, "bce.t": t, "bce.loss": loss, "bce.dx": xi.grad, "bce.dt": ti.grad})
save(here / "nll.bin", arrays)
