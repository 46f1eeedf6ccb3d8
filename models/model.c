/*
 * models/model.c — the parts every model shares: allocation, free, accessors, and the
 * forward entry point's argument checks.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

tg_model *tg_model_alloc(const char *name, tg_device device, tg_model_forward_fn forward) {
    tg_model *m = calloc(1, sizeof *m);
    if (!m) {
        tg_fail(TG_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->forward = forward;
    m->params = tg_params_new(device);
    if (!m->params) {
        free(m);
        return NULL;
    }
    tg_params_set_label(m->params, m->name);
    return m;
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    tg_params_free(m->params);
    free(m->impl);
    free(m);
}

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
    /* nn.BatchNorm2d starts as the identity: weight 1 (the store zeroes the bias). */
    float *host = malloc((size_t)channels * sizeof *host);
    if (!host) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", m->name);
    for (int64_t i = 0; i < channels; i++) host[i] = 1.0f;
    tg_status st = tg_device_copy(bn->weight->device, bn->weight->data, TG_DEVICE_CPU, host,
                                  (size_t)channels * sizeof *host);
    free(host);
    return st;
}
