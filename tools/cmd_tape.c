/*
 * tools/cmd_tape.c — `tapegrad tape <model>`: run one training step of a small model and
 * show its tape. The table lists every recorded op in order (input and output shapes,
 * saved bytes, forward and backward time); --dot writes the graph for Graphviz;
 * --explain narrates the backward pass as it runs: for each op, in reverse, the shape and
 * L2 norm of the gradient arriving at its output and one line on what its backward
 * computes. A learner's way into "what does backward actually do".
 *
 * Models (small sizes, so a step takes milliseconds): mlp and cnn (the MNIST models, on
 * random 28x28 digits), forum50 and forum50-separable (the forum stack with 4 layers of
 * 8 channels on 16x16, per-pixel cross entropy), mobilenet (width 0.25, 10 classes,
 * 64x64).
 */
#include "commands.h"
#include "common.h"

#include <tapegrad.h>

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad tape MODEL [--dot FILE] [--explain] [--batch N] [--seed N]\n\n"
        "Runs one training step (forward, cross-entropy loss, backward) of a small model on\n"
        "random input and prints its tape: op, input -> output shapes, saved bytes, time.\n\n"
        "  MODEL        mlp | cnn | forum50 | forum50-separable | mobilenet\n"
        "  --dot FILE   also write the graph as Graphviz DOT (render: dot -Tpng FILE -o g.png)\n"
        "  --explain    narrate the backward pass op by op (gradient shape and norm)\n"
        "  --batch N    examples in the batch (default 2)\n"
        "  --seed N     parameters and input (default 0)\n\n"
        "example: tapegrad tape cnn --explain --dot cnn.dot\n");
}

typedef struct tape_model {
    tg_model *m;
    tg_shape input;
    bool per_pixel; /* forum50: targets per output pixel */
} tape_model;

static bool make_model(const char *name, int batch, uint64_t seed, tape_model *tm) {
    tg_device cpu = TG_DEVICE_CPU;
    tm->per_pixel = false;
    if (!strcmp(name, "mlp")) {
        tm->m = tg_mlp_new((tg_mlp_opts){0}, cpu, seed);
        tm->input = tg_shape4(batch, 1, 28, 28);
    } else if (!strcmp(name, "cnn")) {
        tm->m = tg_cnn_new((tg_cnn_opts){0}, cpu, seed);
        tm->input = tg_shape4(batch, 1, 28, 28);
    } else if (!strcmp(name, "forum50") || !strcmp(name, "forum50-separable")) {
        tg_forum50_opts o = {.separable = strcmp(name, "forum50") != 0, .loss = TG_LOSS_CE,
                             .channels = 8, .layers = 4, .relu = true};
        tm->m = tg_forum50_new(o, cpu, seed);
        tm->input = tg_shape4(batch, 3, 16, 16);
        tm->per_pixel = true;
    } else if (!strcmp(name, "mobilenet")) {
        tg_mobilenet_opts o = {.width = 0.25f, .num_classes = 10};
        tm->m = tg_mobilenet_new(o, cpu, seed);
        tm->input = tg_shape4(batch, 3, 64, 64);
    } else {
        return false;
    }
    return true;
}

int cmd_tape(int argc, char **argv) {
    const char *model = NULL, *dot = NULL;
    bool explain = false;
    int64_t batch = 2, seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--explain")) {
            explain = true;
        } else if (!strcmp(o, "--dot") && i + 1 < argc) {
            dot = argv[++i];
        } else if (!strcmp(o, "--batch") && i + 1 < argc && parse_int(argv[i + 1], &batch) &&
                   batch >= 1 && batch <= 1024) {
            i++;
        } else if (!strcmp(o, "--seed") && i + 1 < argc && parse_int(argv[i + 1], &seed) &&
                   seed >= 0) {
            i++;
        } else if (o[0] != '-' && !model) {
            model = o;
        } else {
            fprintf(stderr, "tapegrad tape: bad argument '%s'; see --help\n", o);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "tapegrad tape: which model? (mlp, cnn, forum50, forum50-separable, "
                "mobilenet); see --help\n");
        return 2;
    }
    tape_model tm;
    if (!make_model(model, (int)batch, (uint64_t)seed, &tm)) {
        fprintf(stderr, "tapegrad tape: unknown model '%s' (mlp, cnn, forum50, "
                "forum50-separable, mobilenet)\n", model);
        return 2;
    }
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int64_t n = tg_shape_numel(tm.input);
    float *x_host = malloc((size_t)n * sizeof *x_host);
    int32_t *target = NULL;
    int rc = 1;
    FILE *dotf = NULL;
    if (!tm.m || !ctx || !x_host) goto done;
    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed + 1);
    tg_rng_fill_uniform(&rng, x_host, n, 0.0f, 1.0f);
    tg_tensor *x = tg_tensor_from(ctx, tm.input, x_host);
    tg_tensor *logits = tg_model_forward(ctx, tm.m, x, true);
    if (!logits) goto done;
    /* One target per row of logits (per pixel for the forum stack). */
    int64_t rows = logits->numel / logits->shape.dim[1];
    target = malloc((size_t)rows * sizeof *target);
    if (!target) goto done;
    for (int64_t i = 0; i < rows; i++)
        target[i] = (int32_t)tg_rng_below(&rng, logits->shape.dim[1]);
    tg_tensor *loss = tg_cross_entropy(ctx, logits, target);
    if (!loss) goto done;
    char shape[80];
    printf("tapegrad tape: %s, input %s, one training step (forward, cross entropy, "
           "backward)\n\n", tg_model_name(tm.m), tg_shape_str(tm.input, shape, sizeof shape));
    if (explain) {
        printf("backward, op by op (gradients flow from the loss back to the input):\n");
        tg_tape_set_explain(ctx, stdout);
    }
    if (tg_backward(ctx, loss) != TG_OK) goto done;
    tg_tape_set_explain(ctx, NULL);
    if (explain) printf("\n");
    tg_tape_print(ctx, stdout);
    printf("\n%d ops on the tape, loss %.5f, step arena %.1f KiB\n", tg_tape_length(ctx),
           (double)loss->data[0], (double)tg_ctx_arena_used(ctx) / 1024.0);
    if (dot) {
        dotf = fopen(dot, "w");
        if (!dotf) {
            fprintf(stderr, "tapegrad tape: cannot write '%s'\n", dot);
            goto done;
        }
        if (tg_tape_write_dot(ctx, dotf) != TG_OK) goto done;
        if (fclose(dotf) != 0) {
            dotf = NULL;
            fprintf(stderr, "tapegrad tape: writing '%s' failed\n", dot);
            goto done;
        }
        dotf = NULL;
        printf("wrote %s (render: dot -Tpng %s -o tape.png)\n", dot, dot);
    }
    rc = 0;
done:
    if (rc && tg_error()) fprintf(stderr, "tapegrad tape: %s\n", tg_error_message());
    if (dotf) fclose(dotf);
    free(target);
    free(x_host);
    tg_ctx_free(ctx);
    tg_model_free(tm.m);
    return rc;
}
