"""The safetensors format with the standard library and torch alone (the `safetensors`
package is not in Debian): an 8-byte little-endian header length, a JSON header of
name -> {dtype, shape, data_offsets}, then the raw little-endian data.

Used by gen_safetensors.py and pytorch_parity.py. Also a small library model of the
MNIST CNN that tapegrad's models/cnn.c builds, with the same parameter names.
"""
import gzip
import json
import pathlib
import struct
import sys

import numpy as np
import torch

assert sys.byteorder == "little", "these helpers write the host's bytes as little-endian"

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.float64: "F64", torch.int64: "I64"}
BY_NAME = {v: k for k, v in DTYPES.items()}
# Same-size integer views: numpy has no bfloat16, so 2-byte floats travel as int16.
RAW = {torch.float16: torch.int16, torch.bfloat16: torch.int16}


def write(path, tensors, metadata=None):
    """tensors: dict name -> tensor, written in this order with consecutive offsets."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.view(RAW[t.dtype]) if t.dtype in RAW else t
        blob = raw.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read(path):
    """-> (dict name -> tensor, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = BY_NAME[info["dtype"]]
        raw = torch.frombuffer(bytearray(body[begin:end]), dtype=RAW.get(dtype, dtype))
        out[name] = (raw.view(dtype) if dtype in RAW else raw).reshape(info["shape"])
    return out, metadata


class MnistCNN(torch.nn.Module):
    """tapegrad's models/cnn.c: conv 3x3 pad 1 + ReLU + maxpool 2, twice, flatten,
    linear + ReLU, linear. Parameter names and layouts match tapegrad's."""

    def __init__(self, c1=16, c2=32, hidden=128, classes=10, channels=1, size=28):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, c1, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = torch.nn.Linear(c2 * (size // 4) ** 2, hidden)
        self.fc2 = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def load_idx(path):
    """An IDX file (raw or .gz) -> numpy uint8 array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(directory, train):
    """(images (N, 1, 28, 28) float32, labels (N,) int64), normalised exactly as
    tapegrad's tg_mnist_load does in float32: (p * (1/255) - 0.1307) * (1/0.3081)."""
    prefix = "train" if train else "t10k"

    def path(kind):  # raw or gzipped, as tg_mnist_load accepts
        raw = pathlib.Path(directory) / f"{prefix}-{kind}"
        return raw if raw.exists() else raw.with_name(raw.name + ".gz")

    images = load_idx(path("images-idx3-ubyte"))
    labels = load_idx(path("labels-idx1-ubyte"))
    f = np.float32
    table = (np.arange(256, dtype=f) * (f(1) / f(255)) - f(0.1307)) * (f(1) / f(0.3081))
    x = torch.from_numpy(table[images].astype(f)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))
