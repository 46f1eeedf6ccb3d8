/*
 * bench/benchutil.h — what the kernel benchmarks share: a monotonic clock, median-of-
 * repeats timing after a warm-up call, and pre-touched aligned buffers.
 */
#ifndef TG_BENCH_BENCHUTIL_H
#define TG_BENCH_BENCHUTIL_H

#include <stdint.h>

typedef void (*bench_fn)(void *user);

/* Timed calls per measurement (a command-line argument of each benchmark). */
extern int bench_repeats;

double bench_now(void);
/* First thing in main: when OpenBLAS chose kernels older than this CPU
 * (tg_blas_core_better), re-executes the program once with OPENBLAS_CORETYPE set, as the
 * `tapegrad` program does; a user's own OPENBLAS_CORETYPE wins. */
void bench_blas_fix(char **argv);
/* The common start of a kernel benchmark's main: bench_blas_fix, then argv[1] threads
 * (default 2, set with tg_set_num_threads) and argv[2] into bench_repeats (default
 * default_repeats). Returns the thread count, or 0 after printing "usage: NAME [threads
 * >= 1] [repeats >= 1] REST" when either is not valid (the caller exits 2). */
int bench_start(int argc, char **argv, const char *name, int default_repeats,
                const char *rest);
/* Median and best seconds of bench_repeats timed calls after one warm-up call. */
void bench_time(bench_fn fn, void *user, double *median, double *best);
/* n floats, 64-byte aligned, every page touched (set to value) before any timing; exits
 * with a message when out of memory (a benchmark, not the library). */
float *bench_floats(int64_t n, float value);
/* The copy ceiling the benchmarks judge memory-bound kernels by: a threaded memcpy of
 * 64 MiB (far beyond the last-level cache), read + write bytes per second; the highest of
 * three medians of bench_repeats copies. *best (may be NULL): the best single copy. */
#define BENCH_COPY_BYTES ((int64_t)64 << 20)
double bench_copy_gbps(double *best);
/* GFLOP/s of an M x N x K SGEMM (as BLAS threads it): the higher of two medians, each
 * from `timer` (bench_time, or a benchmark's own variant). */
typedef void (*bench_timer)(bench_fn fn, void *user, double *median, double *best);
double bench_sgemm_ceiling(int M, int N, int K, bench_timer timer);

#endif
