/*
 * models/model.c — the parts every model shares: allocation, free, accessors, and the
 * forward entry point's argument checks.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tg_model *tg_model_new(const char *name, tg_device device, tg_model_forward_fn forward,
                       void *user, void (*free_user)(void *user)) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= sizeof ((tg_model *)0)->name) {
        tg_fail(TG_ERR_ARG, "tg_model_new: argument 'name' is %s; it must have 1 to %zu "
                "characters (checkpoints store it)", name ? (len ? "too long" : "empty")
                : "NULL", sizeof ((tg_model *)0)->name - 1);
        if (free_user) free_user(user);
        return NULL;
    }
    tg_model *m = calloc(1, sizeof *m);
    if (!m) {
        tg_fail(TG_ERR_NOMEM, "tg_model_new(%s): out of memory", name);
        if (free_user) free_user(user);
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->forward = forward;
    m->impl = user;
    m->free_impl = free_user;
    m->params = tg_params_new(device);
    if (!m->params) {
        tg_model_free(m);
        return NULL;
    }
    tg_params_set_label(m->params, m->name);
    return m;
}

tg_model *tg_model_alloc(const char *name, tg_device device, tg_model_forward_fn forward) {
    return tg_model_new(name, device, forward, NULL, free);
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    tg_params_free(m->params);
    if (m->free_impl) m->free_impl(m->impl);
    free(m);
}

void *tg_model_user(const tg_model *m) { return m ? m->impl : NULL; }

const char *tg_model_name(const tg_model *m) { return m ? m->name : ""; }

tg_params *tg_model_params(tg_model *m) { return m ? m->params : NULL; }

tg_tensor *tg_model_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    if (!m) {
        tg_fail(TG_ERR_ARG, "tg_model_forward: model is NULL");
        return NULL;
    }
    if (!ctx || !x) {
        if (!ctx) tg_fail(TG_ERR_ARG, "tg_model_forward(%s): ctx is NULL", m->name);
        else tg_fail(TG_ERR_ARG, "tg_model_forward(%s): input x is NULL", m->name);
        return NULL;
    }
    if (!m->forward) {
        tg_fail(TG_ERR_STATE, "tg_model_forward(%s): the model has no forward function "
                "(tg_model_new was given NULL); call your own forward", m->name);
        return NULL;
    }
    return m->forward(ctx, m, x, training);
}

tg_status tg_model_add_batchnorm(tg_model *m, const char *prefix, int64_t channels,
                                 tg_bn_params *bn) {
    char name[128];
    tg_shape shape = tg_shape1(channels);
    snprintf(name, sizeof name, "%s.weight", prefix);
    bn->weight = tg_params_add(m->params, name, shape);
    snprintf(name, sizeof name, "%s.bias", prefix);
    bn->bias = tg_params_add(m->params, name, shape);
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    bn->running_mean = tg_params_add_buffer(m->params, name, shape, 0.0f);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    bn->running_var = tg_params_add_buffer(m->params, name, shape, 1.0f);
    if (!bn->weight || !bn->bias || !bn->running_mean || !bn->running_var) return tg_error();
    return tg_init_batchnorm(bn->weight, bn->bias); /* as nn.BatchNorm2d: the identity */
}
