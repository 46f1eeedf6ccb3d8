/*
 * tools/tapegrad.c — the `tapegrad` command: dispatches to one subcommand.
 */
#include "commands.h"

#include <tapegrad.h>

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"forum", cmd_forum, "the forum's 50-layer dense vs separable experiment (timed)"},
    {"mobilenet", cmd_mobilenet, "MobileNet v1 with groups = C, 1 or 4 (timed)"},
    {"peaks", cmd_peaks, "this machine's ceilings: SGEMM GFLOP/s and copy GB/s"},
    {"train", cmd_train, "train a model on MNIST (mlp or cnn) with checkpoints and logs"},
    {"plot", cmd_plot, "plot a training log (CSV) to PNG"},
    {"tape", cmd_tape, "show one training step's tape: table, Graphviz, explain"},
    {"export", cmd_export, "a checkpoint's weights as a .safetensors file (for PyTorch)"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "tapegrad %s — a small, fast, readable training framework\n\n"
               "usage: tapegrad <command> [options]   (tapegrad <command> --help)\n\n"
               "commands:\n", TG_VERSION_STRING);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tapegrad %s\n", TG_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tapegrad: unknown command '%s' (commands:", argv[1]);
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(stderr, " %s", commands[i].name);
    fprintf(stderr, "; see tapegrad --help)\n");
    return 2;
}
