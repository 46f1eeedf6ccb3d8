/*
 * tools/tapegrad.c — the `tapegrad` command: dispatches to one subcommand, after giving
 * OpenMP a wait policy that survives a busy machine.
 *
 * THE WAIT POLICY. Between two parallel regions an idle OpenMP thread spins before it
 * sleeps: libgomp's default is 300,000 spins (OMP_WAIT_POLICY unset), about a millisecond
 * of a core. On an idle machine that makes back-to-back regions cheap. When another
 * process holds a core, the spinning thread takes the time slice the thread with the work
 * needs, every region's barrier waits for the scheduler, and a small CNN's epoch ran 14-30x
 * slower (issue 14). A waiting thread that sleeps at once (OMP_WAIT_POLICY=passive,
 * GOMP_SPINCOUNT=0: block on a futex, no spin) gives the core away at once. Session 4
 * chose a spin of 10,000 (~0.5 ms) to keep back-to-back regions cheap on an idle
 * machine. Session 6 measured the spin count on both of the `train` workloads, idle and
 * with one busy loop per core, in interleaved runs (bench/RESULTS.md): idle, no spin
 * count made a difference (small-CNN epoch 0.231 s with 0 spins, 0.224 s with 10,000,
 * medians of 10; tiny GPT and forum steps tied too). Loaded, the tiny GPT (many short
 * regions) ran 9.3 ms per step with 0 spins, 15.7 with 1,000, 12.7 with 3,000 and 21.4
 * with 10,000 (medians of 5), while the small CNN (fewer, longer regions) preferred a
 * spin: 0.76 s per epoch with 0, 0.66 with 1,000, 0.71 with 3,000, 0.63 with 10,000
 * (medians of 15). No spin costs the CNN 20% and saves the GPT 57%: 0 is the default.
 * (OMP_DYNAMIC=true,
 * which shrinks teams under load, deadlocks OpenBLAS's OpenMP build, which assumes the
 * threads it asked for.)
 *
 * libgomp (and OpenBLAS's OpenMP build, which shares its threads) reads OMP_WAIT_POLICY
 * and GOMP_SPINCOUNT once, when the program is loaded, so setting them in main() is too
 * late: main() calls tg_runtime_defaults (core/threads.c, public so that users' own
 * programs get the same), which sets OMP_WAIT_POLICY=passive and GOMP_SPINCOUNT=0 when the
 * user set neither and re-executes the program once (execv of /proc/self/exe, same
 * arguments), marking the environment with TAPEGRAD_OMP_DEFAULTS=applied so it happens
 * only once. The user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins (nothing is
 * changed), and TAPEGRAD_OMP_DEFAULTS=off (any value) keeps libgomp's built-in defaults.
 * Without /proc the program runs on with libgomp's defaults.
 *
 * THE BLAS KERNELS. The same re-execution sets OPENBLAS_CORETYPE when OpenBLAS chose
 * kernels older than the CPU (tg_blas_core_better: a CPU newer than the OpenBLAS release
 * gets its SSE3 "Prescott" kernels; on an Intel AVX-512 VM of this project SGEMM ran 5-6x
 * slower). A user's own OPENBLAS_CORETYPE wins; TAPEGRAD_BLAS_FIXED=off (any value) keeps
 * OpenBLAS's own choice, as TAPEGRAD_OMP_DEFAULTS=off keeps libgomp's defaults.
 *
 * THE THREAD COUNT. Sleeping waits are not enough when other processes hold the cores: a
 * team of two still waits at each barrier for its second thread's time slice (2.4x the
 * idle time with one busy loop per core). `--threads auto` (the default of the timing
 * commands forum and mobilenet) turns on adaptive mode (tg_set_threads_adaptive,
 * core/threads.c): the team shrinks to the cores other processes leave free and grows back
 * when they go. Training keeps all cores by default, because the trained bits depend on
 * the thread count (the dense convolution's column tiles and the SGEMM slices are cut per
 * thread; checkpoint resume is byte-identical for a fixed count); `train --threads auto`
 * trades that for speed on a shared machine.
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
    tg_runtime_defaults(argv); /* returns here once the settings are in force */
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
