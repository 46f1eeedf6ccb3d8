/*
 * tools/cmd_forum.c — `tapegrad forum`: the forum thread's first experiment (DESIGN §7).
 * Trains the 50-layer dense or depthwise-separable stack for a few timed steps and prints
 * the thread's own lines (Trainable Parameters, Time cost) with what the thread lacked:
 * synchronised median/min/max times, achieved GFLOP/s, memory, and this machine's
 * roofline lower bound, all from ceilings measured in the same run. `--compare` runs
 * dense and separable side by side; `--profile` shows where the time goes, op by op;
 * `--plot` draws the median times as a bar chart (gnuplot). `--dist` (under mpirun) trains
 * data-parallel: --batch is the global batch, each rank runs its slice, rank 0 reports
 * (its own times) and adds the communication figures (bytes, buckets, exposed wait).
 */
#include "commands.h"
#include "gnuplot.h"
#include "profile.h"

#include <stdlib.h>
#include <string.h>

static const char *const models[] = {"dense", "separable", NULL};
static const char *const losses[] = {"ce", "mse", NULL};
static const char *const optims[] = {"sgd", "adam", "all", NULL};
static const char *const devices[] = {"cpu", "cuda", NULL};

typedef struct forum_args {
    const char *model, *loss, *optim, *device, *conv, *plot;
    int size, channels, batch, layers, steps, warmup, threads;
    uint64_t seed;
    bool relu, bn, profile, json, compare, check_finite, dist, no_sync_bn;
} forum_args;

/* One configuration to run and what it measured. */
typedef struct forum_run {
    bool separable;
    bool auto_row;          /* --compare's extra dense run under --conv auto */
    const char *optim, *conv;
    char label[32];
    int64_t params;
    bench_result res;
} forum_run;

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad forum [options]\n\n"
        "The forum's 50-layer experiment: conv(3->C) + 48 dense 3x3 convs or depthwise 3x3 +\n"
        "pointwise 1x1 pairs + conv(C->10) with per-pixel cross entropy (or conv(C->3) + MSE),\n"
        "trained for a few timed steps after warm-up. Times are synchronised; the machine's\n"
        "SGEMM and copy ceilings are measured in the same run for the roofline bound.\n\n"
        "  --model dense|separable   middle layers (default dense)\n"
        "  --loss ce|mse             head and loss (default ce)\n"
        "  --optim sgd|adam|all      optimizer; all runs both (default sgd: lr 1e-3,\n"
        "                            momentum 0.9; adam: lr 1e-3)\n"
        "  --compare                 run dense and separable side by side (with --conv gemm\n"
        "                            on the CPU also dense under --conv auto: dense-auto)\n"
        "  --size N                  input N x N (default 256)\n"
        "  --channels C              width of the middle layers (default 256)\n"
        "  --batch N                 batch size (default 1)\n"
        "  --layers L                conv layers counting the first and last (default 50)\n"
        "  --relu, --bn              ReLU / batchnorm after every conv but the last\n"
        "  --device cpu|cuda         (default cpu)\n"
        "  --conv gemm|winograd|auto 3x3 stride-1 convs: im2col + SGEMM (default: the\n"
        "                            forum's FLOP comparison), Winograd F(4x4, 3x3) (CPU),\n"
        "                            or auto: per layer shape the faster of the two\n"
        "  --steps N, --warmup N     timed and untimed steps (default 5 and 1)\n"
        "  --threads N|auto          CPU threads, also OpenBLAS's (default auto: all cores,\n"
        "                            fewer while other processes hold them)\n"
        "  --seed N                  parameters, input and targets (default 0)\n"
        "  --profile                 per-op table: time, FLOPs, bytes, bound, share of peak\n"
        "  --json                    one JSON object per result on stdout; the human\n"
        "                            output goes to stderr\n"
        "  --check-finite            anomaly mode: stop at the first op whose output or\n"
        "                            gradient is NaN/Inf and name it (slower)\n"
        "  --plot FILE               bar chart of the forward, forward+backward and step\n"
        "                            medians per run, as a PNG (needs gnuplot)\n"
        "  --dist                    data parallel under mpirun (mpirun -np N tapegrad forum\n"
        "                            --dist ...): --batch is the global batch\n"
        "  --no-sync-bn              with --dist and --bn: each rank normalises with its\n"
        "                            own batch statistics (default: over all ranks)\n\n"
        "example: tapegrad forum --compare --size 32 --steps 3\n");
}

