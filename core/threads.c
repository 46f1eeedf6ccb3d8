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

static int thread_count = 0; /* 0: not set yet -> all cores */

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

int tg_threads(void) { return tg_get_num_threads(); }

double tg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
