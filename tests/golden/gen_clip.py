"""Golden values for optim/clip.c and optim/schedule.c: clip_grad_norm_ over three
parameters (clipping and not clipping), StepLR and CosineAnnealingLR rates."""
import math
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(16)
shapes = [(37,), (5, 13), (3, 2, 3, 3)]
grads = [f32(torch.randn(s)) for s in shapes]
arrays = {f"g{i}": g for i, g in enumerate(grads)}
for key, max_norm in (("clip", 2.0), ("noclip", 1000.0)):
    ps = [torch.zeros(s, dtype=torch.float32, requires_grad=True) for s in shapes]
    for p, g in zip(ps, grads):
        p.grad = g.to(torch.float32).clone()
    norm = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    arrays[key + ".norm"] = norm
    for i, p in enumerate(ps):
        arrays[f"{key}.g{i}"] = p.grad


def rates(make, steps):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(out, dtype=torch.float64)


arrays["steplr"] = rates(lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.3), 30)
arrays["cosine"] = rates(
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01), 21)
# Linear warm-up (5 steps) then cosine to 0.01 at step 25, as LambdaLR.
warm, total, lo = 5, 25, 0.01


def lam(s):
    if s < warm:
        return (s + 1) / warm
    if s >= total:
        return lo / 0.5
    t = (s - warm) / (total - warm)
    return (lo + (0.5 - lo) * 0.5 * (1 + math.cos(math.pi * t))) / 0.5


arrays["warmcos"] = rates(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lam), 30)
save(here / "clip.bin", arrays)
