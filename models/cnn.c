/*
 * models/cnn.c — the small CNN for MNIST-sized images:
 *
 *   x (N, C, H, W)
 *   -> conv(C -> c1, 3x3, pad 1) -> ReLU -> maxpool 2x2      (N, c1, H/2, W/2)
 *   -> conv(c1 -> c2, 3x3, pad 1) -> ReLU -> maxpool 2x2     (N, c2, H/4, W/4)
 *   -> flatten -> linear(c2 * H/4 * W/4 -> hidden) -> ReLU -> linear(hidden -> K)
 *
 * With the defaults (1x28x28, 16, 32, 128, 10) that is 206,922 parameters. Parameters
 * conv1.weight/bias, conv2.weight/bias, fc1.weight/bias, fc2.weight/bias, initialised
 * as PyTorch's nn.Conv2d / nn.Linear from `seed`.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct cnn {
    int in_channels, height, width;
    tg_tensor *conv1_w, *conv1_b, *conv2_w, *conv2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} cnn;

static tg_tensor *cnn_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    (void)training;
    const cnn *net = m->impl;
    if (x->shape.ndim != 4 || x->shape.dim[1] != net->in_channels ||
        x->shape.dim[2] != net->height || x->shape.dim[3] != net->width) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "tg_model_forward(%s): input x has shape %s; the model takes "
                "(N, %d, %d, %d)", m->name, tg_shape_str(x->shape, s, sizeof s),
                net->in_channels, net->height, net->width);
        return NULL;
    }
    tg_conv2d_opts same = tg_conv2d_opts_make(1, 1, 1, 1);
    tg_pool2d_opts pool = tg_pool2d_opts_make(2, 2, 0);
    tg_tensor *h = tg_relu(ctx, tg_conv2d(ctx, x, net->conv1_w, net->conv1_b, same));
    h = tg_max_pool2d(ctx, h, pool);
    h = tg_relu(ctx, tg_conv2d(ctx, h, net->conv2_w, net->conv2_b, same));
    h = tg_flatten(ctx, tg_max_pool2d(ctx, h, pool));
    h = tg_relu(ctx, tg_linear(ctx, h, net->fc1_w, net->fc1_b));
    return tg_linear(ctx, h, net->fc2_w, net->fc2_b);
}

tg_model *tg_cnn_new(tg_cnn_opts opts, tg_device device, uint64_t seed) {
    int c = opts.in_channels ? opts.in_channels : 1;
    int hgt = opts.height ? opts.height : 28, wid = opts.width ? opts.width : 28;
    int c1 = opts.channels1 ? opts.channels1 : 16, c2 = opts.channels2 ? opts.channels2 : 32;
    int hidden = opts.hidden ? opts.hidden : 128;
    int classes = opts.num_classes ? opts.num_classes : 10;
    const char *bad = c < 0 ? "in_channels" : c1 < 0 ? "channels1" : c2 < 0 ? "channels2"
                    : hidden < 0 ? "hidden" : classes < 0 ? "num_classes" : NULL;
    if (bad) {
        tg_fail(TG_ERR_ARG, "tg_cnn_new: argument '%s' is negative; sizes must be > 0", bad);
        return NULL;
    }
    if (hgt < 4 || wid < 4 || hgt % 4 || wid % 4) {
        tg_fail(TG_ERR_ARG, "tg_cnn_new: image size %d x %d; height and width must be "
                "positive multiples of 4 (two 2x2 pools)", hgt, wid);
        return NULL;
    }
    char name[96]; /* tg_model_alloc keeps the first 63 characters */
    snprintf(name, sizeof name, "cnn-%dx%dx%d-%d-%d-%d-%d", c, hgt, wid, c1, c2, hidden,
             classes);
    tg_model *m = tg_model_alloc(name, device, cnn_forward);
    cnn *net = calloc(1, sizeof *net);
    if (!m || !net) {
        if (!net) tg_fail(TG_ERR_NOMEM, "tg_cnn_new: out of memory");
        free(net);
        tg_model_free(m);
        return NULL;
    }
    m->impl = net;
    net->in_channels = c;
    net->height = hgt;
    net->width = wid;
    int64_t flat = (int64_t)c2 * (hgt / 4) * (wid / 4);
    tg_params *ps = m->params;
    net->conv1_w = tg_params_add(ps, "conv1.weight", tg_shape4(c1, c, 3, 3));
    net->conv1_b = tg_params_add(ps, "conv1.bias", tg_shape1(c1));
    net->conv2_w = tg_params_add(ps, "conv2.weight", tg_shape4(c2, c1, 3, 3));
    net->conv2_b = tg_params_add(ps, "conv2.bias", tg_shape1(c2));
    net->fc1_w = tg_params_add(ps, "fc1.weight", tg_shape2(hidden, flat));
    net->fc1_b = tg_params_add(ps, "fc1.bias", tg_shape1(hidden));
    net->fc2_w = tg_params_add(ps, "fc2.weight", tg_shape2(classes, hidden));
    net->fc2_b = tg_params_add(ps, "fc2.bias", tg_shape1(classes));
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    if (!net->fc2_b || tg_init_conv2d(&rng, net->conv1_w, net->conv1_b) != TG_OK ||
        tg_init_conv2d(&rng, net->conv2_w, net->conv2_b) != TG_OK ||
        tg_init_linear(&rng, net->fc1_w, net->fc1_b) != TG_OK ||
        tg_init_linear(&rng, net->fc2_w, net->fc2_b) != TG_OK) {
        tg_model_free(m);
        return NULL;
    }
    return m;
}
