/*
 * tools/cmd_plot.c — `tapegrad plot run.csv -o run.png`: the loss and accuracy curves of
 * a training log written by `tapegrad train --log`, drawn by gnuplot (a well-kept tool;
 * Debian: gnuplot-nox), never by a hand-written rasteriser.
 *
 * The top panel shows the per-step training loss (thin) with the per-epoch training and
 * held-out losses (points); the bottom one the per-epoch training and held-out accuracy.
 * Both share the x axis: optimizer steps. The PNG is checked after gnuplot exits (PNG
 * signature, non-trivial size), so a silent gnuplot failure is reported as one.
 * TAPEGRAD_GNUPLOT names another gnuplot binary (tests use it to check the message when
 * gnuplot is missing).
 */
#include "commands.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: tapegrad plot LOG.csv -o OUT.png [--title TEXT]\n\n"
        "Draws the loss and accuracy curves of a `tapegrad train --log` CSV with gnuplot\n"
        "(Debian: apt-get install gnuplot-nox).\n\n"
        "example: tapegrad train mnist --log run.csv && tapegrad plot run.csv -o run.png\n");
}

/* The gnuplot program: $TAPEGRAD_GNUPLOT, else the first `gnuplot` on PATH; NULL if none.
 * Returns a malloc'ed path. */
static char *find_gnuplot(void) {
    const char *env = getenv("TAPEGRAD_GNUPLOT");
    if (env && *env) {
        if (access(env, X_OK) != 0) return NULL;
        return strdup(env);
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        char *cand = malloc(len + 10);
        if (!cand) return NULL;
        memcpy(cand, len ? path : ".", len ? len : 1);
        strcpy(cand + (len ? len : 1), "/gnuplot");
        if (access(cand, X_OK) == 0) return cand;
        free(cand);
        path += len + (colon ? 1 : 0);
    }
    return NULL;
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

/* A string quoted for gnuplot (single quotes; a quote is doubled). */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static void write_script(FILE *f, const char *csv, const char *png, const char *title,
                         long last_step) {
    fputs("set terminal pngcairo size 900,700 font 'sans,10'\nset output ", f);
    put_quoted(f, png);
    /* Both panels on one x range, so steps line up. */
    fprintf(f, "\nset xrange [0:%ld]\nset lmargin 10\nset rmargin 4", last_step);
    fputs("\nset datafile separator ','\nset key top right\nset grid\n"
          "set multiplot layout 2,1 title ", f);
    put_quoted(f, title);
    fputs("\nset ylabel 'cross-entropy loss'\nset format x ''\n"
          "plot ", f);
    put_quoted(f, csv);
    fputs(" every ::1 using (strcol(1) eq 'step' ? $3 : NaN):5 with lines lw 1 lc rgb "
          "'#9ecae1' title 'train (step)', '' every ::1 using (strcol(1) eq 'epoch' ? $3 : "
          "NaN):5 with linespoints pt 7 lw 2 lc rgb '#08519c' title 'train (epoch)', '' "
          "every ::1 using (strcol(1) eq 'epoch' ? $3 : NaN):7 with linespoints pt 5 lw 2 lc "
          "rgb '#e6550d' title 'held-out'\n"
          "set format x '%g'\nset xlabel 'optimizer step'\nset ylabel 'accuracy (%)'\n"
          "set key bottom right\nplot ", f);
    put_quoted(f, csv);
    fputs(" every ::1 using (strcol(1) eq 'epoch' ? $3 : NaN):(100*$6) with linespoints pt 7 "
          "lw 2 lc rgb '#08519c' title 'train', '' every ::1 using (strcol(1) eq 'epoch' ? "
          "$3 : NaN):(100*$8) with linespoints pt 5 lw 2 lc rgb '#e6550d' title 'held-out'\n"
          "unset multiplot\nset output\n", f);
}

/* The output must be a real PNG of some size. */
static bool check_png(const char *png) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    struct stat st;
    FILE *f = fopen(png, "rb");
    bool ok = f && fread(head, 1, 8, f) == 8 && !memcmp(head, sig, 8) &&
              fstat(fileno(f), &st) == 0 && st.st_size > 2000;
    if (f) fclose(f);
    return ok;
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
        } else if (argv[i][0] != '-' && !csv) {
            csv = argv[i];
        } else {
            fprintf(stderr, "tapegrad plot: unexpected argument '%s'; see --help\n", argv[i]);
            return 2;
        }
    }
    if (!csv || !png) {
        usage(stderr);
        return 2;
    }
    long last_step;
    if (!check_log(csv, &last_step)) return 1;
    char *gnuplot = find_gnuplot();
    if (!gnuplot) {
        fprintf(stderr, "tapegrad plot: gnuplot not found%s; install it (Debian: apt-get "
                "install gnuplot-nox) or set TAPEGRAD_GNUPLOT to its path\n",
                getenv("TAPEGRAD_GNUPLOT") ? " at $TAPEGRAD_GNUPLOT" : " on PATH");
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "tapegrad plot: pipe: %s\n", strerror(errno));
        free(gnuplot);
        return 1;
    }
    remove(png); /* so a stale file can never pass the check below */
    signal(SIGPIPE, SIG_IGN); /* a gnuplot that dies early must not kill us mid-write */
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        execl(gnuplot, "gnuplot", (char *)NULL);
        fprintf(stderr, "tapegrad plot: cannot run '%s': %s\n", gnuplot, strerror(errno));
        _exit(127);
    }
    close(fds[0]);
    int status = 0;
    if (pid > 0) {
        FILE *f = fdopen(fds[1], "w");
        if (f) {
            write_script(f, csv, png, title ? title : csv, last_step);
            fclose(f);
        } else {
            close(fds[1]);
        }
        waitpid(pid, &status, 0);
    } else {
        close(fds[1]);
    }
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tapegrad plot: %s failed (%s)\n", gnuplot,
                pid < 0 ? strerror(errno) : "see its message above");
        free(gnuplot);
        return 1;
    }
    free(gnuplot);
    if (!check_png(png)) {
        fprintf(stderr, "tapegrad plot: gnuplot did not write a PNG to '%s'\n", png);
        return 1;
    }
    printf("wrote %s\n", png);
    return 0;
}
