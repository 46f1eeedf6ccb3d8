/*
 * examples/mnist.c — train the small CNN on MNIST and report held-out accuracy.
 *
 *   tools/fetch_mnist.sh                       # writes ./data/mnist (8,000 + 2,000 digits)
 *   ./build/examples/mnist [DATA_DIR] [EPOCHS] # defaults: data/mnist, 3
 *
 * The same loop as `tapegrad train mnist --model cnn`, without the bookkeeping (logs,
 * checkpoints, progress bar): load IDX files, shuffle minibatches, train, evaluate.
 */
#include <tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

/* Fraction of `ds` the model classifies correctly (no tape recorded). */
static double accuracy(tg_ctx *ctx, tg_model *m, const tg_dataset *ds) {
    tg_loader *ld = tg_loader_new(ds, 500, false, 0);
    bool was = tg_set_grad_enabled(ctx, false);
    tg_tensor *x;
    const int32_t *y;
    int64_t correct = 0;
    while (ld && tg_loader_next(ld, ctx, &x, &y)) {
        tg_tensor *logits = tg_model_forward(ctx, m, x, false);
        for (int64_t i = 0; logits && i < x->shape.dim[0]; i++) {
            const float *row = logits->data + 10 * i;
            int best = 0;
            for (int c = 1; c < 10; c++) best = row[c] > row[best] ? c : best;
            correct += best == y[i];
        }
        tg_step_end(ctx);
    }
    tg_set_grad_enabled(ctx, was);
    tg_loader_free(ld);
    return (double)correct / (double)tg_dataset_size(ds);
}

int main(int argc, char **argv) {
    tg_runtime_defaults(argv); /* sleeping OpenMP waits, fitting BLAS kernels: may re-exec */
    const char *dir = argc > 1 ? argv[1] : "data/mnist";
    int epochs = argc > 2 ? atoi(argv[2]) : 3;
    tg_dataset *train = tg_mnist_load(dir, true), *test = tg_mnist_load(dir, false);
    tg_model *m = tg_cnn_new((tg_cnn_opts){0}, TG_DEVICE_CPU, 1);
    tg_adam_opts ao = tg_adam_opts_default(); /* PyTorch's defaults, then our changes */
    ao.lr = 3e-3;
    tg_optim *opt = m ? tg_adam_new(tg_model_params(m), ao) : NULL;
    tg_loader *ld = train ? tg_loader_new(train, 64, true, 1) : NULL;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!test || !opt || !ld || !ctx) goto fail;
    /* A new context runs each conv layer shape on the faster of im2col + SGEMM and
     * Winograd, timed on its first use (TG_CONV_ALGO_AUTO, the default). To compare two
     * runs bit for bit, pin one: tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM). */
    double acc = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        tg_tensor *x;
        const int32_t *y;
        while (tg_loader_next(ld, ctx, &x, &y)) {
            tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, x, true), y);
            tg_optim_zero_grad(opt);
            if (tg_backward(ctx, loss) != TG_OK || tg_optim_step(opt) != TG_OK) goto fail;
            tg_step_end(ctx);
        }
        tg_optim_set_lr(opt, tg_optim_lr(opt) * 0.3f); /* decay the rate every epoch */
        acc = accuracy(ctx, m, test);
        printf("epoch %d  held-out accuracy %.2f%%\n", epoch, 100 * acc);
    }
    tg_ctx_free(ctx);
    tg_loader_free(ld);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_dataset_free(train);
    tg_dataset_free(test);
    return acc >= 0.8 ? 0 : 1; /* the test suite runs this on 1,000 digits: it must learn */
fail:
    fprintf(stderr, "mnist: %s\n", tg_error_message());
    return 1;
}
