/*
 * tests/install/prog.c — a program built against an INSTALLED tapegrad, the way a user
 * builds one (tests/install_check.sh compiles it with pkg-config, shared and static).
 * Only <tapegrad.h> is included. It fits y = 3x - 1 with a 1 -> 8 -> 1 MLP and Adam,
 * takes one cross entropy with an ignored target, and exits 0 only if the loss fell.
 */
#include <tapegrad.h>

#include <math.h>
#include <stdio.h>

int main(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w1 = tg_params_add(ps, "fc1.weight", tg_shape2(8, 1));
    tg_tensor *b1 = tg_params_add(ps, "fc1.bias", tg_shape1(8));
    tg_tensor *w2 = tg_params_add(ps, "fc2.weight", tg_shape2(1, 8));
    tg_tensor *b2 = tg_params_add(ps, "fc2.bias", tg_shape1(1));
    if (tg_init_linear(&rng, w1, b1) || tg_init_linear(&rng, w2, b2)) goto fail;
    tg_adam_opts opts = tg_adam_opts_default();
    opts.lr = 0.05;
    tg_optim *opt = tg_adam_new(ps, opts);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!opt || !ctx) goto fail;
    float xs[32], ys[32], first = 0, last = 0;
    for (int i = 0; i < 32; i++) {
        xs[i] = i / 16.0f - 1;
        ys[i] = 3 * xs[i] - 1;
    }
    for (int step = 0; step < 200; step++) {
        tg_tensor *x = tg_tensor_from(ctx, tg_shape2(32, 1), xs);
        tg_tensor *y = tg_tensor_from(ctx, tg_shape2(32, 1), ys);
        tg_tensor *h = tg_relu(ctx, tg_linear(ctx, x, w1, b1));
        tg_tensor *loss = tg_mse_loss(ctx, tg_linear(ctx, h, w2, b2), y);
        tg_optim_zero_grad(opt);
        if (tg_backward(ctx, loss) || tg_optim_step(opt)) goto fail;
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        tg_step_end(ctx);
    }
    float logits_host[6] = {1, 2, 3, 1e5f, 1e5f + 1, 1e5f - 1};
    int32_t target[2] = {2, -100}; /* the second ignored (PyTorch's default ignore_index) */
    tg_tensor *ce = tg_cross_entropy(ctx, tg_tensor_from(ctx, tg_shape2(2, 3), logits_host),
                                     target);
    if (!ce) goto fail;
    double want = log(exp(-2.0) + exp(-1.0) + 1.0);
    printf("tapegrad from an installed prefix: mse %.4g -> %.4g, cross entropy %.7f (want "
           "%.7f)\n", first, last, ce->data[0], want);
    int ok = last < 0.05f * first && fabs(ce->data[0] - want) < 1e-6;
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_params_free(ps);
    return ok ? 0 : 1;
fail:
    fprintf(stderr, "%s\n", tg_error_message());
    return 1;
}
