/*
 * models/model.h — the model interface behind tg_model: a parameter store plus a
 * forward function plus user data (public: tg_model_new). Each built-in model file
 * (forum50.c, mobilenet.c, mlp.c, cnn.c) builds its layers in a constructor through it,
 * exactly as a user's model does.
 */
#ifndef TG_MODEL_H
#define TG_MODEL_H

#include "../core/core.h"

struct tg_model {
    char name[64];
    tg_params *params;
    tg_model_forward_fn forward;
    void *impl;                  /* the user data of tg_model_new (built-ins: layer table) */
    void (*free_impl)(void *impl);
};

/* What the built-in models call: tg_model_new(name, device, forward, NULL, free); they
 * then set m->impl to their layer table (freed with free()). */
tg_model *tg_model_alloc(const char *name, tg_device device, tg_model_forward_fn forward);

/* The parameters of a BatchNorm2d over `channels` named "<prefix>.weight", ".bias",
 * ".running_mean", ".running_var", initialised as nn.BatchNorm2d: weight 1, bias 0,
 * mean 0, var 1. */
typedef struct tg_bn_params {
    tg_tensor *weight, *bias, *running_mean, *running_var;
} tg_bn_params;
tg_status tg_model_add_batchnorm(tg_model *m, const char *prefix, int64_t channels,
                                 tg_bn_params *bn);

#endif
