/*
 * examples/gpt.c — a tiny GPT that learns to spell English words, trained from C.
 *
 * A character-level transformer (tg_gpt_new: token + position embedding, pre-layernorm
 * blocks with causal multi-head self-attention and a GELU MLP) reads windows of a stream
 * ".word.word.word." and learns to predict each next letter. AdamW with weight decay, a
 * cosine learning-rate schedule with warm-up, gradient clipping and dropout; then the
 * held-out loss next to a bigram-count baseline, and new words sampled from the model.
 *
 * Run: ./build/examples/gpt                      the built-in sample of 999 words
 *      ./build/examples/gpt /usr/share/dict/words 3000
 * (`tapegrad train words` is the full command: checkpoints, resume, --json.)
 */
#include <tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 32 };

int main(int argc, char **argv) {
    tg_runtime_defaults(argv); /* sleeping OpenMP waits, fitting BLAS kernels: may re-exec */
    const char *path = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
    int steps = argc > 2 ? atoi(argv[2]) : 300;
    tg_words *words = tg_words_load(path);
    tg_gpt_opts gopts = tg_gpt_opts_default();
    tg_model *m = tg_gpt_new(gopts, TG_DEVICE_CPU, 1337);
    tg_adam_opts aopts = tg_adamw_opts_default();
    aopts.lr = 3e-3f;
    aopts.beta2 = 0.99f;
    aopts.weight_decay = 0.1f;
    tg_optim *opt = m ? tg_adamw_new(tg_model_params(m), aopts) : NULL;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_lr_schedule sched = tg_lr_cosine(aopts.lr, aopts.lr / 10, steps / 10, steps);
    int32_t *x = malloc(sizeof(int32_t) * BATCH * (size_t)gopts.block_size);
    int32_t *y = malloc(sizeof(int32_t) * BATCH * (size_t)gopts.block_size);
    if (!words || !opt || !ctx || !x || !y || steps < 1) goto fail;
    printf("%lld training words, %lld held out; %s, %lld parameters\n",
           (long long)tg_words_count(words, TG_WORDS_TRAIN),
           (long long)tg_words_count(words, TG_WORDS_HELD_OUT), tg_model_name(m),
           (long long)tg_params_numel(tg_model_params(m)));

    tg_rng data_rng;
    tg_rng_seed(&data_rng, 1);
    tg_ctx_seed(ctx, 2); /* dropout masks */
    double first = 0, recent = 0;
    for (int step = 0; step < steps; step++) {
        tg_optim_set_lr(opt, tg_lr_at(&sched, step));
        if (tg_words_batch(words, TG_WORDS_TRAIN, BATCH, gopts.block_size, &data_rng, x, y))
            goto fail;
        tg_tensor *loss = tg_gpt_loss(ctx, m, x, y, BATCH, gopts.block_size, true);
        float norm;
        tg_optim_zero_grad(opt);
        if (tg_backward(ctx, loss) != TG_OK ||
            tg_clip_grad_norm(tg_model_params(m), 1.0f, &norm) != TG_OK ||
            tg_optim_step(opt) != TG_OK)
            goto fail;
        float l = loss->data[0];
        if (step == 0) first = l;
        recent = step < 20 ? l : 0.95 * recent + 0.05 * l;
        if (step % 100 == 0 || step == steps - 1)
            printf("step %4d  loss %.4f  (smoothed %.4f)  |grad| %.3f  lr %.2e\n", step, l,
                   recent, (double)norm, (double)tg_optim_lr(opt));
        tg_step_end(ctx);
    }

    int64_t len;
    const int32_t *held = tg_words_stream(words, TG_WORDS_HELD_OUT, &len);
    double held_loss = tg_gpt_eval(ctx, m, held, len, 64);
    double bigram = tg_words_bigram_loss(words);
    printf("held-out loss %.4f nats/token, bigram baseline %.4f\n", held_loss, bigram);

    tg_rng sample_rng;
    tg_rng_seed(&sample_rng, 3);
    printf("samples:");
    for (int i = 0; i < 12; i++) {
        char word[64];
        if (tg_gpt_sample(ctx, m, &sample_rng, 1.0f, word, sizeof word) < 0) goto fail;
        int where = tg_words_find(words, word);
        printf(" %s%s", word, where == TG_WORDS_TRAIN ? "*" : where == TG_WORDS_HELD_OUT ? "+" : "");
    }
    printf("\n(* a training word, + a held-out word)\n");
    free(x);
    free(y);
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_words_free(words);
    /* Learnt something: the smoothed loss fell well below the first one. */
    return recent < 0.8 * first ? 0 : 1;
fail:
    fprintf(stderr, "gpt: %s\n", tg_error() ? tg_error_message() : "bad arguments");
    return 1;
}
