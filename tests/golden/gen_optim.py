"""Golden values for optim/: SGD (plain, momentum + dampening, nesterov, weight decay),
Adam (defaults, chosen options, L2 weight decay) and AdamW (defaults too), and the
values that are legal in torch but were once taken as "use the default": beta1 = 0
(Adam and AdamW), eps = 0, lr = 0 (Adam and SGD). 10 steps each.

A store of two parameters, w (3, 4) and b (5), with fixed initial values. Each step the
loss is L = sum(c1 * p^2) + sum(c2 * p) over both parameters (per-element constants), so
the gradient dL/dp = c1 * (2 * p) + c2 depends on the parameters and the trajectory
exercises every state update. torch runs in float32, exactly as the C side does, so the
rounding matches; values are stored as float64. Hyperparameters are float32-rounded
(the SGD options are floats), except for "adam_defaults" and "adamw_defaults", which use
torch's own double defaults (tg_adam_opts_default / tg_adamw_opts_default fill the same
doubles).

Arrays: w0, b0, cw1, cw2, cb1, cb2; per configuration <name>.hyper and <name>.w (10, 3, 4),
<name>.b (10, 5): the parameters after every step.
"""
import pathlib

import torch

from fixture import save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(0)
STEPS = 10


def r32(v):
    """A Python float holding the float32 rounding of v."""
    return float(torch.tensor(v, dtype=torch.float32))


w0 = torch.randn(3, 4)
b0 = torch.randn(5)
cw1 = torch.rand(3, 4) * 0.9 + 0.1
cw2 = torch.randn(3, 4)
cb1 = torch.rand(5) * 0.9 + 0.1
cb2 = torch.randn(5)
arrays = {"w0": w0, "b0": b0, "cw1": cw1, "cw2": cw2, "cb1": cb1, "cb2": cb2}

# name -> (constructor, kwargs); hyper order: SGD lr, momentum, dampening, weight_decay,
# nesterov; Adam lr, beta1, beta2, eps, weight_decay.
configs = {
    "sgd_plain": ("sgd", dict(lr=0.1)),
    "sgd_momentum": ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.25)),
    "sgd_nesterov": ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    "sgd_weight_decay": ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.1, weight_decay=0.05)),
    "sgd_weight_decay_plain": ("sgd", dict(lr=0.2, weight_decay=0.3)),
    "adam_defaults": ("adam", dict()),
    "adam": ("adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
    "adam_weight_decay": ("adam", dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "adamw": ("adamw", dict(lr=0.05, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.1)),
    # Issue 10: values where "0 meant the default" before; every one is legal in torch.
    "adamw_defaults": ("adamw", dict()),
    "adam_beta1_0": ("adam", dict(lr=0.05, betas=(0.0, 0.99), eps=1e-6)),
    "adamw_beta1_0": ("adamw", dict(lr=0.05, betas=(0.0, 0.999), eps=1e-8, weight_decay=0.1)),
    "adam_eps_0": ("adam", dict(lr=0.05, betas=(0.9, 0.999), eps=0.0)),
    "adam_lr_0": ("adam", dict(lr=0.0)),
    "sgd_lr_0": ("sgd", dict(lr=0.0, momentum=0.9)),
}

for name, (kind, kw) in configs.items():
    if not name.endswith("_defaults"):
        kw = {k: (tuple(r32(x) for x in v) if isinstance(v, tuple)
                  else v if isinstance(v, bool) else r32(v)) for k, v in kw.items()}
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    if kind == "sgd":
        opt = torch.optim.SGD([w, b], foreach=False, **kw)
        hyper = [kw["lr"], kw.get("momentum", 0.0), kw.get("dampening", 0.0),
                 kw.get("weight_decay", 0.0), float(kw.get("nesterov", False))]
    else:
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW

        opt = cls([w, b], foreach=False, **kw)
        g = opt.param_groups[0]
        hyper = [g["lr"], g["betas"][0], g["betas"][1], g["eps"], g["weight_decay"]]
    ws, bs = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = (cw1 * w ** 2).sum() + (cw2 * w).sum() + (cb1 * b ** 2).sum() + (cb2 * b).sum()
        loss.backward()
        # The C test computes the gradient as c1 * (2 * p) + c2: check that is autograd's.
        assert torch.equal(w.grad, cw1 * (2 * w.detach()) + cw2)
        assert torch.equal(b.grad, cb1 * (2 * b.detach()) + cb2)
        opt.step()
        ws.append(w.detach().clone())
        bs.append(b.detach().clone())
    arrays[name + ".hyper"] = torch.tensor(hyper, dtype=torch.float64)
    arrays[name + ".w"] = torch.stack(ws)
    arrays[name + ".b"] = torch.stack(bs)

save(here / "optim.bin", arrays)
