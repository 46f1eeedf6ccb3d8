/*
 * models/mlp.c — a multilayer perceptron for small classification problems:
 *
 *   x (N, ...) -> flatten -> [linear -> ReLU] per hidden size -> linear -> logits (N, K)
 *
 * Parameters are named fc1.weight, fc1.bias, fc2.weight, ... in layer order and
 * initialised as PyTorch's nn.Linear (uniform in ±1/sqrt(fan_in)) from `seed`.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

#define MLP_MAX_LAYERS 5 /* up to 4 hidden layers + the output layer */

typedef struct mlp {
    int in_features;
    int nlayers;
    tg_tensor *weight[MLP_MAX_LAYERS], *bias[MLP_MAX_LAYERS];
} mlp;

static tg_tensor *mlp_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    (void)training;
    const mlp *net = m->impl;
    tg_tensor *h = x->shape.ndim == 2 ? x : tg_flatten(ctx, x);
    if (h && h->shape.dim[1] != net->in_features) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "tg_model_forward(%s): input x has shape %s, %lld features per "
                "example, but the model takes %d", m->name, tg_shape_str(x->shape, s, sizeof s),
                (long long)h->shape.dim[1], net->in_features);
        return NULL;
    }
    for (int l = 0; l < net->nlayers; l++) {
        h = tg_linear(ctx, h, net->weight[l], net->bias[l]);
        if (l + 1 < net->nlayers) h = tg_relu(ctx, h);
    }
    return h;
}

tg_model *tg_mlp_new(tg_mlp_opts opts, tg_device device, uint64_t seed) {
    int in = opts.in_features ? opts.in_features : 784;
    int classes = opts.num_classes ? opts.num_classes : 10;
    int sizes[MLP_MAX_LAYERS + 1] = {in};
    int nhidden = 0;
    while (nhidden < 4 && opts.hidden[nhidden] != 0) {
        if (opts.hidden[nhidden] < 0) {
            tg_fail(TG_ERR_ARG, "tg_mlp_new: argument 'hidden[%d]' is %d; sizes must be > 0",
                    nhidden, opts.hidden[nhidden]);
            return NULL;
        }
        sizes[1 + nhidden] = opts.hidden[nhidden];
        nhidden++;
    }
    if (nhidden == 0) sizes[1 + nhidden++] = 128;
    if (in < 0 || classes < 0) {
        tg_fail(TG_ERR_ARG, "tg_mlp_new: argument '%s' is %d; it must be > 0",
                in < 0 ? "in_features" : "num_classes", in < 0 ? in : classes);
        return NULL;
    }
    sizes[1 + nhidden] = classes;
    char name[64];
    int len = snprintf(name, sizeof name, "mlp-%d", in);
    for (int i = 1; i <= nhidden + 1 && len < (int)sizeof name; i++)
        len += snprintf(name + len, sizeof name - (size_t)len, "-%d", sizes[i]);
    tg_model *m = tg_model_alloc(name, device, mlp_forward);
    mlp *net = calloc(1, sizeof *net);
    if (!m || !net) {
        if (!net) tg_fail(TG_ERR_NOMEM, "tg_mlp_new: out of memory");
        free(net);
        tg_model_free(m);
        return NULL;
    }
    m->impl = net;
    net->in_features = in;
    net->nlayers = nhidden + 1;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int l = 0; l < net->nlayers; l++) {
        char wname[32], bname[32];
        snprintf(wname, sizeof wname, "fc%d.weight", l + 1);
        snprintf(bname, sizeof bname, "fc%d.bias", l + 1);
        net->weight[l] = tg_params_add(m->params, wname, tg_shape2(sizes[l + 1], sizes[l]));
        net->bias[l] = tg_params_add(m->params, bname, tg_shape1(sizes[l + 1]));
        if (!net->weight[l] || !net->bias[l] ||
            tg_init_linear(&rng, net->weight[l], net->bias[l]) != TG_OK) {
            tg_model_free(m);
            return NULL;
        }
    }
    return m;
}
