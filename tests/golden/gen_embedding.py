"""Golden values for ops/embedding.c: nn.functional.embedding with repeated indices,
(B, T) index shape; output and the weight gradient (scatter-add)."""
import pathlib

import torch

from fixture import f32, save

here = pathlib.Path(__file__).resolve().parent
torch.manual_seed(14)
w = f32(torch.randn(11, 6))
idx = torch.tensor([[3, 0, 3, 10], [7, 3, 0, 1], [10, 10, 2, 3]])
dout = f32(torch.randn(3, 4, 6))
wi = w.clone().requires_grad_(True)
y = torch.nn.functional.embedding(idx, wi)
y.backward(dout)
save(here / "embedding.bin", {"w": w, "idx": idx, "dout": dout, "y": y, "dw": wi.grad})
