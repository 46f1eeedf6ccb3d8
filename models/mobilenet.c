/*
 * models/mobilenet.c — MobileNet v1 (Howard et al. 2017) as the forum thread's second
 * experiment uses it: 224x224 input, batchnorm + ReLU after every conv, no conv biases.
 *
 *   conv1      conv(3 -> 32, 3x3, stride 2, pad 1) + BN + ReLU
 *   13 blocks  (C_out, stride): (64,1) (128,2) (128,1) (256,2) (256,1) (512,2)
 *              5x (512,1) (1024,2) (1024,1); each block is
 *                3x3 conv(C_in -> C_in, stride s, pad 1, groups g) + BN + ReLU
 *                1x1 conv(C_in -> C_out) + BN + ReLU
 *              with g = C_in (true depthwise, the default), 1 ("one group") or 4
 *   head       global average pool (the 7x7 map at 224x224) -> linear(1024 -> 1000)
 *
 * Trainable parameters at width 1 and 1000 classes: 4,231,976 with g = C_in,
 * 29,300,936 with g = 1, 10,465,736 with g = 4 (BN weight and bias count; running
 * statistics are buffers). A width multiplier scales every channel count (rounded,
 * at least 1) for small test models.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MB_IN 3            /* input channels */
#define MB_STEM 32         /* conv1 output channels */
#define MB_BLOCKS 13
#define MB_CONVS (1 + 2 * MB_BLOCKS)
#define BN_MOMENTUM 0.1f   /* PyTorch's BatchNorm2d defaults */
#define BN_EPS 1e-5f

static const int block_out[MB_BLOCKS] = {64, 128, 128, 256, 256, 512, 512,
                                         512, 512, 512, 512, 1024, 1024};
static const int block_stride[MB_BLOCKS] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};

/* A bias-free conv followed by batchnorm and ReLU. */
typedef struct mb_conv {
    tg_tensor *weight;
    tg_conv2d_opts opts;
    tg_bn_params bn; /* all NULL when no batchnorm follows */
} mb_conv;

typedef struct mobilenet {
    mb_conv conv[MB_CONVS];
    tg_tensor *fc_weight, *fc_bias;
} mobilenet;

static int scaled(int channels, float width) {
    int c = (int)lroundf((float)channels * width);
    return c < 1 ? 1 : c;
}

/* "<prefix>.weight" (cout, cin/groups, k, k) with PyTorch's init, then
 * "<prefix>_bn.{weight,bias,running_mean,running_var}". */
static bool add_conv(tg_model *m, tg_rng *rng, mb_conv *c, const char *prefix, int cin,
                     int cout, int k, int stride, int groups) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    c->weight = tg_params_add(m->params, name, tg_shape4(cout, cin / groups, k, k));
    if (!c->weight || tg_init_conv2d(rng, c->weight, NULL) != TG_OK) return false;
    c->opts = tg_conv2d_opts_make(stride, k / 2, 1, groups);
    snprintf(name, sizeof name, "%s_bn", prefix);
    return tg_model_add_batchnorm(m, name, cout, &c->bn) == TG_OK;
}

static tg_tensor *mobilenet_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    const mobilenet *net = m->impl;
    if (x->shape.ndim != 4 || x->shape.dim[1] != MB_IN) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "%s: input x has shape %s but the model expects (N, %d, H, W), "
                "e.g. (1, 3, 224, 224)", m->name, tg_shape_str(x->shape, s, sizeof s), MB_IN);
        return NULL;
    }
    tg_tensor *h = x;
    for (int i = 0; i < MB_CONVS; i++) {
        const mb_conv *c = &net->conv[i];
        h = tg_conv2d(ctx, h, c->weight, NULL, c->opts);
        h = tg_batchnorm2d(ctx, h, c->bn.weight, c->bn.bias, c->bn.running_mean, c->bn.running_var, training,
                           BN_MOMENTUM, BN_EPS);
        h = tg_relu(ctx, h);
    }
    h = tg_flatten(ctx, tg_global_avg_pool(ctx, h));
    return tg_linear(ctx, h, net->fc_weight, net->fc_bias);
}

tg_model *tg_mobilenet_new(tg_mobilenet_opts opts, tg_device device, uint64_t seed) {
    float width = opts.width != 0.0f ? opts.width : 1.0f;
    int classes = opts.num_classes ? opts.num_classes : 1000;
    if (!(width > 0.0f) || !isfinite(width)) {
        tg_fail(TG_ERR_ARG, "tg_mobilenet_new: width = %g; it must be > 0", (double)width);
        return NULL;
    }
    if (classes < 1) {
        tg_fail(TG_ERR_ARG, "tg_mobilenet_new: num_classes = %d; it must be >= 1", classes);
        return NULL;
    }
    if (opts.groups < 0) {
        tg_fail(TG_ERR_ARG, "tg_mobilenet_new: groups = %d; use 0 (depthwise), 1, 4 or "
                "another divisor of every block's channels", opts.groups);
        return NULL;
    }
    /* Every block's 3x3 conv must split its input channels evenly into the groups. */
    int cin = scaled(MB_STEM, width);
    for (int b = 0; b < MB_BLOCKS; b++) {
        if (opts.groups > 0 && cin % opts.groups != 0) {
            tg_fail(TG_ERR_ARG, "tg_mobilenet_new: groups = %d does not divide the %d input "
                    "channels of block %d; hint: use groups 0 (depthwise), 1 or a divisor",
                    opts.groups, cin, b + 1);
            return NULL;
        }
        cin = scaled(block_out[b], width);
    }
    char name[64];
    if (opts.groups == 0) snprintf(name, sizeof name, "mobilenet-v1-dw");
    else snprintf(name, sizeof name, "mobilenet-v1-g%d", opts.groups);
    tg_model *m = tg_model_alloc(name, device, mobilenet_forward);
    if (!m) return NULL;
    mobilenet *net = calloc(1, sizeof *net);
    if (!net) {
        tg_fail(TG_ERR_NOMEM, "tg_mobilenet_new: out of memory");
        tg_model_free(m);
        return NULL;
    }
    m->impl = net;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    cin = scaled(MB_STEM, width);
    bool ok = add_conv(m, &rng, &net->conv[0], "conv1", MB_IN, cin, 3, 2, 1);
    char prefix[48];
    for (int b = 0; ok && b < MB_BLOCKS; b++) {
        int cout = scaled(block_out[b], width);
        int groups = opts.groups ? opts.groups : cin;
        snprintf(prefix, sizeof prefix, "blocks.%d.dw", b + 1);
        ok = add_conv(m, &rng, &net->conv[1 + 2 * b], prefix, cin, cin, 3, block_stride[b],
                      groups);
        snprintf(prefix, sizeof prefix, "blocks.%d.pw", b + 1);
        ok = ok && add_conv(m, &rng, &net->conv[2 + 2 * b], prefix, cin, cout, 1, 1, 1);
        cin = cout;
    }
    if (ok) {
        net->fc_weight = tg_params_add(m->params, "fc.weight", tg_shape2(classes, cin));
        net->fc_bias = tg_params_add(m->params, "fc.bias", tg_shape1(classes));
        ok = net->fc_weight && net->fc_bias &&
             tg_init_linear(&rng, net->fc_weight, net->fc_bias) == TG_OK;
    }
    if (!ok) {
        tg_model_free(m);
        return NULL;
    }
    return m;
}
