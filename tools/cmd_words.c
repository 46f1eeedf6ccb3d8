/*
 * tools/cmd_words.c — `tapegrad train words`: the tiny GPT (tg_gpt_new) learns to spell
 * English words from a word list (Debian's wamerican by default).
 *
 * The loop is examples/gpt.c's; this file adds the bookkeeping: evaluation of the
 * held-out loss every --eval-every steps next to the bigram baseline, JSON lines, a
 * per-step CSV, checkpoints that resume byte-identically, and samples at the end.
 *
 * Determinism: the data windows come from the loop's RNG (saved in the checkpoint's
 * train state); the dropout masks of step s come from the context's generator reseeded
 * with (seed, s) before the step, so a resumed run draws exactly the masks the
 * uninterrupted run drew. The learning rate is a function of the step alone.
 */
#include "commands.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WORDS "/usr/share/dict/words"

typedef struct words_args {
    const char *words, *checkpoint, *resume, *step_log, *lr_s, *dropout_s, *wd_s;
    const char *init_from, *init_out;
    int steps, batch, eval_every, layers, heads, embd, block, samples, threads, warmup;
    int stop_after;
    uint64_t seed;
    bool json, help, builtin;
} words_args;

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad train words [options]\n\n"
        "Trains a character-level GPT to spell English words and reports its held-out\n"
        "loss next to a bigram-count baseline, then samples new words.\n\n"
        "  --words PATH        word list, one word per line (default " DEFAULT_WORDS ",\n"
        "                      Debian package wamerican); --builtin uses the built-in\n"
        "                      sample of 999 words. Held out: words whose FNV-1a hash is\n"
        "                      0 mod 10 (about 10%%)\n"
        "  --steps N           optimizer steps in total; a resumed run continues to N\n"
        "                      (default 2000)\n"
        "  --batch N           windows per step (default 32)\n"
        "  --block N           context length T (default 16)\n"
        "  --layers N --heads N --embd N   transformer size (default 2, 4, 64)\n"
        "  --dropout X         (default 0.1)\n"
        "  --lr X              AdamW peak learning rate, cosine to lr/10 after a linear\n"
        "                      warm-up (default 3e-3)\n"
        "  --warmup N          warm-up steps (default steps/10)\n"
        "  --weight-decay X    AdamW's decoupled weight decay (default 0.1)\n"
        "  --eval-every N      held-out evaluation and checkpoint interval (default 250)\n"
        "  --stop-after N      stop after step N (evaluated and checkpointed) although the\n"
        "                      schedule runs to --steps; --resume with the same options\n"
        "                      continues exactly where it stopped\n"
        "  --samples N         words sampled at the end (default 20)\n"
        "  --seed N            initialisation, data order and dropout (default 1)\n"
        "  --threads N|auto    CPU threads, also OpenBLAS's (default: all cores; auto: fewer\n"
        "                      while other processes hold cores, bits vary with the load)\n"
        "  --checkpoint PATH   save model, optimizer and position at every evaluation\n"
        "  --resume PATH       continue from a checkpoint (same model options)\n"
        "  --step-log FILE     CSV: step, loss, lr, milliseconds (every step)\n"
        "  --init-from FILE    start from the weights of a safetensors file (names as\n"
        "                      PyTorch's state_dict of the same module; every one needed)\n"
        "  --init-out FILE     write the initial weights as safetensors before training\n"
        "                      (bench/gpt_pytorch.py starts from them)\n"
        "  --json              one JSON object per evaluation on stdout: step, train_loss,\n"
        "                      held_out_loss, bigram_loss, lr, seconds; the rest on stderr\n\n"
        "example: tapegrad train words --steps 3000 --json\n");
}

