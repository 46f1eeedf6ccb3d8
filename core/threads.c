/*
 * core/threads.c — the one thread-count knob (our loops and OpenBLAS's GEMMs), the
 * settings read at load time (tg_runtime_defaults), and a monotonic clock.
 */
#define _GNU_SOURCE /* dl_iterate_phdr */
#include "core.h"

#include <link.h>
#include <sys/auxv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef TG_HAVE_OPENBLAS_THREADS
void openblas_set_num_threads(int num_threads);
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */
char *openblas_get_corename(void);
#endif

/* Whether OpenBLAS may be called from inside our OpenMP loops, one serial GEMM per thread,
 * without fighting its own threads: its sequential and OpenMP builds may (the OpenMP build
 * runs serially inside a parallel region), the pthreads build may not. */
bool tg_blas_nests(void) {
#ifdef TG_HAVE_OPENBLAS_THREADS
    return openblas_get_parallel() != 1;
#else
    return true;
#endif
}

/* 0: not set yet -> all cores. Process-wide: any thread may set it, every thread reads
 * it. omp_set_num_threads only changes the CALLING thread's OpenMP setting (its
 * nthreads-var ICV), so tg_threads_apply() re-applies the process-wide count in whatever
 * thread enters the library (tg_op_apply, tg_backward, tg_optim_step call it). */
static _Atomic int thread_count = 0;

/* The machine's cores (what /proc/stat's totals cover). */
static int machine_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The cores this process may run on: libgomp counts the affinity mask, so a rank that
 * mpirun bound to one core gets 1, not the machine's count. */
static int core_count(void) {
#ifdef _OPENMP
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
#else
    return machine_cores();
#endif
}

/* Adaptive mode (tg_set_threads_adaptive): thread_limit is the count asked for,
 * thread_count what ops run with now. */
static _Atomic int thread_limit = 0;
static _Atomic bool adaptive = false;

static void use_threads(int n) {
    thread_count = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef TG_HAVE_OPENBLAS_THREADS
    openblas_set_num_threads(n);
#endif
}

void tg_set_num_threads(int n) {
    if (n <= 0) n = core_count();
    thread_limit = n;
    use_threads(n);
}

int tg_get_num_threads(void) {
    if (thread_count > 0) return thread_count;
#ifdef _OPENMP
    return omp_get_max_threads(); /* what OpenMP runs with: OMP_NUM_THREADS, affinity */
#else
    return 1;
#endif
}

void tg_threads_apply(void) {
#ifdef _OPENMP
    int want = thread_count;
    if (want > 0 && omp_get_max_threads() != want) omp_set_num_threads(want);
#endif
}

int tg_threads(void) { return tg_get_num_threads(); }

/* ------------------------------------------------------------ which BLAS kernels
 *
 * OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels from the CPU model when it
 * is loaded. A CPU newer than the OpenBLAS release is not in its table and falls back to
 * the oldest x86-64 kernels: on this project's VM (Intel family 6 model 207, AVX-512)
 * OpenBLAS 0.3.21 chose "Prescott" (SSE3) and SGEMM ran at 30 GFLOP/s on 2 cores, against
 * 165-200 with its SkylakeX kernels. The choice can only be overridden before the library
 * loads, with OPENBLAS_CORETYPE; tg_blas_core_better says what to set. */
static bool core_is(const char *name, const char *const *set) {
    for (; *set; set++)
        if (!strcasecmp(name, *set)) return true; /* single-target builds say "HASWELL" */
    return false;
}

const char *tg_blas_core(void) {
#ifdef TG_HAVE_OPENBLAS_THREADS
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
#else
    return "not OpenBLAS";
#endif
}

const char *tg_blas_core_better(void) {
#if defined(TG_HAVE_OPENBLAS_THREADS) && (defined(__x86_64__) || defined(__i386__)) && \
    defined(__GNUC__)
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                       "SapphireRapids", NULL};
    const char *core = tg_blas_core();
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && !core_is(core, avx512) && strcasecmp(core, "Zen"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        !core_is(core, avx2))
        return "Haswell";
#endif
    return NULL;
}

/* ------------------------------------------------------------ settings read at load time
 *
 * libgomp (and OpenBLAS's OpenMP build, which shares its threads) reads OMP_WAIT_POLICY
 * and GOMP_SPINCOUNT once, when the program is loaded, and OpenBLAS picks its kernels
 * then too: a library cannot change them for the process it is loaded in. So
 * tg_runtime_defaults sets the environment variables and re-executes the program once
 * (execv of /proc/self/exe with the same arguments), marking the environment so that the
 * second start goes on. The wait policy: a waiting OpenMP thread sleeps at once
 * (OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=0). libgomp's default spins ~300,000 times
 * first; on an idle machine that makes back-to-back regions cheap, but when another
 * process holds a core the spinning thread takes the time slice the thread with the work
 * needs, and a small CNN's epoch ran 14-30x slower (issue 14; the measurements behind 0
 * are in tools/tapegrad.c and bench/RESULTS.md). Each setting has its own marker so that
 * turning one off keeps the other; the user's own variables always win. */
/* Whether execv("/proc/self/exe", argv) would start this program again with these
 * arguments. Not under valgrind (/proc/self/exe is valgrind's launcher, which refuses to
 * run a program directly), nor when the program was started through the dynamic loader
 * (`ld.so prog args`: /proc/self/exe is the loader and argv[0] no longer names it, so
 * the re-execution would run argv[1]). The kernel then reports no interpreter base
 * (AT_BASE 0) although the main program asks for one (PT_INTERP); a static program has
 * neither. */
