/*
 * ops/nll.h — CPU kernels of ops/nll.c (NLL on log-probabilities, BCE with logits).
 */
#ifndef TG_OPS_NLL_H
#define TG_OPS_NLL_H

#include <stdint.h>

/* loss[0] = -(1 / count) sum over positions (n, p) with target[n inner + p] != -100 of
 * log_probs[(n C + target) inner + p]; log_probs (N, C, inner), target (N, inner) in
 * [0, C) or -100. count: the number of such positions (0 gives NaN, as PyTorch). */
void nll_forward_cpu(float *loss, const float *log_probs, const int32_t *target, int64_t N,
                     int64_t C, int64_t inner, int64_t count);
/* dlog_probs[(n C + t) inner + p] -= scale at every non-ignored position (scale =
 * dL / count). */
void nll_backward_cpu(float *dlog_probs, const int32_t *target, float scale, int64_t N,
                      int64_t C, int64_t inner);

/* Doubles of the `partial` workspace bce_forward_cpu needs. */
int64_t bce_partials(int64_t n);
/* loss[0] = mean over n of max(x, 0) - x t + log(1 + exp(-|x|)); x, t (n) read. */
void bce_forward_cpu(float *loss, double *partial, const float *x, const float *t, int64_t n);
/* dx += (sigmoid(x) - t) scale, dt -= x scale (scale = dL / n); either may be NULL. */
void bce_backward_cpu(float *dx, float *dt, const float *x, const float *t, float scale,
                      int64_t n);

#endif
