/*
 * ops/loss.h — CPU kernels of ops/loss.c (callable from tests/benchmarks).
 *
 * Cross entropy sees logits as (N, C, inner): inner = H*W for per-pixel logits
 * (N, C, H, W), L for (N, C, L) and 1 for (N, C). Class c of position p in image n is at
 * logits[(n C + c) inner + p]; targets, maxima and log-sums are laid out (N, inner).
 */
#ifndef TG_OPS_LOSS_H
#define TG_OPS_LOSS_H

#include <stdbool.h>
#include <stdint.h>

/* Entries of the `partial` workspace cross_entropy_forward_cpu needs. */
int64_t cross_entropy_partials(int64_t N, int64_t inner);

/* loss[0] = (sum over positions whose target is not ignore_index of
 * (max - logits[target]) + logsum) / count, NaN when count is 0; max and logsum written
 * for every position (logsum = log sum_c exp(logits_c - max)).
 * loss: 1 float written; max, logsum (N, inner) written; partial:
 * cross_entropy_partials(N, inner) doubles, scratch; logits (N, C, inner) read; target
 * (N, inner) read, each in [0, C) or equal to ignore_index; count: the number of targets
 * not equal to ignore_index. */
void cross_entropy_forward_cpu(float *loss, float *max, float *logsum, double *partial,
                               const float *logits, const int32_t *target, int32_t ignore_index,
                               int64_t count, int64_t N, int64_t C, int64_t inner);

/* dlogits += (exp((logits - max) - logsum) - onehot(target)) * scale at every position
 * whose target is not ignore_index (nothing elsewhere), scale = dloss / count.
 * dlogits (N, C, inner) accumulated, or written when fresh (the tape's tg_grad_fresh);
 * logits (N, C, inner), max, logsum and target (N, inner) read. */
void cross_entropy_backward_cpu(float *dlogits, const float *logits, const float *max,
                                const float *logsum, const int32_t *target,
                                int32_t ignore_index, float scale, int64_t N, int64_t C,
                                int64_t inner, bool fresh);

/* Entries of the `partial` workspace mse_forward_cpu needs. */
int64_t mse_partials(int64_t n);

/* loss[0] = mean((pred - target)^2), summed in double in fixed chunks (the same value
 * whatever the thread count). loss: 1 float written; partial: mse_partials(n) doubles,
 * scratch; pred, target: n floats read. */
void mse_forward_cpu(float *loss, double *partial, const float *pred, const float *target,
                     int64_t n);

/* dpred += scale (pred - target), dtarget -= scale (pred - target), scale = 2 dloss / n;
 * either gradient may be NULL (skipped). dpred, dtarget: n floats accumulated; pred,
 * target: n floats read. */
void mse_backward_cpu(float *dpred, float *dtarget, const float *pred, const float *target,
                      float scale, int64_t n);

#endif
