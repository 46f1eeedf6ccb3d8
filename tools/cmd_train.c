/*
 * tools/cmd_train.c — `tapegrad train mnist`: train the MLP or the small CNN on MNIST
 * with seeded shuffled minibatches, held-out evaluation every epoch, a CSV log, JSON
 * lines, a progress bar on a terminal, and checkpoints that resume bit-exactly.
 *
 * The loop is the one a user would write with the library (see examples/mnist.c); what
 * this file adds is the bookkeeping around it. A checkpoint is written at the end of
 * every epoch: the model, the optimizer (kind, steps, lr, state), the epoch, the step,
 * the loop's RNG, the loader's position and the convolution algorithms --conv auto chose.
 * `--resume` restores all of it, so a run resumed from a checkpoint ends byte-identical to
 * the run that wrote it had it gone on (on the CPU; with --conv gemm, `--epochs 2` in one
 * go and `--epochs 1` then `--resume ... --epochs 2` also match, timings deciding nothing).
 *
 * `--dist` (under mpirun) trains data-parallel (core/dist.c): --batch stays the global
 * batch, each rank takes its slice of every batch and the gradients are all-reduced, so
 * the same command line means the same training at any world size. Rank 0 alone prints,
 * logs and writes checkpoints (after a barrier); every rank loads them. Loss and accuracy
 * are summed over ranks before they are printed; every rank evaluates the held-out set.
 */
#include "commands.h"
#include "common.h"

#include <tapegrad.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct train_args {
    const char *model, *optim, *device, *data, *checkpoint, *resume, *log, *init_from, *conv;
    int epochs, batch, threads;
    double lr, lr_decay;
    uint64_t seed;
    bool json, quiet, check_finite, dist;
} train_args;

/* The learning-rate floor: lr * G^e never goes below it, so a long run with a decay
 * cannot underflow the rate to 0 (float32) and fail mid-training. */
#define TRAIN_LR_FLOOR 1e-12

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad train mnist [options]\n"
        "       tapegrad train words [options]   (a tiny GPT; see train words --help)\n\n"
        "Trains a small model on MNIST and reports held-out accuracy after every epoch.\n\n"
        "  --model mlp|cnn        mlp: 784-128-10; cnn: two 3x3 conv + pool blocks (16, 32\n"
        "                         channels), fc 128, fc 10 (default cnn)\n"
        "  --epochs N             total epochs; a resumed run continues up to N (default 3)\n"
        "  --batch N              minibatch size (default 64)\n"
        "  --optim sgd|adam       sgd: momentum 0.9, lr 0.05; adam: lr 3e-3 (default adam)\n"
        "  --lr X                 the first epoch's learning rate\n"
        "  --lr-decay G           multiply the rate by G after every epoch: epoch e (from 0)\n"
        "                         uses max(lr * G^e, 1e-12) (default 0.3; 1 keeps it\n"
        "                         constant; the floor keeps long runs from underflowing)\n"
        "  --seed N               initialisation and shuffling (default 1)\n"
        "  --device cpu|cuda      (default cpu)\n"
        "  --threads N|auto       CPU threads, also OpenBLAS's (default: all cores; auto:\n"
        "                         fewer while other processes hold cores; the trained bits\n"
        "                         then vary with the load)\n"
        "  --conv gemm|winograd|auto  3x3 convs: im2col + SGEMM, Winograd F(4x4, 3x3), or\n"
        "                         per layer shape the faster of the two, timed on first use\n"
        "                         (default: auto). Checkpoints keep auto's choices and\n"
        "                         --resume reuses them; two fresh runs can choose\n"
        "                         differently: compare them bit for bit with gemm\n"
        "  --data DIR             train-/t10k- IDX files, raw or .gz (default ./data/mnist;\n"
        "                         tools/fetch_mnist.sh writes them there)\n"
        "  --checkpoint PATH      save model, optimizer and position after every epoch\n"
        "  --resume PATH          continue from a checkpoint (same --model and --optim)\n"
        "  --init-from FILE       start from the weights in a .safetensors file (PyTorch's\n"
        "                         state_dict names: conv1.weight, ...; every tensor must match)\n"
        "  --log FILE             CSV: one row per step and per epoch (appended on resume)\n"
        "  --json                 one JSON object per epoch on stdout; the rest on stderr\n"
        "  --check-finite         anomaly mode: stop at the first op whose output or\n"
        "                         gradient is NaN/Inf and name it (slower)\n"
        "  --quiet                no progress bar or per-epoch lines\n"
        "  --dist                 data parallel over the ranks of an MPI launch:\n"
        "                         mpirun -np N tapegrad train mnist --dist ... (--batch is\n"
        "                         the global batch; rank 0 prints and writes files)\n\n"
        "example: tapegrad train mnist --model cnn --epochs 3 --log run.csv\n");
}

