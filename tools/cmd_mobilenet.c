/*
 * tools/cmd_mobilenet.c — `tapegrad mobilenet`: the forum thread's second experiment.
 * MobileNet v1 at 224x224 with the 3x3 convs of its blocks depthwise (groups = C, "dw"),
 * one group ("1") or four groups ("4"); by default the forward time at a batch size
 * (eval mode, no tape), with --train full SGD steps on cross entropy. Times are
 * synchronised, warm-up excluded, and judged against ceilings measured in the same run.
 */
#include "commands.h"
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MB_STEM 32      /* input channels of the first block: groups must divide it */
#define MB_CLASSES 1000

static const char *const devices[] = {"cpu", "cuda", NULL};

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad mobilenet [options]\n\n"
        "MobileNet v1 (conv 3->32 s2, 13 separable blocks, BN + ReLU, avg pool, linear\n"
        "1024->1000): forward time, or full training steps with --train.\n\n"
        "  --groups dw|1|4   groups of the blocks' 3x3 convs: dw = C (default), 1 or 4\n"
        "                    (any divisor of 32 is accepted)\n"
        "  --batch N         batch size (default 1)\n"
        "  --train           time full steps (zero_grad, forward, cross entropy, backward,\n"
        "                    SGD lr 1e-3 momentum 0.9) instead of eval-mode forwards\n"
        "  --size N          input N x N (default 224)\n"
        "  --device cpu|cuda (default cpu)\n"
        "  --conv gemm|winograd|auto  3x3 stride-1 dense convs (--groups 1): im2col +\n"
        "                    SGEMM, Winograd F(4x4, 3x3) (CPU), or auto (default): per\n"
        "                    layer shape the faster of the two, timed on first use\n"
        "  --steps N, --warmup N   timed and untimed passes (default 10 and 2)\n"
        "  --threads N|auto  CPU threads, also OpenBLAS's (default auto: all cores,\n"
        "                    fewer while other processes hold them)\n"
        "  --seed N          parameters and input (default 0)\n"
        "  --profile         per-op table\n"
        "  --json            one JSON object on stdout; the human output goes to stderr\n"
        "  --check-finite    anomaly mode: stop at the first op whose output or gradient\n"
        "                    is NaN/Inf and name it (slower)\n");
}

