/*
 * ops/conv2d_winograd.h — what the two halves of the Winograd F(4x4, 3x3) path share: the
 * plan of one convolution, runs of tiles, and the transforms (ops/conv2d_winograd_transform.c)
 * that ops/conv2d_winograd.c's passes call around their 36 SGEMMs. Internal: the kernels'
 * interface is ops/conv2d.h.
 */
#ifndef TG_OPS_CONV2D_WINOGRAD_H
#define TG_OPS_CONV2D_WINOGRAD_H

#include <stdbool.h>
#include <stdint.h>

/* One Winograd convolution: `in` (N, C, H, W) -> `out` (N, K, OH, OW), zero padding ph,
 * pw, OH = H + 2 ph - 2, OW = W + 2 pw - 2. */
typedef struct wino_plan {
    int64_t N, C, K, H, W, OH, OW;
    int64_t ph, pw;
    int64_t th, tw, T; /* tiles per column, per row, in all (N th tw) */
    int64_t Tb;        /* tiles per block, a multiple of 16 */
} wino_plan;

/* A run of `len` tiles along one tile row: image n, tile row ty, tile columns tx0 ..
 * tx0 + len - 1, held in columns col .. col + len - 1 of a block's V, M and Z. The tile at
 * (ty, tx) reads input rows 4 ty - ph .. + 5 and columns 4 tx - pw .. + 5, and writes
 * output rows 4 ty .. + 3 and columns 4 tx .. + 3. */
typedef struct wino_run {
    int64_t n;
    int32_t ty, tx0, len, col;
} wino_run;

/* The runs of tiles t0 .. t0 + nt - 1 (numbered n, ty, tx) into runs[]; returns how many
 * (at most nt). */
int64_t wino_runs(wino_run *runs, const wino_plan *p, int64_t t0, int64_t nt);

/* U (36, A, B): U[xi][a][b] = (G g G^T)[xi] with g = w[a][b] (w (A, B, 3, 3)), or with
 * flip, g = rot180(w[a][b]): the forward's filters (A = C_out, B = C_in), or the dx
 * pass's, transposed (its GEMMs read U[xi]^T). */
void wino_weight_transform(float *U, const float *w, int64_t A, int64_t B, bool flip);
/* dweight (K, C, 3, 3) += G^T P[.][k][c] G, P (36, K, C). */
void wino_weight_grad_transform(float *dweight, const float *P, int64_t K, int64_t C);

/* V (36, C, Tb), the runs' columns = B^T d B of each tile's 6x6 patch of in (N, C, H, W)
 * (zeros outside the H x W plane). */
void wino_input_transform(float *V, const float *in, const wino_plan *p, const wino_run *runs,
                          int64_t nruns);
/* out (N, K, OH, OW), each tile's 4x4 block = A^T M A of the runs' columns of M (36, K, Tb),
 * + bias[k] (bias may be NULL), or added to what is there when accumulate; rows and
 * columns past OH, OW are dropped. */
void wino_output_transform(float *out, const float *M, const float *bias, bool accumulate,
                           const wino_plan *p, const wino_run *runs, int64_t nruns);
/* Z (36, K, Tb), the runs' columns = A dY A^T of each tile's 4x4 block of dout (N, K, OH,
 * OW) (zeros past OH, OW). */
void wino_dout_transform(float *Z, const float *dout, const wino_plan *p, const wino_run *runs,
                         int64_t nruns);

#endif
