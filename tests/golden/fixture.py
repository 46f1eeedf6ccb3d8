"""Writes golden fixtures for the Check suites.

Format (little endian): b"TGFX", u32 version (1), u32 count, then per array:
u32 name length, name bytes (utf-8), u32 ndim, ndim x i64 dims, float64 data (C order).
Read by tests/testutil.c (tg_fixture_load).
"""
import struct

import torch


def save(path, arrays):
    """arrays: dict name -> tensor (any dtype; written as float64)."""
    with open(path, "wb") as f:
        f.write(b"TGFX")
        f.write(struct.pack("<II", 1, len(arrays)))
        for name, t in arrays.items():
            t = torch.as_tensor(t).detach().to(torch.float64).contiguous()
            b = name.encode()
            f.write(struct.pack("<I", len(b)))
            f.write(b)
            f.write(struct.pack("<I", t.dim()))
            for d in t.shape:
                f.write(struct.pack("<q", d))
            f.write(t.numpy().astype("<f8").tobytes())


def f32(t):
    """Round a tensor to float32-representable values, kept as float64 (inputs that the C
    side can hold exactly)."""
    return t.to(torch.float32).to(torch.float64)