static int parse(int argc, char **argv, words_args *a) {
    *a = (words_args){.words = DEFAULT_WORDS, .steps = 2000, .batch = 32, .eval_every = 250,
                      .layers = 2, .heads = 4, .embd = 64, .block = 16, .samples = 20,
                      .warmup = -1, .seed = 1, .lr_s = "3e-3", .dropout_s = "0.1",
                      .wd_s = "0.1"};
    const tool_opt opts[] = {
        {"--words", OPT_STR, &a->words, 0, 0, NULL},
        {"--builtin", OPT_FLAG, &a->builtin, 0, 0, NULL},
        {"--steps", OPT_INT, &a->steps, 1, 100000000, NULL},
        {"--batch", OPT_INT, &a->batch, 1, 65536, NULL},
        {"--block", OPT_INT, &a->block, 1, 1024, NULL},
        {"--layers", OPT_INT, &a->layers, 1, 16, NULL},
        {"--heads", OPT_INT, &a->heads, 1, 64, NULL},
        {"--embd", OPT_INT, &a->embd, 1, 4096, NULL},
        {"--dropout", OPT_STR, &a->dropout_s, 0, 0, NULL},
        {"--lr", OPT_STR, &a->lr_s, 0, 0, NULL},
        {"--warmup", OPT_INT, &a->warmup, 0, 100000000, NULL},
        {"--weight-decay", OPT_STR, &a->wd_s, 0, 0, NULL},
        {"--eval-every", OPT_INT, &a->eval_every, 1, 100000000, NULL},
        {"--stop-after", OPT_INT, &a->stop_after, 1, 100000000, NULL},
        {"--samples", OPT_INT, &a->samples, 0, 10000, NULL},
        {"--seed", OPT_UINT64, &a->seed, 0, 0, NULL},
        {"--threads", OPT_THREADS, &a->threads, 0, 0, NULL},
        {"--checkpoint", OPT_STR, &a->checkpoint, 0, 0, NULL},
        {"--resume", OPT_STR, &a->resume, 0, 0, NULL},
        {"--step-log", OPT_STR, &a->step_log, 0, 0, NULL},
        {"--init-from", OPT_STR, &a->init_from, 0, 0, NULL},
        {"--init-out", OPT_STR, &a->init_out, 0, 0, NULL},
        {"--json", OPT_FLAG, &a->json, 0, 0, NULL},
    };
    int rc = parse_options("tapegrad train words", argc, argv, opts,
                           (int)(sizeof opts / sizeof opts[0]), &a->help);
    if (rc || a->help) return rc;
    double lr, dropout, wd;
    if (!parse_float(a->lr_s, &lr) || !(lr >= 0 && lr <= 10)) {
        fprintf(stderr, "tapegrad train words: --lr %s is not a number in [0, 10]\n", a->lr_s);
        return 2;
    }
    if (!parse_float(a->dropout_s, &dropout) || !(dropout >= 0 && dropout < 1)) {
        fprintf(stderr, "tapegrad train words: --dropout %s is not in [0, 1)\n", a->dropout_s);
        return 2;
    }
    if (!parse_float(a->wd_s, &wd) || !(wd >= 0 && wd <= 10)) {
        fprintf(stderr, "tapegrad train words: --weight-decay %s is not in [0, 10]\n", a->wd_s);
        return 2;
    }
    if (a->init_from && a->resume) {
        fprintf(stderr, "tapegrad train words: --init-from and --resume exclude each other (a "
                "checkpoint already holds the weights)\n");
        return 2;
    }
    if (a->embd % a->heads) {
        fprintf(stderr, "tapegrad train words: --embd %d is not a multiple of --heads %d\n",
                a->embd, a->heads);
        return 2;
    }
    return 0;
}

