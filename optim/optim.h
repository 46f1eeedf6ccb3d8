/*
 * optim/optim.h — internals of the optimizers: the tg_optim struct and the per-kind
 * descriptor with its device-indexed step table. The step kernels (plain functions of
 * raw pointers, callable from tests and benchmarks) are declared in optim/kernels.h.
 *
 * Every kernel runs ONE fused loop over the whole flat parameter store (DESIGN §2):
 * param/grad/state are tg_params_flat_numel floats, alignment padding included. The
 * padding holds 0 in param, grad and state, and every update rule maps (p, g, state) =
 * (0, 0, 0) to (0, 0, 0), so looping over it is harmless (tests check it stays 0).
 */
#ifndef TG_OPTIM_H
#define TG_OPTIM_H

#include "../core/core.h"
#include "kernels.h"

/* The step kernels run stores of more than OPTIM_SERIAL floats on tg_parallel_range
 * (core/pool.c), in chunks of at least OPTIM_GRAIN: every element is updated on its own,
 * so the bits do not depend on the thread count. */
#define OPTIM_SERIAL 65536
#define OPTIM_GRAIN 16384

/* ---------------------------------------------------------------- the optimizer object */

/* The largest step count an optimizer (or a checkpoint) may hold: 2^53, where a double
 * still counts exactly (Adam's bias correction raises beta to the power t). */
#define TG_OPTIM_MAX_STEPS ((int64_t)1 << 53)

typedef struct tg_optim tg_optim;

/* Runs one step of `opt` on its store's device; t is the 1-based step number. */
typedef tg_status (*tg_optim_step_fn)(tg_optim *opt, int64_t t);

/* One constant per optimizer kind (sgd.c, adam.c), like an op's tg_op. */
typedef struct tg_optim_kind {
    const char *name;                       /* "sgd", "adam", "adamw" */
    const char *ctor;                       /* "tg_sgd_new", ... (for messages) */
    tg_optim_step_fn step[TG_DEVICE_COUNT]; /* a missing entry is a clear error */
} tg_optim_kind;

typedef struct tg_optim_hyper {
    double momentum, dampening; /* SGD */
    bool nesterov;
    double beta1, beta2, eps;   /* Adam / AdamW */
    double weight_decay;
} tg_optim_hyper;

struct tg_optim {
    const tg_optim_kind *kind;
    tg_params *ps;
    double lr;            /* tg_optim_set_lr changes it between steps */
    tg_optim_hyper hyper; /* validated, defaults applied */
    int64_t steps;        /* completed steps */
    int slots;            /* state arrays held in the store (0: stateless) */
    float *state;         /* slots x tg_params_flat_numel floats, or NULL */
    bool skip_nonfinite;  /* tg_optim_set_skip_nonfinite */
    bool last_skipped;
    int64_t skipped;      /* steps skipped for non-finite gradients */
};

/* Shared part of the constructors (optim.c): checks the store (NULL, no trainable
 * parameter, no step kernel for its device, state of another optimizer), acquires `slots`
 * state arrays and returns the object, or NULL with a message naming kind->ctor. */
tg_optim *tg_optim_create(const tg_optim_kind *kind, tg_params *ps, double lr,
                          tg_optim_hyper hyper, int slots);

/* Option validation: when !ok, records TG_ERR_ARG "<ctor>: option '<option>' is <value>;
 * valid range: <range>" and returns false. */
bool tg_optim_check_option(const char *ctor, const char *option, double value, bool ok,
                           const char *range);

#endif /* TG_OPTIM_H */
