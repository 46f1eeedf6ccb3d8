/*
 * core/threads.c — the one thread-count knob (OpenMP for our loops and OpenBLAS for
 * GEMMs), and a monotonic clock.
 */
#include "core.h"

#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef TG_HAVE_OPENBLAS_THREADS
void openblas_set_num_threads(int num_threads);
#endif

/* 0: not set yet -> all cores. Process-wide: any thread may set it, every thread reads
 * it. omp_set_num_threads only changes the CALLING thread's OpenMP setting (its
 * nthreads-var ICV), so tg_threads_apply() re-applies the process-wide count in whatever
 * thread enters the library (tg_op_apply, tg_backward, tg_optim_step call it). */
static _Atomic int thread_count = 0;

static int core_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void tg_set_num_threads(int n) {
    if (n <= 0) n = core_count();
    thread_count = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef TG_HAVE_OPENBLAS_THREADS
    openblas_set_num_threads(n);
#endif
}

int tg_get_num_threads(void) { return thread_count > 0 ? thread_count : core_count(); }

void tg_threads_apply(void) {
#ifdef _OPENMP
    int want = thread_count;
    if (want > 0 && omp_get_max_threads() != want) omp_set_num_threads(want);
#endif
}

int tg_threads(void) { return tg_get_num_threads(); }

double tg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