static int run(const words_args *a) {
    tool_set_threads(a->threads, false);
    FILE *human = a->json ? stderr : stdout;
    double lr, dropout, wd;
    parse_float(a->lr_s, &lr);
    parse_float(a->dropout_s, &dropout);
    parse_float(a->wd_s, &wd);
    tg_words *words = tg_words_load(a->builtin ? NULL : a->words);
    tg_gpt_opts go = tg_gpt_opts_default();
    go.block_size = a->block;
    go.n_layer = a->layers;
    go.n_head = a->heads;
    go.n_embd = a->embd;
    go.dropout = (float)dropout;
    tg_model *m = words ? tg_gpt_new(go, TG_DEVICE_CPU, a->seed) : NULL;
    tg_adam_opts ao = tg_adamw_opts_default();
    ao.lr = (float)lr;
    ao.beta2 = 0.99f;
    ao.weight_decay = (float)wd;
    tg_optim *opt = m ? tg_adamw_new(tg_model_params(m), ao) : NULL;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int64_t warmup = a->warmup >= 0 ? a->warmup : a->steps / 10;
    tg_lr_schedule sched = tg_lr_cosine((float)lr, (float)lr / 10, warmup, a->steps);
    size_t n = (size_t)a->batch * (size_t)a->block;
    int32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    FILE *log = NULL;
    int rc = 1;
    if (!words) {
        if (!a->builtin)
            fprintf(stderr, "tapegrad train words: %s\nhint: install the word list "
                    "(apt-get install wamerican), pass --words PATH, or use --builtin\n",
                    tg_error_message());
        tg_error_clear();
        goto done;
    }
    if (!opt || !ctx || !x || !y) goto fail;
    tg_train_state state = {0};
    tg_rng_seed(&state.rng, a->seed ^ 0x5eedULL);
    if (a->init_from) {
        if (tg_safetensors_load(a->init_from, tg_model_params(m), NULL, NULL) != TG_OK) goto fail;
        fprintf(human, "initial weights from %s\n", a->init_from);
    }
    if (a->init_out && !a->resume &&
        tg_safetensors_save(a->init_out, tg_model_params(m), tg_model_name(m)) != TG_OK)
        goto fail;
    if (a->resume) {
        if (tg_checkpoint_load(a->resume, m, opt, &state) != TG_OK) goto fail;
        fprintf(human, "resumed from %s at step %lld\n", a->resume, (long long)state.step);
    }
    if (a->step_log && !(log = fopen(a->step_log, a->resume ? "a" : "w"))) {
        fprintf(stderr, "tapegrad train words: cannot write '%s'\n", a->step_log);
        goto done;
    }
    if (log && !a->resume) fprintf(log, "step,loss,lr,ms\n");
    int64_t len;
    const int32_t *held = tg_words_stream(words, TG_WORDS_HELD_OUT, &len);
    double bigram = tg_words_bigram_loss(words);
    fprintf(human, "%lld training words, %lld held out; %s, %lld parameters, batch %d, "
            "AdamW lr %g (cosine, %lld warm-up steps), weight decay %g, dropout %g, %d "
            "thread%s\nbigram baseline (held out): %.4f nats/token\n",
            (long long)tg_words_count(words, TG_WORDS_TRAIN),
            (long long)tg_words_count(words, TG_WORDS_HELD_OUT), tg_model_name(m),
            (long long)tg_params_numel(tg_model_params(m)), a->batch, lr, (long long)warmup,
            wd, dropout, tg_get_num_threads(), tg_get_num_threads() == 1 ? "" : "s", bigram);
    double t_start = now_seconds(), loss_sum = 0, step_seconds = 0;
    int since = 0;
    int64_t last = a->stop_after && a->stop_after < a->steps ? a->stop_after : a->steps;
    while (state.step < last) {
        double t0 = now_seconds();
        tg_optim_set_lr(opt, tg_lr_at(&sched, state.step));
        tg_ctx_seed(ctx, a->seed * 1000003ULL + (uint64_t)state.step); /* dropout masks */
        if (tg_words_batch(words, TG_WORDS_TRAIN, a->batch, a->block, &state.rng, x, y))
            goto fail;
        tg_tensor *loss = tg_gpt_loss(ctx, m, x, y, a->batch, a->block, true);
        float norm, l;
        tg_optim_zero_grad(opt);
        if (tg_backward(ctx, loss) || tg_clip_grad_norm(tg_model_params(m), 1.0f, &norm) ||
            tg_optim_step(opt) || tg_tensor_to_host(loss, &l, false))
            goto fail;
        tg_step_end(ctx);
        double ms = 1e3 * (now_seconds() - t0);
        step_seconds += ms / 1e3;
        state.step++;
        loss_sum += l;
        since++;
        if (log) fprintf(log, "%lld,%.7g,%.7g,%.3f\n", (long long)state.step, (double)l,
                         (double)tg_optim_lr(opt), ms);
        if (state.step % a->eval_every == 0 || state.step == last) {
            double held_loss = tg_gpt_eval(ctx, m, held, len, 64);
            if (isnan(held_loss) && tg_error()) goto fail;
            double train_loss = loss_sum / since;
            fprintf(human, "step %6lld  train loss %.4f  held-out loss %.4f  (bigram %.4f)  "
                    "lr %.2e  %.2f ms/step\n", (long long)state.step, train_loss, held_loss,
                    bigram, (double)tg_optim_lr(opt), 1e3 * step_seconds / since);
            if (a->json) {
                json_writer j;
                json_begin(&j, stdout);
                json_int(&j, "step", state.step);
                json_num(&j, "train_loss", train_loss);
                json_num(&j, "held_out_loss", held_loss);
                json_num(&j, "bigram_loss", bigram);
                json_num(&j, "lr", tg_optim_lr(opt));
                json_num(&j, "step_ms", 1e3 * step_seconds / since);
                json_num(&j, "seconds", now_seconds() - t_start);
                json_end(&j);
                fflush(stdout);
            }
            loss_sum = step_seconds = 0;
            since = 0;
            if (a->checkpoint && tg_checkpoint_save(a->checkpoint, m, opt, &state)) goto fail;
        }
    }
    if (a->samples > 0 && state.step == a->steps) {
        tg_rng srng;
        tg_rng_seed(&srng, a->seed + 7);
        int real = 0;
        fprintf(human, "samples (* a training word, + a held-out word):");
        for (int i = 0; i < a->samples; i++) {
            char word[128];
            if (tg_gpt_sample(ctx, m, &srng, 1.0f, word, sizeof word) < 0) goto fail;
            int where = tg_words_find(words, word);
            real += where >= 0;
            fprintf(human, " %s%s", word, where == TG_WORDS_TRAIN ? "*"
                                          : where == TG_WORDS_HELD_OUT ? "+" : "");
        }
        fprintf(human, "\n%d of %d samples are words of the list\n", real, a->samples);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tapegrad train words: %s\n", tg_error() ? tg_error_message() : "failed");
done:
    if (log && fclose(log) != 0 && rc == 0) rc = 1;
    free(x);
    free(y);
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_words_free(words);
    return rc;
}

int cmd_train_words(int argc, char **argv) {
    words_args a;
    int rc = parse(argc, argv, &a);
    if (a.help) {
        usage(stdout);
        return 0;
    }
    return rc ? rc : run(&a);
}
