/*
 * tests/conv_ref.h — the double-precision reference convolution of the conv tests.
 */
#ifndef TG_TESTS_CONV_REF_H
#define TG_TESTS_CONV_REF_H

#include "../ops/conv2d.h"

/* y (N, C_out, OH, OW) written, straight from the definition, in double. */
void conv_ref_forward(double *y, const float *x, const float *w, const float *b,
                      const conv2d_geom *g);
/* dx, dw, db (zeroed by the caller, any may be NULL) accumulated: the chain rule applied
 * term by term to conv_ref_forward's sum. */
void conv_ref_backward(double *dx, double *dw, double *db, const float *dy, const float *x,
                       const float *w, const conv2d_geom *g);

#endif