static bool one_of(const char *v, const char *a, const char *b) {
    return v && (!strcmp(v, a) || !strcmp(v, b));
}

/* 0 ok, 2 bad arguments (message printed), 1 --help printed. */
static int parse_args(int argc, char **argv, train_args *a) {
    *a = (train_args){.model = "cnn", .optim = "adam", .device = "cpu",
                      .data = "data/mnist", .epochs = 3, .batch = 64, .seed = 1,
                      .lr_decay = 0.3, .conv = "auto"};
    if (argc < 2) {
        fprintf(stderr, "tapegrad train: which dataset? (only 'mnist'); see tapegrad train "
                "--help\n");
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 1;
    }
    if (strcmp(argv[1], "mnist") != 0) {
        fprintf(stderr, "tapegrad train: unknown dataset '%s'; 'mnist' or 'words'\n",
                argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(o, "--json")) { a->json = true; continue; }
        if (!strcmp(o, "--quiet")) { a->quiet = true; continue; }
        if (!strcmp(o, "--check-finite")) { a->check_finite = true; continue; }
        if (!strcmp(o, "--dist")) { a->dist = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "tapegrad train: option '%s' needs a value (or is unknown); see "
                    "--help\n", o);
            return 2;
        }
        const char *v = argv[++i];
        int64_t n;
        double x;
        if (!strcmp(o, "--model") && one_of(v, "mlp", "cnn")) a->model = v;
        else if (!strcmp(o, "--optim") && one_of(v, "sgd", "adam")) a->optim = v;
        else if (!strcmp(o, "--device") && one_of(v, "cpu", "cuda")) a->device = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--conv") && (!strcmp(v, "auto") || one_of(v, "gemm", "winograd")))
            a->conv = v;
        else if (!strcmp(o, "--checkpoint")) a->checkpoint = v;
        else if (!strcmp(o, "--resume")) a->resume = v;
        else if (!strcmp(o, "--init-from")) a->init_from = v;
        else if (!strcmp(o, "--log")) a->log = v;
        else if (!strcmp(o, "--epochs") && parse_int(v, &n) && n >= 1 && n <= 100000)
            a->epochs = (int)n;
        else if (!strcmp(o, "--batch") && parse_int(v, &n) && n >= 1 && n <= 65536)
            a->batch = (int)n;
        else if (!strcmp(o, "--threads") && !strcmp(v, "auto"))
            a->threads = -1;
        else if (!strcmp(o, "--threads") && parse_int(v, &n) && n >= 1 && n <= 1024)
            a->threads = (int)n;
        else if (!strcmp(o, "--seed") && parse_int(v, &n) && n >= 0) a->seed = (uint64_t)n;
        else if (!strcmp(o, "--lr") || !strcmp(o, "--lr-decay")) {
            bool is_lr = !strcmp(o, "--lr");
            double lo = is_lr ? TRAIN_LR_FLOOR : 1e-6, hi = is_lr ? 100 : 1;
            if (!parse_float(v, &x) || x < lo || x > hi) {
                fprintf(stderr, "tapegrad train: %s must be a number in [%g, %g], got '%s'\n",
                        o, lo, hi, v);
                return 2;
            }
            if (is_lr) a->lr = x;
            else a->lr_decay = x;
        } else {
            fprintf(stderr, "tapegrad train: bad option or value: %s %s; see --help\n", o, v);
            return 2;
        }
    }
    if (a->init_from && a->resume) {
        fprintf(stderr, "tapegrad train: --init-from and --resume both set the weights; "
                "give one\n");
        return 2;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Correct predictions among n rows of logits (n, classes). */
static int64_t count_correct(const float *logits, const int32_t *y, int64_t n, int classes) {
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + i * classes;
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (row[c] > row[best]) best = c;
        correct += best == y[i];
    }
    return correct;
}

