/*
 * tools/common.c — see common.h.
 */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

bool parse_int(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool parse_float(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

tg_stats stats_of(const double *samples, int n) {
    tg_stats st = {0, 0, 0};
    if (n <= 0) return st;
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return st;
    memcpy(sorted, samples, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    st.min = sorted[0];
    st.max = sorted[n - 1];
    st.median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    free(sorted);
    return st;
}

int64_t peak_rss_bytes(void) {
    /* VmHWM can be reset (peak_rss_reset); ru_maxrss cannot. */
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long long kib = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %lld kB", &kib) == 1) break;
        fclose(f);
        if (kib >= 0) return (int64_t)kib * 1024;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (int64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

void peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f); /* Linux >= 4.0: reset the peak resident set size */
    fclose(f);
}

/* ---------------------------------------------------------------- options */

static const tool_opt *find_opt(const tool_opt *opts, int nopts, const char *name) {
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

static void list_choices(FILE *f, const char *const *choices) {
    for (int i = 0; choices[i]; i++)
        fprintf(f, "%s%s", i == 0 ? "" : choices[i + 1] ? ", " : " or ", choices[i]);
}

const char *const conv_algo_choices[] = {"gemm", "winograd", "auto", NULL};

void tool_set_threads(int n, bool adapt_by_default) {
    if (n > 0) tg_set_num_threads(n);
    /* Not given, no adapting: OMP_NUM_THREADS or all cores, as the library decides. */
    if (n < 0 || (n == 0 && adapt_by_default)) tg_set_threads_adaptive(true);
    else if (n > 0) tg_set_threads_adaptive(false);
}

tg_conv_algo conv_algo_named(const char *name) {
    if (!strcmp(name, "auto")) return TG_CONV_ALGO_AUTO;
    return strcmp(name, "winograd") ? TG_CONV_ALGO_GEMM : TG_CONV_ALGO_WINOGRAD;
}

int parse_options(const char *cmd, int argc, char **argv, const tool_opt *opts, int nopts,
                  bool *help) {
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            *help = true;
            return 0;
        }
        /* --name=value is accepted as well as --name value */
        char name[64];
        const char *value = NULL, *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, arg, len);
        name[len] = '\0';
        const tool_opt *o = find_opt(opts, nopts, name);
        if (!o) {
            fprintf(stderr, "tapegrad %s: unknown option '%s' (see tapegrad %s --help)\n", cmd,
                    arg, cmd);
            return 2;
        }
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "tapegrad %s: %s takes no value\n", cmd, name);
                return 2;
            }
            *(bool *)o->dst = true;
            continue;
        }
        if (eq) value = eq + 1;
        else if (i + 1 < argc) value = argv[++i];
        else {
            fprintf(stderr, "tapegrad %s: %s needs a value\n", cmd, name);
            return 2;
        }
        int64_t v;
        switch (o->kind) {
        case OPT_INT:
            if (!parse_int(value, &v) || v < o->min || v > o->max) {
                fprintf(stderr, "tapegrad %s: %s must be an integer in [%lld, %lld], got '%s'\n",
                        cmd, name, (long long)o->min, (long long)o->max, value);
                return 2;
            }
            *(int *)o->dst = (int)v;
            break;
        case OPT_THREADS:
            if (!strcmp(value, "auto")) {
                *(int *)o->dst = -1;
                break;
            }
            if (!parse_int(value, &v) || v < 1 || v > 4096) {
                fprintf(stderr, "tapegrad %s: %s must be 'auto' or a thread count in [1, 4096], "
                        "got '%s'\n", cmd, name, value);
                return 2;
            }
            *(int *)o->dst = (int)v;
            break;
        case OPT_UINT64:
            if (!parse_int(value, &v) || v < 0) {
                fprintf(stderr, "tapegrad %s: %s must be a non-negative integer, got '%s'\n",
                        cmd, name, value);
                return 2;
            }
            *(uint64_t *)o->dst = (uint64_t)v;
            break;
        case OPT_CHOICE: {
            bool found = false;
            for (int c = 0; o->choices[c] && !found; c++) {
                if (!strcmp(o->choices[c], value)) {
                    *(const char **)o->dst = o->choices[c];
                    found = true;
                }
            }
            if (!found) {
                fprintf(stderr, "tapegrad %s: unknown %s '%s' (expected ", cmd, name, value);
                list_choices(stderr, o->choices);
                fprintf(stderr, ")\n");
                return 2;
            }
            break;
        }
        case OPT_STR:
            *(const char **)o->dst = value;
            break;
        case OPT_FLAG:
            break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- JSON */

void json_begin(json_writer *w, FILE *f) {
    w->f = f;
    w->first = true;
    fputc('{', f);
}

static void json_key(json_writer *w, const char *key) {
    fprintf(w->f, "%s\"%s\": ", w->first ? "" : ", ", key);
    w->first = false;
}

void json_str(json_writer *w, const char *key, const char *value) {
    json_key(w, key);
    fputc('"', w->f);
    for (const char *p = value ? value : ""; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') fprintf(w->f, "\\%c", ch);
        else if (ch < 0x20) fprintf(w->f, "\\u%04x", ch);
        else fputc(ch, w->f);
    }
    fputc('"', w->f);
}

void json_int(json_writer *w, const char *key, int64_t value) {
    json_key(w, key);
    fprintf(w->f, "%lld", (long long)value);
}

void json_num(json_writer *w, const char *key, double value) {
    json_key(w, key);
    if (isfinite(value)) fprintf(w->f, "%.6g", value);
    else fputs("null", w->f);
}

void json_bool(json_writer *w, const char *key, bool value) {
    json_key(w, key);
    fputs(value ? "true" : "false", w->f);
}

void json_null(json_writer *w, const char *key) {
    json_key(w, key);
    fputs("null", w->f);
}

void json_end(json_writer *w) {
    fputs("}\n", w->f);
    fflush(w->f);
}

/* ---------------------------------------------------------------- output */

const char *fmt_bytes(double bytes, char *buf, size_t size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_start(progress *p, double quiet_s) {
    p->start = now_seconds();
    p->quiet_s = quiet_s;
    p->shown = false;
}

void progress_line(progress *p, const char *fmt, ...) {
    if (now_seconds() - p->start < p->quiet_s) return;
    bool tty = isatty(fileno(stderr));
    va_list ap;
    va_start(ap, fmt);
    if (tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!tty) fputc('\n', stderr);
    fflush(stderr);
    p->shown = true;
}

void progress_done(progress *p) {
    if (p->shown && isatty(fileno(stderr))) fputs("\r\033[K", stderr);
    p->shown = false;
}

int check_memory(const char *cmd, const char *what, double bytes) {
    size_t avail = tg_mem_available();
    if (avail == SIZE_MAX || bytes <= (double)avail) return 0;
    char need[32], have[32];
    fprintf(stderr, "tapegrad %s: %s needs at least %s but only %s of memory is available "
            "(MemAvailable); hint: a smaller --size or --batch\n", cmd, what,
            fmt_bytes(bytes, need, sizeof need), fmt_bytes((double)avail, have, sizeof have));
    return 1;
}

bool dist_refused(const char *cmd) {
    if (!tg_dist_available()) {
        fprintf(stderr, "%s: --dist needs a build with MPI (install libopenmpi-dev and "
                "reconfigure with -Dmpi=enabled)\n", cmd);
        return true;
    }
    if (!tg_dist_launched()) {
        fprintf(stderr, "%s: --dist needs an MPI launch: mpirun -np N %s ... --dist\n", cmd,
                cmd);
        return true;
    }
    return false;
}