static int main_has_interp(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) /* the first object is the main program */
        if (info->dlpi_phdr[i].p_type == PT_INTERP) *(bool *)data = true;
    return 1;
}

static bool reexec_safe(void) {
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return false;
    if (getauxval(AT_BASE) != 0) return true; /* started by the kernel with its loader */
    bool interp = false;
    dl_iterate_phdr(main_has_interp, &interp);
    return !interp;
}

bool tg_runtime_defaults(char **argv) {
    bool omp = !getenv("TAPEGRAD_OMP_DEFAULTS") && !getenv("OMP_WAIT_POLICY") &&
               !getenv("GOMP_SPINCOUNT");
    const char *core = getenv("TAPEGRAD_BLAS_FIXED") || getenv("OPENBLAS_CORETYPE")
                           ? NULL : tg_blas_core_better();
    if (!omp && !core) return true; /* in force already, or the user's choice */
    if (!argv || !argv[0] || !reexec_safe()) return false;
    if ((omp && (setenv("OMP_WAIT_POLICY", "passive", 1) != 0 ||
                 setenv("GOMP_SPINCOUNT", "0", 1) != 0 ||
                 setenv("TAPEGRAD_OMP_DEFAULTS", "applied", 1) != 0)) ||
        (core && (setenv("OPENBLAS_CORETYPE", core, 1) != 0 ||
                  setenv("TAPEGRAD_BLAS_FIXED", core, 1) != 0)))
        return false;
    fflush(NULL); /* buffered output would be lost with this image, or printed twice */
    execv("/proc/self/exe", argv);
    /* Still here: no /proc. This process keeps the settings its libraries read at load
     * time; children (a plotter, ...) should not inherit settings never in force. */
    if (omp) {
        unsetenv("OMP_WAIT_POLICY");
        unsetenv("GOMP_SPINCOUNT");
        unsetenv("TAPEGRAD_OMP_DEFAULTS");
    }
    if (core) {
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("TAPEGRAD_BLAS_FIXED");
    }
    return false;
}

/* ------------------------------------------------------------ adapting to a busy machine
 *
 * OpenMP's barriers need every thread of a team running: when other processes hold the
 * cores, a team of T threads waits at every barrier for its slowest member to get a time
 * slice, and a step of many short parallel regions slows down far more than the share of
 * CPU lost (measured on the 2-core VM with two busy loops: 2 threads 2.6x the idle epoch,
 * 1 thread faster than 2). So, when adaptive, every step end at most every
 * ADAPT_INTERVAL_S seconds compares the CPU time the whole machine used (/proc/stat)
 * with this process's own (getrusage) over the interval: what is left is what other
 * processes used, in cores. The team is sized to the cores left for us, rounded, between
 * 1 and the count asked for. Our own spinning threads are our time, not theirs; the other
 * ranks of an MPI job are other processes (2 ranks x 2 threads on 2 cores settle at 1
 * thread each). */
#define ADAPT_INTERVAL_S 0.25
/* The first look comes sooner: a short run (an epoch of a small model takes well under a
 * second) would otherwise spend a quarter of a second with the wrong team. 0.1 s is ten
 * /proc/stat ticks per core at USER_HZ = 100, enough to tell a busy core from an idle one. */
#define ADAPT_FIRST_S 0.1

static struct {
    bool ok, looked; /* looked: the first decision is made */
    double wall, self;
    unsigned long long busy;
    int changes;
} probe;

int tg_threads_for_load(int cores, double others, int limit) {
    double left = (double)cores - (others > 0 ? others : 0);
    int want = (int)(left + 0.5);
    return want < 1 ? 1 : want > limit ? limit : want;
}

static bool machine_busy_ticks(unsigned long long *busy) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return false;
    unsigned long long v[7] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6]);
    fclose(f);
    *busy = v[0] + v[1] + v[2] + v[5] + v[6]; /* user nice system irq softirq */
    return n == 7;
}

static double self_cpu(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void probe_start(void) {
    probe.ok = machine_busy_ticks(&probe.busy);
    probe.wall = tg_now();
    probe.self = self_cpu();
}

void tg_set_threads_adaptive(bool on) {
    if (on == adaptive) return;
    if (on) {
        /* The ceiling: the count set, else what OpenMP would use (OMP_NUM_THREADS). */
        if (thread_limit <= 0) {
#ifdef _OPENMP
            thread_limit = omp_get_max_threads();
#else
            thread_limit = 1;
#endif
        }
        if (thread_count <= 0) thread_count = thread_limit;
        probe_start();
        probe.looked = false;
    }
    adaptive = on;
    if (!on) use_threads(thread_limit); /* back to the count asked for */
}

bool tg_threads_adaptive(void) { return adaptive; }
int tg_threads_adaptations(void) { return probe.changes; }

void tg_threads_adapt(void) {
    if (!adaptive) return;
    double now = tg_now(), wall = now - probe.wall;
    if (wall < (probe.looked ? ADAPT_INTERVAL_S : ADAPT_FIRST_S)) return;
    probe.looked = true;
    unsigned long long busy;
    long ticks = sysconf(_SC_CLK_TCK);
    bool ok = probe.ok && machine_busy_ticks(&busy) && ticks > 0;
    double others = ok ? ((double)(busy - probe.busy) / (double)ticks - (self_cpu() - probe.self))
                       / wall : 0;
    probe_start();
    if (!ok) return;
    int want = tg_threads_for_load(machine_cores(), others, thread_limit);
    if (want != tg_get_num_threads()) {
        use_threads(want);
        probe.changes++;
    }
}

double tg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
