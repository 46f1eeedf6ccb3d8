/*
 * bench/omp_regions.c — where a program's time goes, parallel region by parallel region:
 * an LD_PRELOAD shim that wraps libgomp's GOMP_parallel (every `#pragma omp parallel`,
 * ours and OpenBLAS's OpenMP build's) and, at exit, prints to stderr one line per region
 * function: calls, total wall milliseconds inside the region (fork to join), mean per
 * call, the object file and the function's offset in it. bench/omp_regions.sh runs a
 * command under it and names the functions (addr2line).
 *
 * It is how session 6 found that OpenBLAS's own threaded SGEMM took 8.6 ms per call with
 * one busy loop per core against 0.16 ms idle (bench/RESULTS.md): comparing the same
 * command idle and loaded shows which regions a busy machine punishes, which a whole-step
 * time cannot. Only the calling (master) thread's view is timed; regions opened inside
 * other regions are counted separately. Up to 256 distinct region functions.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

#define MAX_REGIONS 256

static struct {
    void *fn;
    long calls;
    double seconds;
} regions[MAX_REGIONS];
static int nregions;

typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The slot of fn, added on first sight (not thread-safe for two NEW functions forked at
 * once from two threads: a nested region's first call may then be dropped). */
static int slot(void *fn) {
    for (int i = 0; i < nregions; i++)
        if (regions[i].fn == fn) return i;
    if (nregions == MAX_REGIONS) return -1;
    regions[nregions].fn = fn;
    return nregions++;
}

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    static gomp_parallel_fn real;
    if (!real) real = (gomp_parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    int i = slot((void *)fn);
    double t0 = now();
    real(fn, data, num_threads, flags);
    if (i >= 0) {
        __atomic_add_fetch(&regions[i].calls, 1, __ATOMIC_RELAXED);
        regions[i].seconds += now() - t0; /* close enough for a profile */
    }
}

__attribute__((destructor)) static void report(void) {
    for (int i = 0; i < nregions; i++) {
        Dl_info d;
        if (!regions[i].calls || !dladdr(regions[i].fn, &d)) continue;
        fprintf(stderr, "omp_regions: %ld %.3f %.1f %s %#lx\n", regions[i].calls,
                regions[i].seconds * 1e3, regions[i].seconds * 1e6 / (double)regions[i].calls,
                d.dli_fname, (unsigned long)((char *)regions[i].fn - (char *)d.dli_fbase));
    }
}
