/*
 * ops/activation.h — CPU kernels of ops/activation.c (callable from tests/benchmarks).
 */
#ifndef TG_OPS_ACTIVATION_H
#define TG_OPS_ACTIVATION_H

#include <stdbool.h>
#include <stdint.h>

/* out[n] = clamp(inp[n], 0, cap) (cap = INFINITY for relu); NaN stays NaN. inp, out: n
 * floats; out written. */
void relu_forward_cpu(float *out, const float *inp, int64_t n, float cap);
/* dinp[n] += dout[n] except where out <= 0 or (cap finite) out >= cap: the gradient at 0
 * and at cap is 0, at NaN it is dout, as PyTorch. out: the forward output, read; dinp
 * accumulated, or written when fresh (tg_grad_fresh: the buffer is uninitialised). */
void relu_backward_cpu(float *dinp, const float *dout, const float *out, int64_t n, float cap,
                       bool fresh);

#endif