static tg_status run_one(const forum_args *a, forum_run *run, const float *input,
                         const int32_t *labels, const float *target, tg_dist *d) {
    tg_device dev = strcmp(a->device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA;
    tg_loss_kind loss = strcmp(a->loss, "ce") ? TG_LOSS_MSE : TG_LOSS_CE;
    tg_forum50_opts mo = {.separable = run->separable, .loss = loss, .channels = a->channels,
                          .layers = a->layers, .relu = a->relu, .bn = a->bn};
    tg_model *m = tg_forum50_new(mo, dev, a->seed);
    if (!m) return tg_error();
    tg_params *ps = tg_model_params(m);
    run->params = tg_params_numel(ps);
    tg_optim *opt = strcmp(run->optim, "adam")
                        ? tg_sgd_new(ps, (tg_sgd_opts){.lr = 1e-3f, .momentum = 0.9f})
                        : tg_adam_new(ps, tg_adam_opts_default()); /* lr 1e-3 */
    tg_status st = TG_OK;
    /* Data parallel: this rank's rows [B r / N, B (r + 1) / N) of the global batch. */
    int N = tg_dist_world(d), r = tg_dist_rank(d);
    int first = a->batch * r / N, b = a->batch * (r + 1) / N - first;
    int64_t hw = (int64_t)a->size * a->size;
    if (!opt || tg_dist_broadcast_params(d, ps)) {
        st = tg_error();
    } else {
        int outc = loss == TG_LOSS_CE ? 10 : 3;
        input += first * 3 * hw;
        target += first * 3 * hw;
        labels += first * hw;
        bench_spec spec = {
            .label = run->label, .model = m, .device = dev, .opt = opt, .train = true,
            .in_shape = tg_shape4(b, 3, a->size, a->size), .input = input,
            .loss = loss, .labels = labels, .target = target,
            .target_shape = tg_shape4(b, outc, a->size, a->size),
            .dist = d, .global_batch = a->batch, .no_sync_bn = a->no_sync_bn,
            .steps = a->steps, .warmup = a->warmup, .profile = a->profile,
            .conv_algo = conv_algo_named(run->conv), .check_finite = a->check_finite};
        st = bench_run(&spec, &run->res);
    }
    tg_optim_free(opt);
    tg_model_free(m);
    return st;
}

/* The dense run (auto_row: the --conv auto one) with the same optimizer as separable
 * run i; -1 if none ran. */
static int dense_of(const forum_run *runs, int nruns, int i, bool auto_row) {
    for (int j = 0; j < nruns; j++)
        if (!runs[j].separable && runs[j].auto_row == auto_row &&
            !strcmp(runs[j].optim, runs[i].optim))
            return j;
    return -1;
}

/* How many conv records of a run --conv auto sent to Winograd and to im2col + SGEMM. */
static void auto_counts(const bench_result *r, int *wino, int *gemm) {
    *wino = *gemm = 0;
    for (int k = 0; k < r->tape_len && r->rows; k++) {
        if (!r->rows[k].op || strncmp(r->rows[k].detail, "auto: ", 6)) continue;
        if (!strncmp(r->rows[k].detail + 6, "winograd", 8)) ++*wino;
        else ++*gemm;
    }
}

static void print_compare(const forum_run *runs, int nruns, const peaks *pk, FILE *f) {
    fprintf(f, "\n%-28s", "");
    for (int i = 0; i < nruns; i++) fprintf(f, " %16s", runs[i].label);
    fprintf(f, "\n%-28s", "Trainable Parameters");
    for (int i = 0; i < nruns; i++) fprintf(f, " %16lld", (long long)runs[i].params);
#define ROW(title, fmt, ...)                                                                  \
    do {                                                                                     \
        fprintf(f, "\n%-28s", title);                                                        \
        for (int i = 0; i < nruns; i++) {                                                    \
            const bench_result *r = &runs[i].res;                                            \
            (void)r;                                                                         \
            fprintf(f, " " fmt, __VA_ARGS__);                                                \
        }                                                                                    \
    } while (0)
    ROW("Time cost (step median, s)", "%16.4f", r->step.median);
    ROW("  step min / max (s)", "%7.3f /%7.3f", r->step.min, r->step.max);
    ROW("  forward (median, s)", "%16.4f", r->fwd.median);
    ROW("  forward+backward (s)", "%16.4f", r->fwdbwd.median);
    ROW("work per step (GFLOP)", "%16.1f", r->flops * 1e-9);
    ROW("bytes moved (GB)", "%16.2f", r->bytes * 1e-9);
    ROW("achieved GFLOP/s", "%16.1f", r->flops / r->step.median * 1e-9);
    ROW("roofline bound (s)", "%16.4f", r->roofline_s);
    ROW("measured / bound", "%15.2fx", r->step.median / r->roofline_s);
    ROW("peak memory (MiB)", "%16.1f",
        ((double)r->arena_peak + (double)r->store_bytes) / (1024.0 * 1024.0));
#undef ROW
    fprintf(f, "\n\n");
    /* each separable run against the dense run with the same optimizer */
    for (int i = 0; i < nruns; i++) {
        int j = runs[i].separable ? dense_of(runs, nruns, i, false) : -1;
        if (j < 0) continue;
        const bench_result *d = &runs[j].res, *s = &runs[i].res;
        fprintf(f, "separable/dense (%s): measured speedup %.2fx   FLOP ratio %.2fx   "
                "roofline ratio %.2fx\n", runs[i].optim, d->step.median / s->step.median,
                d->flops / s->flops, d->roofline_s / s->roofline_s);
        int k = dense_of(runs, nruns, i, true), nw, ng;
        if (k < 0) continue;
        const bench_result *da = &runs[k].res;
        auto_counts(da, &nw, &ng);
        fprintf(f, "separable/dense-auto (%s): measured speedup %.2fx (dense with --conv auto: "
                "Winograd for %d of its %d 3x3 layers, im2col + SGEMM for %d)\n",
                runs[i].optim, da->step.median / s->step.median, nw, nw + ng, ng);
    }
    for (int i = 0; i < nruns; i++)
        if (runs[i].auto_row) {
            fprintf(f, "(dense-auto: the same dense net with each layer on the faster of im2col "
                    "+ SGEMM and Winograd. Dense 3x3 convolutions have an algorithm that needs "
                    "4x fewer multiplies than the FLOP count above; against it, separable's "
                    "real advantage is the dense-auto speedup, not the FLOP ratio.)\n");
            break;
        }
    fprintf(f, "(speedup = dense step / separable step; FLOP ratio = the most separable could "
            "gain; roofline ratio = what this machine's SGEMM and copy ceilings allow. "
            "Ceilings: SGEMM %.1f GFLOP/s, copy %.1f GB/s.)\n", pk->sgemm_gflops, pk->copy_gbps);
}

/* What plot_script draws. */
typedef struct forum_plot {
    const forum_args *a;
    const forum_run *runs;
    int nruns;
} forum_plot;

/* Clustered bars: one group per run, bars for the forward, forward+backward and step
 * medians, each labelled with its value (seconds with SI prefixes: 134 µs); the speedups
 * and FLOP ratios in the title. */
static void plot_script(FILE *f, const void *data) {
    const forum_plot *p = data;
    const forum_args *a = p->a;
    char line[160];
    fputs("set terminal pngcairo size 1000,600 font 'sans,10' noenhanced\n"
          "set encoding utf8\nset micro\nset output ", f);
    gnuplot_quote(f, a->plot);
    snprintf(line, sizeof line, "tapegrad forum: input %dx3x%dx%d, %d channels, %d layers, "
             "loss %s, %s, %d threads", a->batch, a->size, a->size, a->channels, a->layers,
             a->loss, a->device, tg_get_num_threads());
    fputs("\nset title ", f);
    gnuplot_quote(f, line);
    for (int i = 0; i < p->nruns; i++) {
        int j = p->runs[i].separable ? dense_of(p->runs, p->nruns, i, false) : -1;
        if (j < 0) continue;
        const bench_result *d = &p->runs[j].res, *s = &p->runs[i].res;
        snprintf(line, sizeof line, "separable/dense (%s): measured speedup %.2fx, FLOP "
                 "ratio %.2fx", p->runs[i].optim, d->step.median / s->step.median,
                 d->flops / s->flops);
        fputs(" . \"\\n\" . ", f);
        gnuplot_quote(f, line);
    }
    fprintf(f, "\nset style data histograms\nset style histogram clustered gap 1\n"
            "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset grid ytics\n"
            "set key top left\nset ylabel 'median time'\nset format y '%%.1s %%cs'\n"
            "set yrange [0:*]\nset offsets 0, 0, graph 0.1, 0\nset xrange [-0.5:%d.5]\n"
            "$runs << EOD\n", p->nruns - 1);
    for (int i = 0; i < p->nruns; i++) {
        const bench_result *r = &p->runs[i].res;
        fprintf(f, "\"%s\" %.6g %.6g %.6g\n", p->runs[i].label, r->fwd.median,
                r->fwdbwd.median, r->step.median);
    }
    fputs("EOD\nplot $runs using 2:xtic(1) lc rgb '#9ecae1' title 'forward', '' using 3 "
          "lc rgb '#3182bd' title 'forward+backward', '' using 4 lc rgb '#08519c' title "
          "'full step'", f);
    /* the values over the bars: 3 bars + a gap of 1 per group put them 0.25 apart */
    for (int c = 0; c < 3; c++)
        fprintf(f, ", '' using ($0%+.2f):%d:(gprintf('%%.1s %%cs', $%d)) with labels "
                "font ',9' offset 0,0.6 notitle", (c - 1) * 0.25, c + 2, c + 2);
    fputs("\nset output\n", f);
}

static void print_json(const forum_args *a, const forum_run *run, const peaks *pk) {
    json_writer w;
    json_begin(&w, stdout);
    json_str(&w, "command", "forum");
    json_str(&w, "model", run->separable ? "separable" : "dense");
    json_str(&w, "loss", a->loss);
    json_str(&w, "optim", run->optim);
    json_int(&w, "size", a->size);
    json_int(&w, "channels", a->channels);
    json_int(&w, "batch", a->batch);
    json_int(&w, "layers", a->layers);
    json_bool(&w, "relu", a->relu);
    json_bool(&w, "bn", a->bn);
    json_str(&w, "device", a->device);
    json_str(&w, "conv", run->conv);
    json_int(&w, "threads", tg_get_num_threads());
    json_int(&w, "steps", a->steps);
    json_int(&w, "warmup", a->warmup);
    json_int(&w, "seed", (int64_t)a->seed);
    bench_json_fields(&w, &run->res, pk, run->params, true);
    json_end(&w);
}

int cmd_forum(int argc, char **argv) {
    forum_args a = {.model = "dense", .loss = "ce", .optim = "sgd", .device = "cpu", .conv = "gemm",
                    .size = 256, .channels = 256, .batch = 1, .layers = 50, .steps = 5,
                    .warmup = 1};
    const tool_opt opts[] = {
        {"--model", OPT_CHOICE, &a.model, 0, 0, models},
        {"--loss", OPT_CHOICE, &a.loss, 0, 0, losses},
        {"--optim", OPT_CHOICE, &a.optim, 0, 0, optims},
        {"--device", OPT_CHOICE, &a.device, 0, 0, devices},
        {"--conv", OPT_CHOICE, &a.conv, 0, 0, conv_algo_choices},
        {"--size", OPT_INT, &a.size, 1, 16384, NULL},
        {"--channels", OPT_INT, &a.channels, 1, 65536, NULL},
        {"--batch", OPT_INT, &a.batch, 1, 1 << 20, NULL},
        {"--layers", OPT_INT, &a.layers, 2, 10000, NULL},
        {"--steps", OPT_INT, &a.steps, 1, 1 << 20, NULL},
        {"--warmup", OPT_INT, &a.warmup, 0, 1 << 20, NULL},
        {"--threads", OPT_THREADS, &a.threads, 0, 0, NULL},
        {"--seed", OPT_UINT64, &a.seed, 0, 0, NULL},
        {"--relu", OPT_FLAG, &a.relu, 0, 0, NULL},
        {"--bn", OPT_FLAG, &a.bn, 0, 0, NULL},
        {"--profile", OPT_FLAG, &a.profile, 0, 0, NULL},
        {"--json", OPT_FLAG, &a.json, 0, 0, NULL},
        {"--compare", OPT_FLAG, &a.compare, 0, 0, NULL},
        {"--check-finite", OPT_FLAG, &a.check_finite, 0, 0, NULL},
        {"--plot", OPT_STR, &a.plot, 0, 0, NULL},
        {"--dist", OPT_FLAG, &a.dist, 0, 0, NULL},
        {"--no-sync-bn", OPT_FLAG, &a.no_sync_bn, 0, 0, NULL},
    };
    bool help;
    int rc = parse_options("forum", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &help);
    if (rc) return rc;
    if (help) {
        usage(stdout);
        return 0;
    }
    tool_set_threads(a.threads, true);
    tg_device dev = strcmp(a.device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA;
    if (a.dist && dist_refused("tapegrad forum")) return 2;
    /* Before anything touches the GPU: init picks this rank's device. */
    tg_dist *d = a.dist ? tg_dist_init(dev) : NULL;
    if (a.dist && !d) {
        fprintf(stderr, "tapegrad forum: %s\n", tg_error_message());
        return 1;
    }
    if (tg_dist_world(d) > a.batch) {
        fprintf(stderr, "tapegrad forum: --batch %d is smaller than the %d ranks; every rank "
                "needs at least one example\n", a.batch, tg_dist_world(d));
        tg_dist_free(d);
        return 2;
    }
    if (tg_dist_rank(d) != 0) { /* only rank 0 prints and writes */
        a.json = false;
        a.plot = NULL;
        a.profile = false;
        if (!freopen("/dev/null", "w", stdout)) return 1;
    }
    if (dev == TG_DEVICE_CUDA && tg_cuda_check() != TG_OK) {
        fprintf(stderr, "tapegrad forum: %s\n", tg_error_message());
        tg_dist_free(d);
        return 1;
    }
    if (a.plot && !gnuplot_ready("forum", a.plot)) {
        tg_dist_free(d);
        return 1;
    }
    FILE *out = a.json ? stderr : stdout;

    /* The runs: the model(s) asked for, each with the optimizer(s) asked for. */
    forum_run runs[6];
    int nruns = 0;
    for (int s = 0; s < 2; s++) {
        bool separable = s == 1;
        if (!a.compare && separable != !strcmp(a.model, "separable")) continue;
        for (int o = 0; o < 2; o++) {
            const char *optim = o ? "adam" : "sgd";
            if (strcmp(a.optim, "all") && strcmp(a.optim, optim)) continue;
            forum_run *r = &runs[nruns++];
            memset(r, 0, sizeof *r);
            r->separable = separable;
            r->optim = optim;
            r->conv = a.conv;
            snprintf(r->label, sizeof r->label, "%s/%s", separable ? "separable" : "dense",
                     optim);
        }
    }
    /* --compare on the GEMM path also runs dense under --conv auto (CPU, one process):
     * the FLOP-ratio comparison stays as the forum posed it, and the row beside it says
     * what separable gains against the fastest dense convolution. */
    for (int i = 0, n = nruns; a.compare && !a.dist && dev == TG_DEVICE_CPU &&
                               !strcmp(a.conv, "gemm") && i < n; i++) {
        if (runs[i].separable) continue;
        forum_run *r = &runs[nruns++];
        *r = (forum_run){.auto_row = true, .optim = runs[i].optim, .conv = "auto"};
        snprintf(r->label, sizeof r->label, "dense-auto/%s", r->optim);
    }

    /* Memory first: every step holds each conv's output (and its ReLU / batchnorm
     * results) until tg_step_end, plus the input, targets and four copies of the
     * parameters (values, gradients, optimizer state). A lower bound, refused at once
     * rather than after minutes of paging. */
    {
        double C = a.channels ? a.channels : 256, L = a.layers ? a.layers : 50;
        double plane = (double)a.batch * a.size * a.size;
        double nconv = !strcmp(a.model, "separable") || a.compare ? 2 * (L - 2) + 2 : L;
        double per_conv = 1 + (a.relu ? 1 : 0) + (a.bn ? 2 : 0);
        double act = 4.0 * plane * C * nconv * per_conv;
        double params = 4.0 * 4 * (L * 9 * C * C);
        char what[96];
        snprintf(what, sizeof what, "a training step at batch %d, %dx%d, %d channels",
                 a.batch, a.size, a.size, (int)C);
        if (check_memory("forum", what, act + params + 4.0 * plane * 7)) return 1;
    }

    /* Input, class targets and MSE target: made once, deterministic from the seed. */
    int64_t hw = (int64_t)a.size * a.size, nin = (int64_t)a.batch * 3 * hw;
    float *input = malloc((size_t)nin * sizeof *input);
    float *target = malloc((size_t)nin * sizeof *target);
    int32_t *labels = malloc((size_t)(a.batch * hw) * sizeof *labels);
    if (!input || !target || !labels) {
        fprintf(stderr, "tapegrad forum: out of memory for the input\n");
        rc = 1;
        goto done;
    }
    tg_rng rng;
    tg_rng_seed(&rng, a.seed ^ 0x5eedULL);
    tg_rng_fill_normal(&rng, input, nin, 0.0f, 1.0f);
    tg_rng_fill_normal(&rng, target, nin, 0.0f, 1.0f);
    for (int64_t i = 0; i < a.batch * hw; i++) labels[i] = (int32_t)tg_rng_below(&rng, 10);

    fprintf(out, "tapegrad forum: loss %s, input %dx3x%dx%d, %d channels, %d layers%s%s, "
            "%s, conv %s, %d threads, %d timed steps after %d warm-up\n", a.loss, a.batch,
            a.size, a.size, a.channels, a.layers, a.relu ? ", relu" : "", a.bn ? ", bn" : "",
            a.device, a.conv, tg_get_num_threads(), a.steps, a.warmup);
    busy_probe whole_probe; /* the whole command, when the timed steps are too short */
    busy_begin(&whole_probe);
    /* Ceilings before the runs; bench_settle_ceilings measures them again after. */
    peaks pk;
    peak_gemm shapes[PEAKS_MAX_SHAPES];
    int nshapes = peaks_forum_shapes(shapes, a.size, a.channels, a.batch, 16384);
    if (peaks_measure(dev, shapes, nshapes, 0.25, &pk) != TG_OK) {
        fprintf(stderr, "tapegrad forum: measuring the ceilings: %s\n", tg_error_message());
        rc = 1;
        goto done;
    }
    peak_rss_reset(); /* the measuring buffers are not the runs' memory */
    for (int i = 0; i < nruns; i++) {
        if (run_one(&a, &runs[i], input, labels, target, d) != TG_OK) {
            fprintf(stderr, "tapegrad forum: %s: %s\n", runs[i].label, tg_error_message());
            rc = 1;
            goto done;
        }
    }

    bench_result *results[6];
    const char *run_labels[6];
    busy_report busy = {.what = "the timed steps"}, whole = {.what = "the run"};
    for (int i = 0; i < nruns; i++) {
        results[i] = &runs[i].res;
        run_labels[i] = runs[i].label;
        busy_add(&busy, &runs[i].res.busy); /* all runs' timed steps together */
    }
    if (!bench_settle_ceilings(results, run_labels, nruns, &pk, shapes, nshapes, stderr)) {
        rc = 1;
        goto done;
    }
    busy_end(&whole_probe, &whole);
    const busy_report *judged = busy_pick(&busy, &whole);
    for (int i = 0; i < nruns; i++) runs[i].res.busy = *judged; /* what --json reports */
    peaks_print(&pk, out);
    busy_print(judged, out);
    for (int i = 0; i < nruns; i++) {
        if (nruns == 1 || a.profile) {
            fprintf(out, "\n== %s\n", runs[i].label);
            bench_print_summary(&runs[i].res, &pk, runs[i].params, true, out);
        }
        if (a.profile) bench_print_profile(&runs[i].res, &pk, out);
    }
    if (nruns > 1) print_compare(runs, nruns, &pk, out);
    for (int i = 0; i < nruns && d; i++) {
        const tg_dist_stats *ds = &runs[i].res.dist;
        int64_t n = ds->steps ? ds->steps : 1;
        /* On CUDA the wait happens on the GPU: the host figures are only queueing time. */
        bool gpu = !strcmp(a.device, "cuda");
        fprintf(out, "data parallel (%s): %d ranks, global batch %d (%d on rank 0); per step "
                "%.2f MB of gradients all-reduced in %d buckets (%.1f started during "
                "backward); %s %.4f s, %s %.4f s per step (rank 0)\n",
                runs[i].label, tg_dist_world(d), a.batch, a.batch / tg_dist_world(d),
                ds->bytes / n * 1e-6, ds->buckets, (double)ds->early_buckets / n,
                gpu ? "host time queueing the wait (the GPU waits)" : "exposed wait",
                ds->wait_seconds / n, gpu ? "queueing buckets" : "polling",
                ds->launch_seconds / n);
    }
    if (a.json)
        for (int i = 0; i < nruns; i++) print_json(&a, &runs[i], &pk);
    if (a.plot) {
        forum_plot fp = {&a, runs, nruns};
        rc = gnuplot_render("forum", a.plot, plot_script, &fp);
        if (!rc) fprintf(out, "wrote %s\n", a.plot);
    }
done:
    for (int i = 0; i < nruns; i++) bench_result_free(&runs[i].res);
    free(input);
    free(target);
    free(labels);
    tg_dist_free(d);
    return rc;
}
