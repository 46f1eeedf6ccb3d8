/*
 * ops/layout.h — CPU kernels of ops/layout.c (callable from tests and benchmarks).
 * Row-major, contiguous. Every kernel either writes (accumulate false) or adds into
 * (accumulate true) its destination, so forward and backward share one kernel.
 */
#ifndef TG_OPS_LAYOUT_H
#define TG_OPS_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

/* The geometry of a permutation, padded to 4 dims with leading 1s: out.dim[k] =
 * in_shape[perm[k]]. */
typedef struct permute_geom {
    int64_t in_shape[4];
    int perm[4];
} permute_geom;

/* out (in_shape permuted) = or += x (in_shape) read through perm. */
void permute_cpu(float *out, const float *x, const permute_geom *g, bool accumulate);
/* The geometry of the inverse permutation (dx += permute(dy, inverse)). */
permute_geom permute_inverse(const permute_geom *g);

/* For r < rows, k < len: dst[r dst_stride + k] = or += src[r src_stride + k].
 * The one kernel of concat and slice, forward (write) and backward (accumulate). */
void copy_rows_cpu(float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                   int64_t rows, int64_t len, bool accumulate);

#endif
