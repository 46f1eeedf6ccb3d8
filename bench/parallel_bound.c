/*
 * bench/parallel_bound.c — the loaded machine's own ceiling for parallel work: how much
 * longer work that needs no memory and almost no synchronisation takes when other
 * processes hold the cores. bench/loaded_pairs.sh runs it idle and loaded in the same
 * rounds as the training runs it judges, so a training epoch's loaded / idle ratio can be
 * read against what this machine allows at all in that minute.
 *
 * THE WORK. STEPS parallel regions, each a fixed number of dependent multiply-adds split
 * evenly (static) over THREADS threads: one barrier per region, no shared data, no memory
 * traffic. With the default 16 steps this is the synchronisation of one data-parallel
 * step per training step; a training epoch has one barrier per op instead, so it can only
 * do worse. Ideal time slicing with one busy process per core gives 2 threads one core
 * between them, i.e. 2.0x; anything above that is the scheduler's and the VM's.
 *
 *   usage: parallel_bound [threads (default 2)] [million multiply-adds (default 128)]
 *                         [steps (default 16)]
 *   prints: {"threads": T, "steps": S, "seconds": X}
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* n dependent multiply-adds; the result is returned so the loop cannot be dropped. */
static double chain(long n, double x) {
    for (long i = 0; i < n; i++) x = x * 0.999999999 + 1e-9;
    return x;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double million = argc > 2 ? atof(argv[2]) : 128.0;
    int steps = argc > 3 ? atoi(argv[3]) : 16;
    if (threads < 1 || million <= 0 || million > 1e6 || steps < 1) {
        fprintf(stderr, "usage: parallel_bound [threads >= 1] [million multiply-adds > 0] "
                        "[steps >= 1]\n");
        return 2;
    }
    long per_thread = (long)(million * 1e6 / steps / threads);
    double sink = 0, t0 = now();
    for (int s = 0; s < steps; s++) {
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += chain(per_thread, 1.0 + omp_get_thread_num());
    }
    double seconds = now() - t0;
    printf("{\"threads\": %d, \"steps\": %d, \"seconds\": %.4f, \"check\": %.3f}\n", threads,
           steps, seconds, sink);
    return 0;
}
