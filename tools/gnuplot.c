/*
 * tools/gnuplot.c — see gnuplot.h.
 */
#include "gnuplot.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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

static void not_found(const char *cmd) {
    fprintf(stderr, "tapegrad %s: gnuplot not found%s; install it (Debian: apt-get "
            "install gnuplot-nox) or set TAPEGRAD_GNUPLOT to its path\n", cmd,
            getenv("TAPEGRAD_GNUPLOT") ? " at $TAPEGRAD_GNUPLOT" : " on PATH");
}

bool gnuplot_ready(const char *cmd, const char *png) {
    char *gnuplot = find_gnuplot();
    if (!gnuplot) {
        not_found(cmd);
        return false;
    }
    free(gnuplot);
    bool existed = access(png, F_OK) == 0; /* left as it is: only new files are removed */
    FILE *f = fopen(png, "ab");
    if (!f) {
        fprintf(stderr, "tapegrad %s: cannot write the plot to '%s': %s\n", cmd, png,
                strerror(errno));
        return false;
    }
    fclose(f);
    if (!existed) remove(png);
    return true;
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

int gnuplot_render(const char *cmd, const char *png, gnuplot_script_fn script,
                   const void *data) {
    char *gnuplot = find_gnuplot();
    if (!gnuplot) {
        not_found(cmd);
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "tapegrad %s: pipe: %s\n", cmd, strerror(errno));
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
        fprintf(stderr, "tapegrad %s: cannot run '%s': %s\n", cmd, gnuplot, strerror(errno));
        _exit(127);
    }
    close(fds[0]);
    int status = 0;
    if (pid > 0) {
        FILE *f = fdopen(fds[1], "w");
        if (f) {
            script(f, data);
            fclose(f);
        } else {
            close(fds[1]);
        }
        waitpid(pid, &status, 0);
    } else {
        close(fds[1]);
    }
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tapegrad %s: %s failed (%s)\n", cmd, gnuplot,
                pid < 0 ? strerror(errno) : "see its message above");
        free(gnuplot);
        return 1;
    }
    free(gnuplot);
    if (!check_png(png)) {
        fprintf(stderr, "tapegrad %s: gnuplot did not write a PNG to '%s'\n", cmd, png);
        return 1;
    }
    return 0;
}

void gnuplot_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        /* A control character (a newline) would end the string and the command. */
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, f);
    }
    fputc('\'', f);
}
