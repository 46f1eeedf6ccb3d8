/*
 * tools/common.h — helpers shared by the subcommands: number and option parsing,
 * timing statistics, JSON output, progress lines and memory figures.
 */
#ifndef TG_TOOLS_COMMON_H
#define TG_TOOLS_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <tapegrad.h>

/* Parse a whole decimal integer / float; false on junk or overflow. */
bool parse_int(const char *s, int64_t *out);
bool parse_float(const char *s, double *out);

/* Median/min/max of n samples (sorts a copy). */
typedef struct tg_stats {
    double median, min, max;
} tg_stats;
tg_stats stats_of(const double *samples, int n);

/* Resident set size high-water mark of this process, in bytes (0 if unknown). */
int64_t peak_rss_bytes(void);
/* Starts the high-water mark again from the current RSS (Linux; a no-op elsewhere), so
 * that memory used and freed before a run does not count as the run's. */
void peak_rss_reset(void);

/* ---------------------------------------------------------------- options
 * A table of options for one subcommand. parse_options() fills the destinations and
 * returns 0, or prints ONE line naming the subcommand and the bad argument to stderr and
 * returns 2 (the exit status for bad arguments). "--help" / "-h" sets *help. */
typedef enum tool_opt_kind {
    OPT_FLAG,   /* bool *, no value */
    OPT_INT,    /* int *, a value in [min, max] */
    OPT_THREADS, /* int *: "auto" (-1: adaptive, core/threads.c) or a count in [1, 4096] */
    OPT_UINT64, /* uint64_t * */
    OPT_CHOICE, /* const char **, one of choices (a NULL-terminated list) */
    OPT_STR,    /* const char **, any value (the subcommand checks it) */
} tool_opt_kind;

typedef struct tool_opt {
    const char *name; /* "--size" */
    tool_opt_kind kind;
    void *dst;
    int64_t min, max;            /* OPT_INT */
    const char *const *choices;  /* OPT_CHOICE */
} tool_opt;

/* --conv gemm|winograd|auto: the choices and the algorithm a choice names. */
extern const char *const conv_algo_choices[];
tg_conv_algo conv_algo_named(const char *name);
/* --threads: N > 0 exactly N threads; -1 ("auto") all cores, adapted to the load
 * (tg_set_threads_adaptive); 0 (not given) auto for timing commands (adapt_by_default),
 * all cores fixed for training (bit-reproducible for a given count). */
void tool_set_threads(int n, bool adapt_by_default);

int parse_options(const char *cmd, int argc, char **argv, const tool_opt *opts, int nopts,
                  bool *help);

/* ---------------------------------------------------------------- JSON
 * One flat object on one line: json_begin, then fields, then json_end. */
typedef struct json_writer {
    FILE *f;
    bool first;
} json_writer;

void json_begin(json_writer *w, FILE *f);
void json_str(json_writer *w, const char *key, const char *value);
void json_int(json_writer *w, const char *key, int64_t value);
/* A number with %.6g; NaN and infinities are written as null. */
void json_num(json_writer *w, const char *key, double value);
void json_bool(json_writer *w, const char *key, bool value);
void json_null(json_writer *w, const char *key);
void json_end(json_writer *w);

/* ---------------------------------------------------------------- output */

/* Bytes as "123.4 MiB" into buf; returns buf. */
const char *fmt_bytes(double bytes, char *buf, size_t size);

/* Progress on stderr for long runs: the first call starts the clock; later calls print
 * their line only once `quiet_s` seconds have passed since then. */
typedef struct progress {
    double start;
    double quiet_s;
    bool shown;
} progress;
void progress_start(progress *p, double quiet_s);
void progress_line(progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Ends a progress display (a newline when a \r-updated line is on screen). */
void progress_done(progress *p);

double now_seconds(void); /* monotonic */

/* Memory estimated before it is touched: 0 when `bytes` (a lower bound of what the run
 * will hold) fit in tg_mem_available(); otherwise prints one line naming the command,
 * `what`, the estimate and the available memory, and returns 1. */
int check_memory(const char *cmd, const char *what, double bytes);
/* --dist: true (after printing one line naming `cmd`) when this build has no MPI or the
 * process was not launched by mpirun; the caller exits with status 2. */
bool dist_refused(const char *cmd);

#endif
