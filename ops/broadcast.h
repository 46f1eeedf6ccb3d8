/*
 * ops/broadcast.h — NumPy/PyTorch broadcasting, shared by every broadcasting op.
 *
 * Two shapes broadcast when, aligned at their last dims, each pair of dims is equal or
 * one of them is 1 (a missing leading dim counts as 1); the result takes the larger of
 * each pair. An input broadcast along a dim is read with stride 0 there, so its forward
 * costs nothing extra; its gradient must then be SUMMED over every dim it was broadcast
 * along (each of its elements fed that many outputs):
 *
 *   y[i] = f(a[i mod a's shape], ...)   =>   da[j] = sum over {i : i -> j} dL/dy[i]
 *
 * ONE function computes the output shape (tg_broadcast_shape) and ONE reduces a gradient
 * to an input's shape (tg_grad_reduce_to, or the kernel broadcast_reduce_cpu/_cuda with
 * its plan). Both work for any op: B's and C's ops may use them.
 */
#ifndef TG_OPS_BROADCAST_H
#define TG_OPS_BROADCAST_H

#include "../include/tapegrad.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The broadcast shape of a and b in *out. On a mismatch records a TG_ERR_SHAPE message
 * naming op, both arguments, both shapes and the first clashing dim, with a hint, and
 * returns false (*out untouched). */
bool tg_broadcast_shape(const char *op, const char *name_a, tg_shape a, const char *name_b,
                        tg_shape b, tg_shape *out);

/* A binary op's element walk. Output dims of size 1 are dropped and neighbouring dims
 * that both inputs treat alike (both read, or one broadcast) are merged, so any
 * broadcast becomes at most 4 dims and the innermost one is read with stride 1 or 0:
 *   out[i0, i1, i2, i3] = f(a[i . stride_a], b[i . stride_b])
 * ndim 0 means a single element. Same shapes give ndim 1, both strides {1}. */
typedef struct tg_bcast {
    int ndim;
    int64_t dim[TG_MAX_DIMS];
    int64_t stride_a[TG_MAX_DIMS]; /* element strides into a; 0 where a is broadcast */
    int64_t stride_b[TG_MAX_DIMS];
} tg_bcast;

/* a and b must broadcast to out (tg_broadcast_shape). */
tg_bcast tg_bcast_plan(tg_shape out, tg_shape a, tg_shape b);
/* The number of output elements (product of dim; 1 for ndim 0). */
int64_t tg_bcast_numel(const tg_bcast *p);

/* A gradient reduction. After dropping and merging, the output is viewed as
 *   (k0, r0, k1, r1, k2)      and the input as (k0, k1, k2):
 * dims k* are kept (the input has them), dims r* are summed over (broadcast). Any
 * broadcast up to 4-D fits; unused entries are 1. No reduction: r0 = r1 = 1. */
typedef struct tg_bcast_reduce {
    int64_t k0, r0, k1, r1, k2;
} tg_bcast_reduce;

/* `in` must broadcast to `out`. */
tg_bcast_reduce tg_bcast_reduce_plan(tg_shape out, tg_shape in);

/* Floats of scratch broadcast_reduce_cpu needs for this plan (0: none, pass NULL). A
 * reduction to few elements (a bias, a scalar) is split into a fixed number of chunks
 * summed in parallel into the scratch, then added in chunk order: the result does not
 * depend on the thread count. */
int64_t broadcast_reduce_scratch_floats(const tg_bcast_reduce *p);

/* dinp (k0, k1, k2) += scale * (g (k0, r0, k1, r1, k2) summed over r0 and r1).
 * g read; dinp accumulated; scratch (broadcast_reduce_scratch_floats) or NULL. */
void broadcast_reduce_cpu(float *dinp, const float *g, float scale, const tg_bcast_reduce *p,
                          float *scratch);

/* The one call an op's backward makes: dinp (shape in) += scale * g (shape out) reduced
 * over the broadcast dims, on ctx's device (scratch from the step arena). `in` must
 * broadcast to `out`. Returns TG_OK or a status with a message. */
tg_status tg_grad_reduce_to(tg_ctx *ctx, float *dinp, tg_shape in, const float *g,
                            tg_shape out, float scale);

#ifdef __cplusplus
}
#endif

#endif