/* One forward (+ backward and step when opt) on a batch; adds loss*n and correct. */
static tg_status run_batch(tg_ctx *ctx, tg_model *m, tg_optim *opt, tg_dist *d,
                           tg_tensor *x, const int32_t *y, float *logits_host,
                           double *loss_sum, int64_t *correct) {
    tg_tensor *logits = tg_model_forward(ctx, m, x, opt != NULL);
    tg_tensor *loss = tg_cross_entropy(ctx, logits, y);
    if (!loss) return tg_error();
    if (opt) {
        tg_optim_zero_grad(opt);
        if (tg_backward(ctx, loss) || tg_dist_sync_grads(d) || tg_optim_step(opt))
            return tg_error();
    }
    float l;
    if (tg_tensor_to_host(loss, &l, false) || tg_tensor_to_host(logits, logits_host, false))
        return tg_error();
    int64_t n = x->shape.dim[0];
    *loss_sum += (double)l * (double)n;
    *correct += count_correct(logits_host, y, n, (int)logits->shape.dim[1]);
    return TG_OK;
}

static tg_status evaluate(tg_ctx *ctx, tg_model *m, const tg_dataset *test, float *logits_host,
                          double *loss, double *acc) {
    tg_loader *ld = tg_loader_new(test, 500, false, 0);
    if (!ld) return tg_error();
    bool was = tg_set_grad_enabled(ctx, false);
    double loss_sum = 0;
    int64_t correct = 0;
    tg_tensor *x;
    const int32_t *y;
    tg_status st = TG_OK;
    while (st == TG_OK && tg_loader_next(ld, ctx, &x, &y)) {
        st = run_batch(ctx, m, NULL, NULL, x, y, logits_host, &loss_sum, &correct);
        tg_step_end(ctx);
    }
    if (st == TG_OK && tg_error()) st = tg_error();
    tg_set_grad_enabled(ctx, was);
    tg_loader_free(ld);
    int64_t n = tg_dataset_size(test);
    *loss = loss_sum / (double)n;
    *acc = (double)correct / (double)n;
    return st;
}

static void format_duration(double s, char *buf, size_t size) {
    long t = s < 1e7 ? (long)(s + 0.5) : 9999999;
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void progress_bar(int epoch, int epochs, int64_t done, int64_t total, double loss,
                         double acc, double rate, double eta) {
    char bar[31], eta_s[32];
    int fill = total ? (int)(30 * done / total) : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    format_duration(eta, eta_s, sizeof eta_s);
    fprintf(stderr, "\repoch %d/%d [%s] %3d%%  loss %.4f  acc %5.1f%%  %6.0f ex/s  ETA %s ",
            epoch, epochs, bar, total ? (int)(100 * done / total) : 100, loss, 100 * acc, rate,
            eta_s);
    fflush(stderr);
}

static FILE *open_log(const char *path, bool resumed) {
    struct stat st;
    bool append = resumed && stat(path, &st) == 0 && st.st_size > 0;
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) return NULL;
    if (!append)
        fprintf(f, "kind,epoch,step,examples,train_loss,train_acc,test_loss,test_acc,lr,"
                   "elapsed_s\n");
    return f;
}

