/*
 * tests/conv_ref.c — the naive convolution every conv kernel is checked against: straight
 * from the definition in ops/conv2d_gemm.c, in double precision.
 */
#include "conv_ref.h"

/* y (N, C_out, OH, OW) written, straight from the definition, in double. */
void conv_ref_forward(double *y, const float *x, const float *w, const float *b,
                      const conv2d_geom *g) {
    int64_t Cg = g->C_in / g->groups, Cog = g->C_out / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->C_out; o++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < g->KH; kh++)
                            for (int64_t kw = 0; kw < g->KW; kw++) {
                                int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                                int64_t iw = ow * g->stride_w - g->pad_w + kw * g->dil_w;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                int64_t ci = o / Cog * Cg + c;
                                s += (double)w[((o * Cg + c) * g->KH + kh) * g->KW + kw] *
                                     x[((n * g->C_in + ci) * g->H + ih) * g->W + iw];
                            }
                    y[((n * g->C_out + o) * g->OH + oh) * g->OW + ow] = s;
                }
}

/* dx, dw, db (zeroed by the caller, any may be NULL) accumulated: the chain rule applied
 * term by term to conv_ref_forward's sum. */
void conv_ref_backward(double *dx, double *dw, double *db, const float *dy, const float *x,
                       const float *w, const conv2d_geom *g) {
    int64_t Cg = g->C_in / g->groups, Cog = g->C_out / g->groups;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->C_out; o++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double d = dy[((n * g->C_out + o) * g->OH + oh) * g->OW + ow];
                    if (db) db[o] += d;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < g->KH; kh++)
                            for (int64_t kw = 0; kw < g->KW; kw++) {
                                int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                                int64_t iw = ow * g->stride_w - g->pad_w + kw * g->dil_w;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                int64_t xi =
                                    ((n * g->C_in + o / Cog * Cg + c) * g->H + ih) * g->W + iw;
                                int64_t wi = ((o * Cg + c) * g->KH + kh) * g->KW + kw;
                                if (dx) dx[xi] += d * w[wi];
                                if (dw) dw[wi] += d * x[xi];
                            }
                }
}
