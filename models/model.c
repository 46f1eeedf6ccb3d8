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
