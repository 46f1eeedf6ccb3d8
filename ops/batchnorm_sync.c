/*
 * ops/batchnorm_sync.c — synchronised batchnorm: batch statistics over every rank's
 * examples (data-parallel training, core/dist.c), so N ranks with B/N examples each
 * normalise exactly as one process with B (ops/batchnorm.c has the op and derivation).
 *
 * FORWARD. Rank r holds n_r values of channel c. Two all-reduces of C + 1 and C doubles:
 *   sum_c = sum_r sum_{i in r} x_i,  n = sum_r n_r,  mean = sum_c / n
 *   ss_c  = sum_r sum_{i in r} (x_i - mean)^2,       var  = ss_c / n   (biased)
 * The second pass around the global mean avoids E[x^2] - E[x]^2 cancellation, as the
 * local kernel does; sums are in double, so the result matches one process to rounding.
 *
 * BACKWARD. Rank r holds dy_r = dL_r/dy of its own mean loss L_r, and the global loss is
 * L = sum_r s_r L_r with s_r = n_r-share of the batch (tg_dist_set_batch), so the global
 * dL/dy_i = s_r dy_i. The single-process formula (ops/batchnorm.c) needs
 *   S1 = sum_all dL/dy = sum_r s_r sum_{i in r} dy_i,
 *   S2 = sum_all dL/dy (x - mean) = sum_r s_r sum_{i in r} dy_i (x_i - mean)
 * (one all-reduce of 2C doubles), and gives dL/dx_j = w rstd (s_r dy_j - S1/n - xhat_j
 * rstd S2 / n). Rank r writes dx_j / s_r — the gradient of its own L_r — because every
 * other gradient on the rank is of L_r too; the weighted gradient all-reduce multiplies
 * everything by s_r again. dweight and dbias are local sums, like any parameter gradient.
 *
 * The CUDA version (cuda/batchnorm_sync.cu) does the same on the device with NCCL.
 */
#include "batchnorm.h"

#include "../core/core.h"
#include "../core/dist.h"

#include <stdlib.h>

/* The per-channel loops run on tg_parallel_items (core/pool.c): a channel's sums and its
 * dx are the same whoever computes them. */
#define SYNC_SERIAL 65536 /* elements at or below which one thread does it all */
#define SYNC_GRAIN 32768  /* about this many elements per chunk */

typedef struct sync_job {
    double *buf, *sums;
    const double *m, *csums;
    float *dx, *dweight, *dbias;
    const float *x, *dy, *mean, *rstd, *weight;
    int64_t N, C, HW;
    double share, n;
} sync_job;

/* buf[c] = sum of channel c over this rank's values. */
static void sums_x(void *arg, int64_t c0, int64_t c1) {
    const sync_job *j = arg;
    for (int64_t c = c0; c < c1; c++) {
        double sum = 0;
        for (int64_t b = 0; b < j->N; b++) {
            const float *p = j->x + (b * j->C + c) * j->HW;
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < j->HW; i++) sum += p[i];
        }
        j->buf[c] = sum;
    }
}

/* buf[c] = sum over this rank's values of (x - m[c])^2. */
static void sums_dev(void *arg, int64_t c0, int64_t c1) {
    const sync_job *j = arg;
    for (int64_t c = c0; c < c1; c++) {
        double ss = 0, mc = j->m[c];
        for (int64_t b = 0; b < j->N; b++) {
            const float *p = j->x + (b * j->C + c) * j->HW;
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < j->HW; i++) {
                double dev = p[i] - mc;
                ss += dev * dev;
            }
        }
        j->buf[c] = ss;
    }
}

static void for_channels(int64_t C, const sync_job *j, tg_range_fn fn) {
    tg_parallel_items(C, (double)j->N * (double)j->HW, SYNC_SERIAL, SYNC_GRAIN, fn, (void *)j);
}

/* mean, var (C, written); x (N, C, HW); *n_total (written): values per channel over all
 * ranks. */
