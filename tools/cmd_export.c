/*
 * tools/cmd_export.c — `tapegrad export CHECKPOINT -o WEIGHTS.safetensors`: the weights of
 * a checkpoint as a safetensors file that PyTorch (and anything else) can read.
 *
 * A checkpoint names its model (tg_model_name: "mlp-784-128-10", "cnn-1x28x28-16-32-128-10"
 * as `tapegrad train mnist` writes them), so the model is rebuilt from that name, its
 * parameters and buffers are loaded (the optimizer state and train state are skipped),
 * and the store is saved with tg_safetensors_save (F32, the model name in __metadata__).
 */
#include "commands.h"

#include <tapegrad.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad export CHECKPOINT -o WEIGHTS.safetensors\n\n"
        "Writes the parameters and buffers of a checkpoint made by `tapegrad train mnist`\n"
        "(the MLP or the CNN) as a safetensors file: float32, PyTorch's names and layouts,\n"
        "so `torch.nn.Module.load_state_dict` takes it (see docs/WEIGHTS.md, \"Moving weights\n"
        "between tapegrad and PyTorch\").\n\n"
        "  -o, --output FILE   the safetensors file to write (atomically)\n");
}

/* Up to max dash-separated positive integers from s (after the model prefix); the count,
 * or -1 on anything else. */
static int parse_dims(const char *s, int *out, int max) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 24 || n == max) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == '-') s++;
        else if (*s) return -1;
    }
    return n;
}

/* The model a checkpoint's name describes, built on the CPU (values to be loaded). */
static tg_model *model_from_name(const char *name) {
    tg_model *m = NULL;
    int d[8];
    if (!strncmp(name, "mlp-", 4)) {
        int n = parse_dims(name + 4, d, 6);
        if (n >= 3) {
            tg_mlp_opts o = {.in_features = d[0], .num_classes = d[n - 1]};
            for (int i = 1; i < n - 1; i++) o.hidden[i - 1] = d[i];
            m = tg_mlp_new(o, TG_DEVICE_CPU, 0);
        }
    } else if (!strncmp(name, "cnn-", 4)) {
        int c, h, w, used = 0;
        if (sscanf(name + 4, "%dx%dx%d%n", &c, &h, &w, &used) == 3 && name[4 + used] == '-' &&
            parse_dims(name + 5 + used, d, 4) == 4)
            m = tg_cnn_new((tg_cnn_opts){.in_channels = c, .height = h, .width = w,
                                         .channels1 = d[0], .channels2 = d[1],
                                         .hidden = d[2], .num_classes = d[3]},
                           TG_DEVICE_CPU, 0);
    }
    if (m && strcmp(tg_model_name(m), name) != 0) { /* the name must round-trip */
        tg_model_free(m);
        m = NULL;
    }
    return m;
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tapegrad export: option '%s' needs a file name\n", argv[i]);
                return 2;
            }
            out = argv[++i];
        } else if (argv[i][0] == '-' || ckpt) {
            fprintf(stderr, "tapegrad export: unexpected argument '%s'; see --help\n", argv[i]);
            return 2;
        } else {
            ckpt = argv[i];
        }
    }
    if (!ckpt || !out) {
        fprintf(stderr, "tapegrad export: needs a CHECKPOINT and -o FILE; see --help\n");
        return 2;
    }
    char name[256];
    if (tg_checkpoint_model_name(ckpt, name, sizeof name)) {
        fprintf(stderr, "tapegrad export: %s\n", tg_error_message());
        return 1;
    }
    tg_model *m = model_from_name(name);
    if (!m) {
        fprintf(stderr, "tapegrad export: '%s' holds model '%s', which this command cannot "
                "rebuild (it knows the mlp-... and cnn-... models of `tapegrad train`)%s%s\n",
                ckpt, name, tg_error() ? ": " : "", tg_error() ? tg_error_message() : "");
        return 1;
    }
    int rc = 0;
    if (tg_checkpoint_load(ckpt, m, NULL, NULL) ||
        tg_safetensors_save(out, tg_model_params(m), tg_model_name(m))) {
        fprintf(stderr, "tapegrad export: %s\n", tg_error_message());
        rc = 1;
    } else {
        tg_params *ps = tg_model_params(m);
        printf("wrote %s: model %s, %d tensors, %lld parameters + %lld buffer values (F32)\n",
               out, name, tg_params_count(ps), (long long)tg_params_numel(ps),
               (long long)tg_params_buffer_numel(ps));
    }
    tg_model_free(m);
    return rc;
}
