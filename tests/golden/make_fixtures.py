#!/usr/bin/python3
"""Regenerates every golden fixture: runs each tests/golden/gen_*.py in turn.

Needs Debian's python3-torch (run with /usr/bin/python3). The tests themselves never need
Python: the .bin files this writes are committed.
"""
import pathlib
import runpy
import sys

import torch

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
torch.set_default_dtype(torch.float64)
for script in sorted(here.glob("gen_*.py")):
    print(f"{script.name} (torch {torch.__version__})")
    runpy.run_path(str(script), run_name="__main__")
