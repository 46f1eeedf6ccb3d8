/*
 * tests/test_dist.h — what tests/test_dist.c shares with tests/test_dist_attach.c (one
 * executable, run under mpirun; every rank runs the same tests in the same order).
 */
#ifndef TG_TEST_DIST_H
#define TG_TEST_DIST_H

#include "testutil.h"

#include "../core/core.h" /* ctx->dist: what a context still points at */

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

enum { SIZE = 6, CNN_HW = 8 };

extern tg_dist *g_dist; /* the process's tg_dist (tg_dist_init in main) */
int rank_(void);        /* 0 in a world of 1 */
int world_(void);
/* rank 0's n bytes equal this rank's? (true in a world of 1) */
bool same_as_rank0(const void *p, size_t n);
/* bn: forum50 with batchnorm (3 x SIZE x SIZE inputs); else the small CNN on CNN_HW^2. */
tg_model *make_model(bool bn);
tg_optim *make_optim(tg_model *m, bool adam);
/* tests/test_dist_attach.c's tests, added to tc. */
void dist_attach_tests(TCase *tc);

#endif
