#!/usr/bin/python3
"""Fits the polynomial g of ops/unary.h's tg_normal_cdff (the erf GELU):

    erfc(z) = e^(-z^2) g(u),   u = 1 / (1 + z/2),   z in [0.5, 10]

g has degree 8; the fit is least squares on the RELATIVE error, reweighted towards the
worst points (a cheap approach to minimax). Prints the maximum relative error in double
and the coefficients, lowest degree first, as float literals (the C code evaluates them
highest first by Horner). Needs numpy (Debian: python3-numpy).
"""
import math

import numpy as np

zs = np.linspace(0.5, 10, 40000)
g = np.array([math.erfc(z) * math.exp(z * z) for z in zs])
u = 1 / (1 + 0.5 * zs)
deg = 8
A = np.vander(u, deg + 1, increasing=True) / g[:, None]
w = np.ones_like(g)
for it in range(40):
    c, *_ = np.linalg.lstsq(A * w[:, None], w, rcond=None)
    err = np.abs(A @ c - 1)
    w = w * (1 + err / err.max())
    w /= w.mean()
print("max rel (double)", np.abs(A @ c - 1).max())
print(", ".join("%.9ef" % v for v in c))