int cmd_mobilenet(int argc, char **argv) {
    const char *device = "cpu", *groups_arg = "dw", *conv = "auto";
    int batch = 1, size = 224, steps = 10, warmup = 2, threads = 0;
    uint64_t seed = 0;
    bool train = false, profile = false, json = false, check_finite = false, help;
    const tool_opt opts[] = {
        {"--groups", OPT_STR, &groups_arg, 0, 0, NULL},
        {"--batch", OPT_INT, &batch, 1, 1 << 20, NULL},
        {"--size", OPT_INT, &size, 1, 16384, NULL},
        {"--device", OPT_CHOICE, &device, 0, 0, devices},
        {"--conv", OPT_CHOICE, &conv, 0, 0, conv_algo_choices},
        {"--steps", OPT_INT, &steps, 1, 1 << 20, NULL},
        {"--warmup", OPT_INT, &warmup, 0, 1 << 20, NULL},
        {"--threads", OPT_THREADS, &threads, 0, 0, NULL},
        {"--seed", OPT_UINT64, &seed, 0, 0, NULL},
        {"--train", OPT_FLAG, &train, 0, 0, NULL},
        {"--profile", OPT_FLAG, &profile, 0, 0, NULL},
        {"--json", OPT_FLAG, &json, 0, 0, NULL},
        {"--check-finite", OPT_FLAG, &check_finite, 0, 0, NULL},
    };
    int rc = parse_options("mobilenet", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                           &help);
    if (rc) return rc;
    if (help) {
        usage(stdout);
        return 0;
    }
    int groups = 0;
    if (strcmp(groups_arg, "dw")) {
        int64_t g;
        if (!parse_int(groups_arg, &g) || g < 1) {
            fprintf(stderr, "tapegrad mobilenet: unknown --groups '%s' (expected dw, 1, 4 or "
                    "another divisor of %d)\n", groups_arg, MB_STEM);
            return 2;
        }
        /* every block's input channels are multiples of 32 */
        if (g > MB_STEM || MB_STEM % g) {
            fprintf(stderr, "tapegrad mobilenet: --groups %lld does not divide the %d input "
                    "channels of the first block (use dw, 1, 4 or another divisor of %d)\n",
                    (long long)g, MB_STEM, MB_STEM);
            return 2;
        }
        groups = (int)g;
    }
    tool_set_threads(threads, true);
    tg_device dev = strcmp(device, "cuda") ? TG_DEVICE_CPU : TG_DEVICE_CUDA;
    if (dev == TG_DEVICE_CUDA && tg_cuda_check() != TG_OK) {
        fprintf(stderr, "tapegrad mobilenet: %s\n", tg_error_message());
        return 1;
    }
    FILE *out = json ? stderr : stdout;

    /* Memory first: a step holds every conv, batchnorm and ReLU output until
     * tg_step_end. Sum the conv outputs of MobileNet v1 (models/mobilenet.c: a stride-2
     * stem to 32 channels, then 13 blocks of depthwise + pointwise) as a lower bound. */
    {
        static const int out_c[13] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512,
                                      1024, 1024};
        static const int stride[13] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
        double side = (size + 1) / 2, cin = MB_STEM, floats = cin * side * side;
        for (int b = 0; b < 13; b++) {
            side = stride[b] == 2 ? ceil(side / 2) : side;
            floats += cin * side * side + out_c[b] * side * side;
            cin = out_c[b];
        }
        char what[96];
        snprintf(what, sizeof what, "a %s at batch %d, %dx%d", train ? "training step" :
                 "forward", batch, size, size);
        if (check_memory("mobilenet", what, 4.0 * 3 * batch * floats * (train ? 2 : 1)))
            return 1;
    }
    int64_t nin = (int64_t)batch * 3 * size * size;
    float *input = malloc((size_t)nin * sizeof *input);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    tg_model *m = NULL;
    tg_optim *opt = NULL;
    bench_result res = {0};
    if (!input || !labels) {
        fprintf(stderr, "tapegrad mobilenet: out of memory for the input\n");
        rc = 1;
        goto done;
    }
    tg_rng rng;
    tg_rng_seed(&rng, seed ^ 0x5eedULL);
    tg_rng_fill_normal(&rng, input, nin, 0.0f, 1.0f);
    for (int i = 0; i < batch; i++) labels[i] = (int32_t)tg_rng_below(&rng, MB_CLASSES);

    m = tg_mobilenet_new((tg_mobilenet_opts){.groups = groups}, dev, seed);
    if (m && train) opt = tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = 1e-3f,
                                                                         .momentum = 0.9f});
    if (!m || (train && !opt)) {
        fprintf(stderr, "tapegrad mobilenet: %s\n", tg_error_message());
        rc = 1;
        goto done;
    }
    int64_t params = tg_params_numel(tg_model_params(m));
    char label[48];
    snprintf(label, sizeof label, "groups %s, batch %d%s", groups_arg, batch,
             train ? ", train" : "");
    fprintf(out, "tapegrad mobilenet: %s (groups %s), input %dx3x%dx%d, %s, conv %s, %d "
            "threads, %s, %d timed after %d warm-up\n", tg_model_name(m), groups_arg, batch,
            size, size, device, conv, tg_get_num_threads(),
            train ? "training steps" : "eval-mode forwards", steps, warmup);
    bench_spec spec = {.label = label, .model = m, .device = dev, .opt = opt, .train = train,
                       .in_shape = tg_shape4(batch, 3, size, size), .input = input,
                       .loss = TG_LOSS_CE, .labels = labels, .steps = steps, .warmup = warmup,
                       .profile = profile, .conv_algo = conv_algo_named(conv),
                       .check_finite = check_finite};
    /* The ceilings: the first and last pointwise GEMMs and a square one. */
    int64_t s2 = (size + 1) / 2, s32 = size / 32 > 0 ? size / 32 : 1;
    int64_t n1 = (int64_t)batch * s2 * s2, n2 = (int64_t)batch * s32 * s32;
    peak_gemm shapes[3] = {
        {.what = "pointwise block 1", .M = 64, .N = n1 < 16384 ? n1 : 16384, .K = 32},
        {.what = "pointwise block 13", .M = 1024, .N = n2 < 16384 ? n2 : 16384, .K = 1024},
        {.what = "square", .M = 1024, .N = 1024, .K = 1024},
    };
    busy_probe whole_probe; /* the whole command, when the timed steps are too short */
    busy_begin(&whole_probe);
    peaks pk;
    if (peaks_measure(dev, shapes, 3, 0.25, &pk) != TG_OK) {
        fprintf(stderr, "tapegrad mobilenet: measuring the ceilings: %s\n", tg_error_message());
        rc = 1;
        goto done;
    }
    peak_rss_reset(); /* the measuring buffers are not the run's memory */
    if (bench_run(&spec, &res) != TG_OK) {
        fprintf(stderr, "tapegrad mobilenet: %s\n", tg_error_message());
        rc = 1;
        goto done;
    }
    bench_result *all[1] = {&res};
    const char *run_labels[1] = {label};
    if (!bench_settle_ceilings(all, run_labels, 1, &pk, shapes, 3, stderr)) {
        rc = 1;
        goto done;
    }
    busy_report whole = {.what = "the run"};
    busy_end(&whole_probe, &whole);
    res.busy.what = "the timed steps";
    res.busy = *busy_pick(&res.busy, &whole);
    peaks_print(&pk, out);
    busy_print(&res.busy, out);
    fprintf(out, "\n");
    bench_print_summary(&res, &pk, params, train, out);
    if (profile) bench_print_profile(&res, &pk, out);
    if (json) {
        json_writer w;
        json_begin(&w, stdout);
        json_str(&w, "command", "mobilenet");
        json_str(&w, "model", tg_model_name(m));
        json_str(&w, "groups", groups_arg);
        json_str(&w, "loss", train ? "ce" : "none");
        json_str(&w, "optim", train ? "sgd" : "none");
        json_bool(&w, "train", train);
        json_int(&w, "size", size);
        json_int(&w, "channels", 3);
        json_int(&w, "batch", batch);
        json_str(&w, "device", device);
        json_str(&w, "conv", conv);
        json_int(&w, "threads", tg_get_num_threads());
        json_int(&w, "steps", steps);
        json_int(&w, "warmup", warmup);
        json_int(&w, "seed", (int64_t)seed);
        bench_json_fields(&w, &res, &pk, params, train);
        json_end(&w);
    }
done:
    bench_result_free(&res);
    tg_optim_free(opt);
    tg_model_free(m);
    free(input);
    free(labels);
    return rc;
}
