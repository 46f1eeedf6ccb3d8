/*
 * tools/cmd_plot.c — `tapegrad plot run.csv -o run.png`: the loss and accuracy curves of
 * a training log written by `tapegrad train --log`, drawn by gnuplot (a well-kept tool;
 * Debian: gnuplot-nox), never by a hand-written rasteriser.
 *
 * The top panel shows the per-step training loss (thin) with the per-epoch training and
 * held-out losses (points); the bottom one the per-epoch training and held-out accuracy.
 * Both share the x axis: optimizer steps. Running gnuplot and checking its PNG: gnuplot.c.
 */
#include "commands.h"
#include "gnuplot.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad plot LOG.csv -o OUT.png [--title TEXT]\n\n"
        "Draws the loss and accuracy curves of a `tapegrad train --log` CSV with gnuplot\n"
        "(Debian: apt-get install gnuplot-nox).\n\n"
        "example: tapegrad train mnist --log run.csv && tapegrad plot run.csv -o run.png\n");
}

/* Checks the log's header (the columns this command reads) and finds the last step. */
static bool check_log(const char *csv, long *last_step) {
    FILE *f = fopen(csv, "r");
    if (!f) {
        fprintf(stderr, "tapegrad plot: cannot open '%s': %s\n", csv, strerror(errno));
        return false;
    }
    char line[512];
    bool ok = fgets(line, sizeof line, f) &&
              !strncmp(line, "kind,epoch,step,examples,train_loss,train_acc,test_loss,"
                             "test_acc", 64);
    int rows = 0;
    *last_step = 1;
    while (ok && fgets(line, sizeof line, f)) {
        rows += !strncmp(line, "epoch,", 6);
        long epoch, step;
        char kind[8];
        if (sscanf(line, "%7[a-z],%ld,%ld,", kind, &epoch, &step) == 3 && step > *last_step)
            *last_step = step;
    }
    fclose(f);
    if (!ok) {
        fprintf(stderr, "tapegrad plot: '%s' is not a `tapegrad train --log` CSV (its first "
                "line should start with kind,epoch,step,examples,train_loss,...)\n", csv);
        return false;
    }
    if (rows == 0) {
        fprintf(stderr, "tapegrad plot: '%s' has no epoch rows yet; train for at least one "
                "epoch\n", csv);
        return false;
    }
    return true;
}

/* What plot_script draws. */
typedef struct plot_job {
    const char *csv, *png, *title;
    long last_step;
} plot_job;

static void plot_script(FILE *f, const void *data) {
    const plot_job *job = data;
    const char *csv = job->csv, *png = job->png, *title = job->title;
    long last_step = job->last_step;
    fputs("set terminal pngcairo size 900,700 font 'sans,10'\nset output ", f);
    gnuplot_quote(f, png);
    /* Both panels on one x range, so steps line up. */
    fprintf(f, "\nset xrange [0:%ld]\nset lmargin 10\nset rmargin 4", last_step);
    fputs("\nset datafile separator ','\nset key top right\nset grid\n"
          "set multiplot layout 2,1 title ", f);
    gnuplot_quote(f, title);
    fputs("\nset ylabel 'cross-entropy loss'\nset format x ''\n"
          "plot ", f);
    gnuplot_quote(f, csv);
    fputs(" every ::1 using (strcol(1) eq 'step' ? $3 : NaN):5 with lines lw 1 lc rgb "
          "'#9ecae1' title 'train (step)', '' every ::1 using (strcol(1) eq 'epoch' ? $3 : "
          "NaN):5 with linespoints pt 7 lw 2 lc rgb '#08519c' title 'train (epoch)', '' "
          "every ::1 using (strcol(1) eq 'epoch' ? $3 : NaN):7 with linespoints pt 5 lw 2 lc "
          "rgb '#e6550d' title 'held-out'\n"
          "set format x '%g'\nset xlabel 'optimizer step'\nset ylabel 'accuracy (%)'\n"
          "set key bottom right\nplot ", f);
    gnuplot_quote(f, csv);
    fputs(" every ::1 using (strcol(1) eq 'epoch' ? $3 : NaN):(100*$6) with linespoints pt 7 "
          "lw 2 lc rgb '#08519c' title 'train', '' every ::1 using (strcol(1) eq 'epoch' ? "
          "$3 : NaN):(100*$8) with linespoints pt 5 lw 2 lc rgb '#e6550d' title 'held-out'\n"
          "unset multiplot\nset output\n", f);
}

int cmd_plot(int argc, char **argv) {
    const char *csv = NULL, *png = NULL, *title = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
            png = argv[++i];
        } else if (!strcmp(argv[i], "--title") && i + 1 < argc) {
            title = argv[++i];
            /* The title goes into a gnuplot script: a control character (a newline ends
             * the quoted string) would turn it into gnuplot commands and errors. */
            size_t len = strlen(title);
            bool ctrl = false;
            for (size_t k = 0; k < len; k++) ctrl |= (unsigned char)title[k] < 0x20 ||
                                                     title[k] == 0x7f;
            if (ctrl || len > 200) {
                fprintf(stderr, "tapegrad plot: --title must be at most 200 printable "
                        "characters without control characters (newlines, tabs)\n");
                return 2;
            }
        } else if (argv[i][0] != '-' && !csv) {
            csv = argv[i];
        } else {
            fprintf(stderr, "tapegrad plot: unexpected argument '%s'; see --help\n", argv[i]);
            return 2;
        }
    }
    if (!csv || !png) {
        fprintf(stderr, "tapegrad plot: needs %s; see tapegrad plot --help\n",
                !csv ? "a LOG.csv argument" : "-o OUT.png");
        return 2;
    }
    long last_step;
    if (!check_log(csv, &last_step)) return 1;
    plot_job job = {csv, png, title ? title : csv, last_step};
    if (gnuplot_render("plot", png, plot_script, &job)) return 1;
    printf("wrote %s\n", png);
    return 0;
}
