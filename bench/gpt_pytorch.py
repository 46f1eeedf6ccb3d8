#!/usr/bin/python3
"""bench/gpt_pytorch.py — the PyTorch peer of `tapegrad train words` (models/gpt.c).

The same architecture (token + position embedding, pre-layernorm blocks with causal
multi-head self-attention and a tanh-GELU MLP, final layernorm, linear head), the same
initial weights (read from the safetensors file `tapegrad train words --init-out` wrote),
the same data (the word list, the FNV-1a split, the ".w1.w2." stream, windows drawn by
tapegrad's xoshiro256** generator with the same seed) and the same optimisation (AdamW
betas (0.9, 0.99), eps 1e-8, decoupled weight decay on every parameter, cosine schedule
with linear warm-up, gradient clipping at 1.0). With --dropout 0 both sides compute the
same function, so their loss curves agree to float32 rounding; step times come from the
same machine in the same run (bench/gpt_compare.sh).

usage: gpt_pytorch.py --init FILE [--words PATH | --builtin] [--steps N] [--batch N] ...
"""
import argparse
import json
import math
import re
import struct
import sys
import time

import torch
import torch.nn.functional as F

MASK64 = (1 << 64) - 1


class Rng:
    """tapegrad's tg_rng: xoshiro256** seeded through splitmix64 (core/rng.c)."""

    def __init__(self, seed):
        x = seed & MASK64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        if n <= 1:
            return 0
        limit = MASK64 - (MASK64 % n)
        while True:
            r = self.next()
            if r < limit:
                return r % n


def fnv1a(word):
    h = 2166136261
    for c in word.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def load_words(path, builtin_source):
    if path is None:  # the built-in sample, read from tapegrad's own source file
        text = " ".join(re.findall(r'"([a-z ]*)"', open(builtin_source).read()))
    else:
        text = open(path, encoding="utf-8", errors="replace").read()
    streams = ([0], [0])  # train, held out: ".w1.w2. ... .wn."
    for w in text.split():
        if not (1 <= len(w) <= 32) or not all("a" <= c <= "z" for c in w):
            continue
        s = streams[1 if fnv1a(w) % 10 == 0 else 0]
        s.extend(ord(c) - ord("a") + 1 for c in w)
        s.append(0)
    return [torch.tensor(s, dtype=torch.long) for s in streams]


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(
            info["shape"]).clone()
    return out


class Block(torch.nn.Module):
    def __init__(self, C, H, p):
        super().__init__()
        self.H, self.p = H, p
        self.ln_1 = torch.nn.LayerNorm(C)
        self.attn = torch.nn.ModuleDict({k: torch.nn.Linear(C, C) for k in ("q", "k", "v", "proj")})
        self.ln_2 = torch.nn.LayerNorm(C)
        self.mlp = torch.nn.ModuleDict({"fc": torch.nn.Linear(C, 4 * C), "proj": torch.nn.Linear(4 * C, C)})

    def attention(self, h):
        B, T, C = h.shape
        H, D = self.H, C // self.H
        q, k, v = (self.attn[n](h).view(B, T, H, D).permute(0, 2, 1, 3) for n in ("q", "k", "v"))
        att = q @ k.transpose(2, 3) * (1.0 / math.sqrt(D))
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = F.dropout(F.softmax(att.masked_fill(mask, float("-inf")), dim=-1), self.p, self.training)
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        return F.dropout(self.attn["proj"](y), self.p, self.training)

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        h = self.mlp["proj"](F.gelu(self.mlp["fc"](self.ln_2(x)), approximate="tanh"))
        return x + F.dropout(h, self.p, self.training)


class GPT(torch.nn.Module):
    def __init__(self, V, T, L, H, C, p):
        super().__init__()
        self.p = p
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(T, C)
        self.h = torch.nn.ModuleList(Block(C, H, p) for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)
        self.lm_head = torch.nn.Linear(C, V, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = F.dropout(self.wte(idx) + self.wpe(torch.arange(T)), self.p, self.training)
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))


def lr_at(step, base, lo, warmup, total):
    """tg_lr_cosine (optim/schedule.c)."""
    if step < warmup:
        return base * (step + 1) / warmup
    if step >= total:
        return lo
    t = (step - warmup) / (total - warmup)
    return lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True, help="safetensors from tapegrad --init-out")
    ap.add_argument("--words", default="/usr/share/dict/words")
    ap.add_argument("--builtin", action="store_true")
    ap.add_argument("--builtin-source", default="io/words_builtin.c")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=-1)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--step-log", help="CSV: step, loss, lr, ms")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    train, held = load_words(None if a.builtin else a.words, a.builtin_source)
    model = GPT(27, a.block, a.layers, a.heads, a.embd, a.dropout)
    state = read_safetensors(a.init)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"gpt_pytorch: weights do not match: missing {missing}, unexpected {unexpected}")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), eps=1e-8,
                            weight_decay=a.weight_decay)
    warmup = a.warmup if a.warmup >= 0 else a.steps // 10
    rng = Rng(a.seed ^ 0x5EED)
    log = open(a.step_log, "w") if a.step_log else None
    if log:
        log.write("step,loss,lr,ms\n")
    n = len(train)
    model.train()
    times = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        lr = lr_at(step, a.lr, a.lr / 10, warmup, a.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = [rng.below(n - a.block) for _ in range(a.batch)]
        x = torch.stack([train[p : p + a.block] for p in starts])
        y = torch.stack([train[p + 1 : p + a.block + 1] for p in starts])
        loss = F.cross_entropy(model(x).view(-1, 27), y.view(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ms = 1e3 * (time.perf_counter() - t0)
        times.append(ms)
        if log:
            log.write(f"{step + 1},{loss.item():.7g},{lr:.7g},{ms:.3f}\n")
    times.sort()
    print(f"gpt_pytorch: {a.steps} steps, median {times[len(times) // 2]:.3f} ms/step, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
