/*
 * fuzz/fuzz_model.h — the small model, optimizer and train state the checkpoint fuzzer
 * loads into (and fuzz/seed_checkpoint.c saves from, to make its seed inputs).
 */
#ifndef TG_FUZZ_MODEL_H
#define TG_FUZZ_MODEL_H

#include <tapegrad.h>

/* A 4 -> 3 -> 2 MLP (4 parameters, 23 floats) with Adam (two state arrays). */
static inline tg_model *fuzz_model(tg_optim **opt) {
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2},
                             TG_DEVICE_CPU, 7);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.01;
    *opt = m ? tg_adam_new(tg_model_params(m), ao) : NULL;
    return m;
}

#endif