static int train(const train_args *arg, tg_dist *d) {
    tg_device dev = strcmp(arg->device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA;
    tool_set_threads(arg->threads, false);
    int rank = tg_dist_rank(d), world = tg_dist_world(d);
    /* Only rank 0 talks and writes files; the others run the same loop silently. */
    train_args quiet_rank = *arg;
    if (rank != 0) {
        quiet_rank.quiet = true;
        quiet_rank.json = false;
        quiet_rank.log = NULL;
        quiet_rank.checkpoint = NULL;
    }
    const train_args *a = &quiet_rank;
    FILE *human = a->json ? stderr : stdout;
    /* A checkpoint that cannot be written is found now, not after the first epoch. */
    if (a->checkpoint && tg_checkpoint_check_writable(a->checkpoint)) {
        fprintf(stderr, "tapegrad train: %s\n", tg_error_message());
        return 1;
    }
    bool tty = !a->quiet && isatty(fileno(stderr)); /* the progress bar */
    tg_dataset *train_set = tg_mnist_load(a->data, true);
    tg_dataset *test_set = train_set ? tg_mnist_load(a->data, false) : NULL;
    tg_model *m = NULL;
    tg_optim *opt = NULL;
    tg_loader *ld = NULL;
    tg_ctx *ctx = NULL;
    FILE *log = NULL;
    float *logits_host = NULL;
    int rc = 1;
    if (!test_set) goto fail;
    if (dev == TG_DEVICE_CUDA && tg_cuda_check()) goto fail;
    bool cnn = !strcmp(a->model, "cnn");
    m = cnn ? tg_cnn_new((tg_cnn_opts){0}, dev, a->seed)
            : tg_mlp_new((tg_mlp_opts){0}, dev, a->seed);
    if (!m) goto fail;
    bool adam = !strcmp(a->optim, "adam");
    double base_lr = a->lr ? a->lr : adam ? 3e-3 : 0.05;
    float lr = (float)base_lr;
    tg_adam_opts adam_opts = tg_adam_opts_default();
    adam_opts.lr = lr;
    opt = adam ? tg_adam_new(tg_model_params(m), adam_opts)
               : tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = lr, .momentum = 0.9f});
    ld = tg_loader_new(train_set, a->batch, true, a->seed);
    ctx = tg_ctx_new(dev);
    logits_host = malloc((size_t)(a->batch > 500 ? a->batch : 500) * 10 * sizeof(float));
    if (!opt || !ld || !ctx || !logits_host) goto fail;
    tg_ctx_set_anomaly(ctx, a->check_finite);
    if (tg_ctx_set_conv_algo(ctx, conv_algo_named(a->conv))) goto fail;
    /* A world of 1 makes these no-ops. */
    if (tg_dist_broadcast_params(d, tg_model_params(m)) ||
        tg_dist_attach(d, ctx, tg_model_params(m), tg_dist_opts_default()) ||
        tg_loader_shard(ld, rank, world))
        goto fail;
    tg_train_state state = {.data = tg_loader_position(ld), .world_size = world,
                            .batch = world > 1 ? a->batch : 0};
    tg_rng_seed(&state.rng, a->seed);
    if (a->init_from) {
        tg_safetensors_report rep;
        if (tg_safetensors_load(a->init_from, tg_model_params(m), NULL, &rep)) goto fail;
        fprintf(human, "initialised from %s: %d tensors%s%s%s\n", a->init_from, rep.loaded,
                rep.ignored ? " (num_batches_tracked skipped)" : "",
                rep.model[0] ? ", saved from model " : "", rep.model);
    }
    if (a->resume) {
        /* The file's conv choices go into the context before the first step, so every
         * layer shape runs the algorithm the interrupted run used. */
        if (tg_checkpoint_load(a->resume, m, opt, &state) || tg_loader_seek(ld, state.data) ||
            tg_ctx_set_conv_choices(ctx, state.conv_choices, state.nconv_choices))
            goto fail;
        state.world_size = world;
        state.batch = world > 1 ? a->batch : 0;
        if (rank == 0)
            fprintf(human, "resumed from %s: epoch %lld, step %lld, lr %g\n", a->resume,
                    (long long)state.epoch, (long long)state.step, (double)tg_optim_lr(opt));
        if (rank == 0 && cnn && !strcmp(a->conv, "auto") && dev == TG_DEVICE_CPU) {
            int wino = 0;
            for (int i = 0; i < state.nconv_choices; i++) wino += state.conv_choices[i].winograd;
            if (state.nconv_choices > 0)
                fprintf(human, "conv auto: the checkpoint's choices restored for %d layer "
                        "shape%s (%d Winograd, %d im2col + SGEMM)\n", (int)state.nconv_choices,
                        state.nconv_choices == 1 ? "" : "s", wino,
                        (int)state.nconv_choices - wino);
            else
                fprintf(human, "note: the checkpoint holds no --conv auto choices (written "
                        "with --conv gemm or winograd, or by an older build): auto times the "
                        "convolutions afresh, so this run may round differently from one "
                        "that went on with the writer's algorithm\n");
        }
        if (rank == 0 && state.epoch >= a->epochs)
            fprintf(human, "nothing to do: the checkpoint has %lld epochs, --epochs is %d\n",
                    (long long)state.epoch, a->epochs);
    }
    if (a->log && !(log = open_log(a->log, a->resume != NULL))) {
        fprintf(stderr, "tapegrad train: cannot write the log '%s'\n", a->log);
        goto fail;
    }
    if (!a->quiet)
        fprintf(human, "%s, %lld parameters, %s lr %g (x %g per epoch), batch %d, %lld "
                "train / %lld held-out examples, %d thread%s, conv %s\n", tg_model_name(m),
                (long long)tg_params_numel(tg_model_params(m)), a->optim, base_lr,
                a->lr_decay, a->batch, (long long)tg_dataset_size(train_set),
                (long long)tg_dataset_size(test_set), tg_get_num_threads(),
                tg_get_num_threads() == 1 ? "" : "s", a->conv);
    if (!a->quiet && world > 1)
        fprintf(human, "data parallel: %d ranks, global batch %d, about %d per rank\n", world,
                a->batch, a->batch / world);
    double t_start = now_s();
    int64_t n_train = tg_dataset_size(train_set);
    while (state.epoch < a->epochs) {
        int epoch = (int)state.epoch + 1;
        /* The schedule depends on the epoch alone, so a resumed run follows it exactly. */
        double lr_e = base_lr * pow(a->lr_decay, (double)state.epoch);
        tg_optim_set_lr(opt, (float)(lr_e > TRAIN_LR_FLOOR ? lr_e : TRAIN_LR_FLOOR));
        double t0 = now_s(), loss_sum = 0, last_draw = 0;
        int64_t correct = 0, seen = 0, start = tg_loader_position(ld).cursor;
        tg_tensor *x;
        const int32_t *y;
        while (tg_loader_next(ld, ctx, &x, &y)) {
            double bl = loss_sum;
            int64_t bc = correct, b, local;
            tg_loader_last_batch(ld, &local, &b);
            if (tg_dist_set_batch(d, local, b) ||
                run_batch(ctx, m, opt, d, x, y, logits_host, &loss_sum, &correct))
                goto fail;
            tg_step_end(ctx);
            if (world > 1 && arg->log) {
                /* The step's loss and accuracy over all ranks, for rank 0's log. */
                double step[2] = {loss_sum - bl, (double)(correct - bc)};
                if (tg_dist_allreduce_sum(d, step, 2)) goto fail;
                loss_sum = bl + step[0];
                correct = bc + (int64_t)step[1];
            }
            seen += b;
            state.step = tg_optim_steps(opt);
            double now = now_s();
            if (log)
                fprintf(log, "step,%d,%lld,%lld,%.6f,%.6f,,,%g,%.3f\n", epoch,
                        (long long)state.step, (long long)(start + seen),
                        (loss_sum - bl) / (double)b, (double)(correct - bc) / (double)b,
                        (double)tg_optim_lr(opt), now - t_start);
            if (tty && (now - last_draw > 0.1 || start + seen == n_train)) {
                double rate = (double)seen / (now - t0);
                progress_bar(epoch, a->epochs, start + seen, n_train, loss_sum / (double)seen,
                             (double)correct / (double)seen, rate,
                             (double)(n_train - start - seen) / rate);
                last_draw = now;
            }
        }
        if (tg_error()) goto fail;
        if (world > 1 && !arg->log) {
            double totals[2] = {loss_sum, (double)correct};
            if (tg_dist_allreduce_sum(d, totals, 2)) goto fail;
            loss_sum = totals[0];
            correct = (int64_t)totals[1];
        }
        double train_seconds = now_s() - t0, test_loss = NAN, test_acc = NAN;
        if (evaluate(ctx, m, test_set, logits_host, &test_loss, &test_acc)) goto fail;
        double seconds = now_s() - t0;
        double train_loss = seen ? loss_sum / (double)seen : NAN;
        double train_acc = seen ? (double)correct / (double)seen : NAN;
        state.epoch = epoch;
        state.data = tg_loader_position(ld);
        if (tty) fprintf(stderr, "\r%*s\r", 110, "");
        if (!a->quiet)
            fprintf(human, "epoch %d/%d  train loss %.4f acc %.2f%%  held-out loss %.4f acc "
                    "%.2f%%  %.1f s (%.0f ex/s)\n", epoch, a->epochs, train_loss,
                    100 * train_acc, test_loss, 100 * test_acc, seconds,
                    (double)seen / train_seconds);
        if (a->json)
            printf("{\"epoch\": %d, \"step\": %lld, \"model\": \"%s\", \"optim\": \"%s\", "
                   "\"lr\": %g, \"train_loss\": %.6f, \"train_acc\": %.6f, \"test_loss\": "
                   "%.6f, \"test_acc\": %.6f, \"seconds\": %.3f, \"examples_per_s\": %.1f}\n",
                   epoch, (long long)state.step, a->model, a->optim, (double)tg_optim_lr(opt),
                   train_loss, train_acc, test_loss, test_acc, seconds,
                   (double)seen / train_seconds);
        fflush(stdout);
        if (log) {
            fprintf(log, "epoch,%d,%lld,%lld,%.6f,%.6f,%.6f,%.6f,%g,%.3f\n", epoch,
                    (long long)state.step, (long long)n_train, train_loss, train_acc,
                    test_loss, test_acc, (double)tg_optim_lr(opt), now_s() - t_start);
            fflush(log);
        }
        /* Every rank has finished the epoch (and holds the same state) before rank 0
         * writes; the others go on at once. */
        if (tg_dist_barrier(d)) goto fail;
        state.nconv_choices =
            tg_ctx_conv_choices(ctx, state.conv_choices, TG_CONV_CHOICES_MAX);
        if (a->checkpoint && tg_checkpoint_save(a->checkpoint, m, opt, &state)) goto fail;
    }
    rc = 0;
    goto done;
fail:
    if (tty) fputc('\n', stderr);
    if (tg_error() && world > 1)
        fprintf(stderr, "tapegrad train (rank %d): %s\n", rank, tg_error_message());
    else if (tg_error())
        fprintf(stderr, "tapegrad train: %s\n", tg_error_message());
done:
    if (log && fclose(log) != 0 && rc == 0) {
        fprintf(stderr, "tapegrad train: writing the log '%s' failed\n", a->log);
        rc = 1;
    }
    free(logits_host);
    tg_ctx_free(ctx);
    tg_loader_free(ld);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_dataset_free(test_set);
    tg_dataset_free(train_set);
    return rc;
}

int cmd_train(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "words")) return cmd_train_words(argc - 1, argv + 1);
    train_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (a.dist && dist_refused("tapegrad train")) return 2;
    tg_dist *d = NULL;
    if (a.dist) {
        /* Before anything touches the GPU: init picks this rank's device. */
        d = tg_dist_init(strcmp(a.device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA);
        if (!d) {
            fprintf(stderr, "tapegrad train: %s\n", tg_error_message());
            return 1;
        }
    }
    rc = train(&a, d);
    tg_dist_free(d);
    return rc;
}
