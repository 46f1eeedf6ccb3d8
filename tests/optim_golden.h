/*
 * tests/optim_golden.h — the golden-trajectory harness shared by test_sgd.c and
 * test_adam.c: the parameter store of tests/golden/gen_optim.py (w (3, 4), a buffer
 * between, b (5)), the loss whose gradient both sides compute identically, and the
 * 10-step comparison with PyTorch.
 */
#ifndef TG_OPTIM_GOLDEN_H
#define TG_OPTIM_GOLDEN_H

#include "testutil.h"

#define GOLDEN_STEPS 10
/* torch's vectorised `a + alpha * b` is one fused multiply-add; ours rounds twice, so
 * values differ by an ulp or so after a step (a few ulps after 10). */
#define GOLDEN_ATOL 3e-7
#define GOLDEN_RTOL 1e-6

typedef struct golden_store {
    tg_params *ps;
    tg_tensor *w, *b, *buffer;
    const double *cw1, *cw2, *cb1, *cb2;
} golden_store;

/* A fresh store holding the fixture's initial values. */
void golden_store_init(golden_store *g, const tg_fixture *fx);
/* The configuration's hyperparameters ("<name>.hyper"). */
const double *golden_hyper(const tg_fixture *fx, const char *name);
/* GOLDEN_STEPS steps of opt with L = sum(c1 p^2) + sum(c2 p), comparing w and b with
 * "<name>.w" / "<name>.b" after every step. */
void golden_run(const char *name, const tg_fixture *fx, golden_store *g, tg_optim *opt);
/* Every flat element outside the parameters (alignment padding) is 0 in values, grads
 * and each state array; the buffer keeps its fill. */
void golden_expect_padding_zero(const char *what, golden_store *g);

#endif
