/*
 * models/forum50.c — the forum's 50-layer stack (DESIGN §7), the workload behind the
 * question "why is my depthwise-separable net not faster than the dense one?".
 *
 *   layer 1        conv(3 -> C, 3x3, pad 1)
 *   layers 2..L-1  dense:     conv(C -> C, 3x3, pad 1)                  9 C^2 + C params
 *                  separable: depthwise conv(C, 3x3, pad 1, groups C)   9 C   + C
 *                             + pointwise conv(C -> C, 1x1)             C^2   + C
 *   layer L        conv(C -> 10, 3x3, pad 1) for per-pixel cross entropy (10 classes)
 *                  or conv(C -> 3, 3x3, pad 1) for MSE against a 3-channel target
 *
 * Every conv has a bias. With opts.relu / opts.bn, a ReLU and/or a batchnorm follows
 * every conv but the last (batchnorm first, then ReLU, as Conv-BN-ReLU blocks do).
 * With C = 256 and L = 50 the trainable parameter counts are the forum's:
 * dense+CE 28,354,058; separable+CE 3,311,114; dense+MSE 28,337,923;
 * separable+MSE 3,294,979 (batchnorm adds 2 C per normalised conv).
 *
 * The spatial size is preserved by every layer (3x3 with pad 1, stride 1), so any
 * H, W >= 1 works. The loss is not part of the model: the caller applies
 * tg_cross_entropy (targets in [0, 10)) or tg_mse_loss to the output.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

#define FORUM_CLASSES 10   /* per-pixel classes of the cross-entropy head */
#define FORUM_MSE_OUT 3    /* channels of the MSE head (it predicts an image) */
#define FORUM_IN 3         /* input channels */
#define BN_MOMENTUM 0.1f   /* PyTorch's BatchNorm2d defaults */
#define BN_EPS 1e-5f

/* One conv and what follows it. */
typedef struct forum_conv {
    tg_tensor *weight, *bias;
    tg_conv2d_opts opts;
    /* batchnorm after this conv (opts.bn and not the last conv), else all NULL */
    tg_bn_params bn; /* all NULL when no batchnorm follows */
    bool relu; /* ReLU after this conv (and after its batchnorm) */
} forum_conv;

typedef struct forum50 {
    tg_forum50_opts opts;
    int nconv;
    forum_conv conv[];
} forum50;

/* Adds "<prefix>.weight" (C_out, C_in/groups, k, k) and "<prefix>.bias", PyTorch init,
 * and the batchnorm that follows when asked. */
static bool add_conv(tg_model *m, tg_rng *rng, forum_conv *c, const char *prefix,
                     int64_t cin, int64_t cout, int k, int groups, bool bn, bool relu) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    c->weight = tg_params_add(m->params, name, tg_shape4(cout, cin / groups, k, k));
    snprintf(name, sizeof name, "%s.bias", prefix);
    c->bias = tg_params_add(m->params, name, tg_shape1(cout));
    if (!c->weight || !c->bias || tg_init_conv2d(rng, c->weight, c->bias) != TG_OK)
        return false;
    c->opts = tg_conv2d_opts_make(1, k / 2, 1, groups);
    c->relu = relu;
    if (!bn) return true;
    snprintf(name, sizeof name, "%s_bn", prefix);
    return tg_model_add_batchnorm(m, name, cout, &c->bn) == TG_OK;
}

static tg_tensor *forum50_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    const forum50 *f = m->impl;
    if (x->shape.ndim != 4 || x->shape.dim[1] != FORUM_IN) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "%s: input x has shape %s but the model expects (N, %d, H, W)",
                m->name, tg_shape_str(x->shape, s, sizeof s), FORUM_IN);
        return NULL;
    }
    tg_tensor *h = x;
    for (int i = 0; i < f->nconv; i++) {
        const forum_conv *c = &f->conv[i];
        h = tg_conv2d(ctx, h, c->weight, c->bias, c->opts);
        if (c->bn.weight)
            h = tg_batchnorm2d(ctx, h, c->bn.weight, c->bn.bias, c->bn.running_mean, c->bn.running_var,
                               training, BN_MOMENTUM, BN_EPS);
        if (c->relu) h = tg_relu(ctx, h);
    }
    return h;
}

tg_model *tg_forum50_new(tg_forum50_opts opts, tg_device device, uint64_t seed) {
    int C = opts.channels ? opts.channels : 256;
    int L = opts.layers ? opts.layers : 50;
    if (C < 1) {
        tg_fail(TG_ERR_ARG, "tg_forum50_new: channels = %d; it must be >= 1", C);
        return NULL;
    }
    if (L < 2) {
        tg_fail(TG_ERR_ARG, "tg_forum50_new: layers = %d; it must be >= 2 (the first and "
                "the last conv)", L);
        return NULL;
    }
    if (opts.loss != TG_LOSS_CE && opts.loss != TG_LOSS_MSE) {
        tg_fail(TG_ERR_ARG, "tg_forum50_new: unknown loss kind %d", (int)opts.loss);
        return NULL;
    }
    opts.channels = C;
    opts.layers = L;
    char name[64];
    snprintf(name, sizeof name, "forum50-%s-%s", opts.separable ? "separable" : "dense",
             opts.loss == TG_LOSS_CE ? "ce" : "mse");
    tg_model *m = tg_model_alloc(name, device, forum50_forward);
    if (!m) return NULL;
    int nconv = opts.separable ? 2 + 2 * (L - 2) : L;
    forum50 *f = calloc(1, sizeof *f + (size_t)nconv * sizeof f->conv[0]);
    if (!f) {
        tg_fail(TG_ERR_NOMEM, "tg_forum50_new: out of memory");
        tg_model_free(m);
        return NULL;
    }
    m->impl = f;
    f->opts = opts;
    f->nconv = nconv;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    bool ok = add_conv(m, &rng, &f->conv[0], "layer1", FORUM_IN, C, 3, 1, opts.bn, opts.relu);
    int k = 1;
    char prefix[48];
    for (int layer = 2; ok && layer < L; layer++) {
        if (opts.separable) {
            snprintf(prefix, sizeof prefix, "layer%d.dw", layer);
            ok = add_conv(m, &rng, &f->conv[k++], prefix, C, C, 3, C, opts.bn, opts.relu);
            snprintf(prefix, sizeof prefix, "layer%d.pw", layer);
            ok = ok && add_conv(m, &rng, &f->conv[k++], prefix, C, C, 1, 1, opts.bn,
                                opts.relu);
        } else {
            snprintf(prefix, sizeof prefix, "layer%d", layer);
            ok = add_conv(m, &rng, &f->conv[k++], prefix, C, C, 3, 1, opts.bn, opts.relu);
        }
    }
    snprintf(prefix, sizeof prefix, "layer%d", L);
    int out = opts.loss == TG_LOSS_CE ? FORUM_CLASSES : FORUM_MSE_OUT;
    ok = ok && add_conv(m, &rng, &f->conv[k++], prefix, C, out, 3, 1, false, false);
    if (!ok) {
        tg_model_free(m);
        return NULL;
    }
    TG_ASSERT(k == nconv);
    return m;
}
