#!/usr/bin/python3
"""The safetensors round trip against PyTorch, end to end through the `tapegrad` command
(issue 16's "done means"), and the fixtures tests/test_safetensors.c checks it with.

    /usr/bin/python3 tests/golden/pytorch_parity.py build/tools/tapegrad [--data DIR]

1. tapegrad -> PyTorch: `tapegrad train mnist --model cnn` (3 epochs, the defaults),
   `tapegrad export` of its checkpoint, loaded into the equivalent torch.nn.Module
   (st_format.MnistCNN) with load_state_dict(strict=True); PyTorch's held-out accuracy and
   loss must equal what tapegrad reported. Writes st_cnn_trained.safetensors (the export)
   and st_cnn_trained.bin (PyTorch's held-out logits, accuracy and loss): the Check test
   loads the same file into tapegrad, compares every logit (1e-5) and saves it back byte
   for byte.
2. PyTorch -> tapegrad: the CNN as PyTorch initialises it (torch.manual_seed(0)) written
   as safetensors, then `tapegrad train mnist --init-from` with one batch holding the whole
   training set (the mean loss over a set does not depend on the shuffle): the first
   logged loss must equal PyTorch's cross-entropy over the same examples.
Needs Debian's python3-torch; writes fixtures only with the default --data (the committed
mini set).
"""
import argparse
import csv
import json
import pathlib
import subprocess
import sys
import tempfile

import torch

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
from fixture import save  # noqa: E402
import st_format  # noqa: E402

mini = here.parent.parent / "examples" / "data" / "mnist-mini"
ap = argparse.ArgumentParser()
ap.add_argument("tapegrad")
ap.add_argument("--data", default=str(mini))
ap.add_argument("--epochs", type=int, default=3)
args = ap.parse_args()
write_fixtures = pathlib.Path(args.data).resolve() == mini.resolve()
torch.set_num_threads(1)


def tapegrad(*argv):
    cmd = [args.tapegrad, *map(str, argv)]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    # ------------------------------------------------ 1. tapegrad -> PyTorch
    out = tapegrad("train", "mnist", "--model", "cnn", "--epochs", args.epochs, "--data",
                   args.data, "--checkpoint", tmp / "cnn.ckpt", "--json", "--quiet")
    last = json.loads(out.strip().splitlines()[-1])
    export = (here if write_fixtures else tmp) / "st_cnn_trained.safetensors"
    print(tapegrad("export", tmp / "cnn.ckpt", "-o", export), end="")
    tensors, meta = st_format.read(export)
    net = st_format.MnistCNN()
    net.load_state_dict(tensors, strict=True)
    x, y = st_format.mnist(args.data, train=False)
    with torch.no_grad():
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
    acc = (logits.argmax(1) == y).double().mean().item()
    print(f"model {meta.get('model')}: held-out accuracy tapegrad {last['test_acc']:.6f} "
          f"pytorch {acc:.6f}; loss tapegrad {last['test_loss']:.6f} pytorch "
          f"{loss.item():.6f} (|diff| {abs(loss.item() - last['test_loss']):.2e})")
    ok1 = abs(acc - last["test_acc"]) < 1e-9 and abs(loss.item() - last["test_loss"]) < 1e-5
    if write_fixtures:
        save(here / "st_cnn_trained.bin", {"logits": logits, "accuracy": torch.tensor(acc),
                                           "loss": loss})
    # ------------------------------------------------ 2. PyTorch -> tapegrad
    torch.manual_seed(0)
    net = st_format.MnistCNN()
    st_format.write(tmp / "torch_init.safetensors", net.state_dict(), {"format": "pt"})
    x, y = st_format.mnist(args.data, train=True)
    with torch.no_grad():
        first = torch.nn.functional.cross_entropy(net(x), y).item()
    tapegrad("train", "mnist", "--model", "cnn", "--epochs", 1, "--batch", len(y), "--data",
             args.data, "--init-from", tmp / "torch_init.safetensors", "--log",
             tmp / "log.csv", "--quiet")
    with open(tmp / "log.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["kind"] == "step")
    got = float(row["train_loss"])
    print(f"PyTorch-initialised CNN, first loss over {len(y)} training images: tapegrad "
          f"{got:.6f} pytorch {first:.6f} (|diff| {abs(got - first):.2e})")
    ok2 = abs(got - first) < 1e-5
print("parity:", "OK" if ok1 and ok2 else "FAILED")
sys.exit(0 if ok1 and ok2 else 1)
