"""Fixtures for io/safetensors.c (tests/test_safetensors.c), written by the standard
library + torch (st_format.py):

st_dtypes.safetensors   one tensor per dtype tapegrad reads (F32, F16, BF16, F64), with
                        zeros of both signs, subnormals, infinities, NaN, values F64 must
                        round; a scalar; every name under "model." and a BatchNorm
                        num_batches_tracked (I64) counter, as a wrapped state_dict has.
st_dtypes.bin           the values each should load as (torch's .float()), as float64.
st_torch_cnn.safetensors   a small MNIST CNN (channels 4 and 8, hidden 16) as PyTorch
                        initialises it (torch.manual_seed(0), default nn init), its plain
                        state_dict.
st_torch_cnn.bin        its logits (float32 PyTorch) on the first 16 held-out images of
                        examples/data/mnist-mini, and its cross-entropy on the first 64
                        training images: the first loss tapegrad must reproduce.
"""
import pathlib
import sys

import torch

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
from fixture import save  # noqa: E402
import st_format  # noqa: E402

mini = here.parent.parent / "examples" / "data" / "mnist-mini"
previous = torch.get_default_dtype()
torch.set_default_dtype(torch.float32)
torch.manual_seed(0)

# ---------------------------------------------------------------- every dtype
special = [0.0, -0.0, 1.0, -1.5, float("inf"), float("-inf"), float("nan")]
f16 = torch.tensor(special + [65504.0, 6.103515625e-05, 5.960464477539063e-08,
                              -3.0517578125e-05, 0.1, 3.14159],
                   dtype=torch.float32).to(torch.float16)
f16 = torch.cat([f16, (torch.randn(24 - f16.numel()) * 8).to(torch.float16)]).reshape(2, 3, 4)
bf16 = torch.tensor(special + [3.0e38, 1.0e-38, 9.2e-41, 0.1, -2.0 ** -133],
                    dtype=torch.float32).to(torch.bfloat16)
f32 = torch.cat([torch.tensor(special + [1.0e-45, 3.4028234663852886e38]),
                 torch.randn(3)]).reshape(3, 4)
f64 = torch.tensor(special + [0.1, 1.0 / 3.0, 1.0e300, -1.0e-300, 1.0e-40, 16777217.0,
                              2.0 ** -149 * 0.75, 3.4028235677973366e38, 0.7],
                   dtype=torch.float64).reshape(2, 2, 2, 2)
scalar = torch.tensor(2.5)
tensors = {"model.a_f32": f32, "model.b_f16": f16, "model.c_bf16": bf16,
           "model.d_f64": f64, "model.e_scalar": scalar,
           "model.bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64)}
st_format.write(here / "st_dtypes.safetensors", tensors, {"format": "pt"})
save(here / "st_dtypes.bin", {name[len("model."):]: t.float() for name, t in tensors.items()
                              if t.dtype != torch.int64})

# ---------------------------------------------------------------- PyTorch-initialised CNN
torch.manual_seed(0)
net = st_format.MnistCNN(c1=4, c2=8, hidden=16)
st_format.write(here / "st_torch_cnn.safetensors", net.state_dict(), {"format": "pt"})
x_test, _ = st_format.mnist(mini, train=False)
x_train, y_train = st_format.mnist(mini, train=True)
with torch.no_grad():
    logits = net(x_test[:16])
    loss = torch.nn.functional.cross_entropy(net(x_train[:64]), y_train[:64])
save(here / "st_torch_cnn.bin", {"logits": logits, "loss": loss})
print(f"  st_torch_cnn: first loss {loss.item():.7f}")
torch.set_default_dtype(previous)
