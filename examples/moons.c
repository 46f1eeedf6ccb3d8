/*
 * examples/moons.c — train a 2-16-16-2 MLP on "two moons" (two interleaved half circles,
 * with noise) and print its accuracy. The whole training loop of tapegrad in one page:
 * build a model, an optimizer and a context; per step: forward, loss, zero_grad,
 * backward, step, step_end.   Run: ./build/examples/moons
 */
#include <tapegrad.h>

#include <math.h>
#include <stdio.h>

enum { N = 512 };

int main(int argc, char **argv) {
    (void)argc;
    tg_runtime_defaults(argv); /* sleeping OpenMP waits, fitting BLAS kernels: may re-exec */
    static float x[N * 2];
    static int32_t y[N];
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) { /* moon 0: upper arc; moon 1: lower arc, shifted */
        double t = 3.14159265358979 * tg_rng_uniform(&rng);
        y[i] = i % 2;
        x[2 * i] = (float)(y[i] ? 1 - cos(t) : cos(t)) + 0.1f * (float)tg_rng_normal(&rng);
        x[2 * i + 1] = (float)(y[i] ? 0.5 - sin(t) : sin(t)) + 0.1f * (float)tg_rng_normal(&rng);
    }
    tg_dataset *ds = tg_dataset_new(N, tg_shape1(2), x, y, 2);
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 2, .hidden = {16, 16},
                                           .num_classes = 2}, TG_DEVICE_CPU, 42);
    tg_adam_opts ao = tg_adam_opts_default(); /* PyTorch's defaults, then our changes */
    ao.lr = 0.01;
    tg_optim *opt = tg_adam_new(tg_model_params(m), ao);
    tg_loader *ld = tg_loader_new(ds, 32, true, 7);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!ds || !m || !opt || !ld || !ctx) goto fail;
    for (int epoch = 1; epoch <= 60; epoch++) {
        tg_tensor *xb;
        const int32_t *yb;
        double loss_sum = 0;
        while (tg_loader_next(ld, ctx, &xb, &yb)) {
            tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, xb, true), yb);
            tg_optim_zero_grad(opt);
            if (tg_backward(ctx, loss) != TG_OK || tg_optim_step(opt) != TG_OK) goto fail;
            loss_sum += loss->data[0] * (double)xb->shape.dim[0];
            tg_step_end(ctx);
        }
        if (epoch % 20 == 0) printf("epoch %2d  loss %.4f\n", epoch, loss_sum / N);
    }
    /* Accuracy on the training points, without recording a tape. */
    tg_set_grad_enabled(ctx, false);
    tg_tensor *logits = tg_model_forward(ctx, m, tg_tensor_from(ctx, tg_shape2(N, 2), x), false);
    if (!logits) goto fail;
    int correct = 0;
    for (int i = 0; i < N; i++) correct += (logits->data[2 * i + 1] > logits->data[2 * i]) == y[i];
    printf("accuracy %.1f%%\n", 100.0 * correct / N);
    tg_ctx_free(ctx);
    tg_loader_free(ld);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_dataset_free(ds);
    return correct >= 0.95 * N ? 0 : 1; /* the test suite runs this: it must learn */
fail:
    fprintf(stderr, "moons: %s\n", tg_error_message());
    return 1;
}