tg_status batchnorm_sync_stats_cpu(tg_dist *d, float *mean, float *var, int64_t *n_total,
                                   const float *x, int64_t N, int64_t C, int64_t HW) {
    double *buf = malloc((size_t)(C + 1) * sizeof *buf);
    double *m = malloc((size_t)C * sizeof *m);
    sync_job j = {.buf = buf, .m = m, .x = x, .N = N, .C = C, .HW = HW};
    tg_status st = TG_OK;
    if (!buf || !m) {
        st = tg_fail(TG_ERR_NOMEM, "batchnorm2d (sync): out of memory");
        goto done;
    }
    for_channels(C, &j, sums_x);
    buf[C] = (double)(N * HW);
    if ((st = tg_dist_allreduce_sum(d, buf, (int)C + 1))) goto done;
    double n = buf[C];
    for (int64_t c = 0; c < C; c++) m[c] = buf[c] / n;
    for_channels(C, &j, sums_dev);
    if ((st = tg_dist_allreduce_sum(d, buf, (int)C))) goto done;
    for (int64_t c = 0; c < C; c++) {
        mean[c] = (float)m[c];
        var[c] = (float)(buf[c] / n);
    }
    *n_total = (int64_t)n;
done:
    free(buf);
    free(m);
    return st;
}

/* Channel c's local sum(dy) and sum(dy (x - mean)) into dbias, dweight and the rank's
 * share of the global sums. */
static void grad_sums(void *arg, int64_t c0, int64_t c1) {
    const sync_job *j = arg;
    const int64_t C = j->C, HW = j->HW;
    for (int64_t c = c0; c < c1; c++) {
        float m = j->mean[c];
        double sum_dy = 0, sum_dy_xc = 0;
        for (int64_t b = 0; b < j->N; b++) {
            const float *g = j->dy + (b * C + c) * HW, *p = j->x + (b * C + c) * HW;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xc)
            for (int64_t i = 0; i < HW; i++) {
                sum_dy += g[i];
                sum_dy_xc += (double)g[i] * (p[i] - m);
            }
        }
        if (j->dbias) j->dbias[c] += (float)sum_dy;
        if (j->dweight) j->dweight[c] += (float)(sum_dy_xc * j->rstd[c]);
        j->sums[c] = j->share * sum_dy;
        j->sums[C + c] = j->share * sum_dy_xc;
    }
}

/* Channel c's dx from the global sums (csums). */
static void grad_dx(void *arg, int64_t c0, int64_t c1) {
    const sync_job *j = arg;
    const int64_t C = j->C, HW = j->HW;
    for (int64_t c = c0; c < c1; c++) {
        float m = j->mean[c], r = j->rstd[c];
        float wr = (j->weight ? j->weight[c] : 1.0f) * r;
        /* The global means of dL_r/dy and dL_r/dy xhat, in this rank's scale. */
        float mean_dy = (float)(j->csums[c] / j->share / j->n);
        float mean_dy_xhat = (float)(j->csums[C + c] * r / j->share / j->n);
        for (int64_t b = 0; b < j->N; b++) {
            const float *g = j->dy + (b * C + c) * HW, *p = j->x + (b * C + c) * HW;
            float *dst = j->dx + (b * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) {
                float xhat = (p[i] - m) * r;
                dst[i] += wr * (g[i] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

/* Training-mode backward with the sums over all ranks. dx (N, C, HW, accumulated, may be
 * NULL); dweight, dbias (C, accumulated, may be NULL); dy, x (N, C, HW); mean, rstd,
 * weight (C; weight may be NULL); n_total values per channel over all ranks. */
tg_status batchnorm_sync_backward_cpu(tg_dist *d, float *dx, float *dweight, float *dbias,
                                      const float *dy, const float *x, const float *mean,
                                      const float *rstd, const float *weight, int64_t N,
                                      int64_t C, int64_t HW, int64_t n_total) {
    double *sums = malloc((size_t)(2 * C) * sizeof *sums);
    if (!sums) return tg_fail(TG_ERR_NOMEM, "batchnorm2d (sync): out of memory");
    double share = tg_dist_share(d);
    sync_job j = {.sums = sums, .dx = dx, .dweight = dweight, .dbias = dbias, .x = x,
                  .dy = dy, .mean = mean, .rstd = rstd, .weight = weight, .N = N, .C = C,
                  .HW = HW, .share = share};
    for_channels(C, &j, grad_sums);
    tg_status st = tg_dist_allreduce_sum(d, sums, (int)(2 * C));
    if (st || !dx || share == 0) {
        free(sums);
        return st;
    }
    double n = (double)n_total;
    j.csums = sums;
    j.n = n;
    for_channels(C, &j, grad_dx);
    free(sums);
    return TG_OK;
}
