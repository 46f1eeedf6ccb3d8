/*
 * core/pool.c — tg_parallel_range: a loop over [0, n) in chunks, run by the calling
 * thread and by whichever pool threads arrive while chunks are left. No thread waits
 * for a thread that has not started.
 *
 * WHY NOT `omp parallel for` FOR SHORT LOOPS. An OpenMP region ends at a barrier that
 * every thread of the team must reach, including a worker that has not even been
 * scheduled yet. On an idle machine a sleeping worker wakes in microseconds. When other
 * processes hold the cores (bench/RESULTS.md, session 7: one busy loop per core), it
 * waits for a time slice first, ~1 ms, so a relu that takes 0.17 ms idle took 1.26 ms per
 * call, the master idle for most of it. Here the calling thread starts on the chunks at
 * once, a worker that wakes in time takes chunks too, and the call returns as soon as
 * every chunk is done: a late worker finds none left and goes back to sleep. Idle, both
 * threads share the chunks as a static split would.
 *
 * ONLY FOR INDEPENDENT CHUNKS. Which thread runs a chunk is decided at run time, so fn
 * must compute every element of a chunk the same way whoever runs it (element-wise
 * maps, pooling windows, optimizer updates): the results are then the same bits at any
 * thread count. A reduction gives each fixed chunk its own partial sum and adds them in
 * order afterwards (never per-thread partials: which thread runs a chunk is not fixed).
 *
 * THE PROTOCOL. `claim` packs generation (32 bits), chunk count (16) and next chunk
 * (16) into one atomic word. The caller publishes a job under the mutex, then a new
 * generation in `claim`, and wakes the workers; every thread claims chunks by
 * compare-and-swap on `claim`, which fails once the generation moved on, so a late
 * worker cannot take a chunk of a finished job. The chunk count travels in the same word
 * so that "is a chunk left" is decided by the generation being claimed, never by a job
 * struct the caller may already be refilling. A successful claim of a chunk of
 * generation g proves that g is not finished (that chunk is not done), so the job fields
 * read after it are g's. `done` counts finished chunks; the thread that finishes the
 * last one wakes the caller if it sleeps. One job at a time: a second caller (another
 * user thread) finding the pool busy, a call from inside an OpenMP region or from a pool
 * thread, and a one-thread setting run the loop inline. After fork() the child has no
 * pool threads (its calls run every chunk on the caller) until it grows new ones.
 *
 * WHEN THE POOL, WHEN OPENMP. The pool's threads need the cores the moment a job starts.
 * libgomp's threads, by default, spin for a while after every parallel region before they
 * sleep: they would hold the cores a pool thread wakes for, and the caller would do every
 * chunk alone (measured: the small-CNN epoch 30% slower idle with libgomp's default spin,
 * bench/RESULTS.md session 7). So the chunks run on the pool only when the process's
 * OpenMP threads sleep at once (OMP_WAIT_POLICY=passive without GOMP_SPINCOUNT, or
 * GOMP_SPINCOUNT=0: what tg_runtime_defaults sets, core/threads.c), and otherwise as
 * a static OpenMP loop over the same chunks. Either way each chunk is the same call, so
 * the results are the same bits.
 */
#include "core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define POOL_MAX 256       /* pool threads at most (the thread count minus the caller) */
#define POOL_SPIN 2000     /* the caller's polls of `done` before it sleeps */
#define POOL_CHUNKS_PER 8  /* chunks per thread when the caller gives no grain */
#define POOL_MAX_CHUNKS 0xffff

typedef struct pool_job {
    tg_range_fn fn;
    void *arg;
    int64_t n, grain;
    int helpers; /* pool threads asked to take part */
} pool_job;

static struct {
    pthread_mutex_t lock;      /* job publication, sleeping and waking */
    pthread_cond_t wake;       /* workers wait here for a new generation */
    pthread_cond_t finished;   /* the caller waits here for `done` */
    pthread_mutex_t submit;    /* held by the one caller whose job is running */
    _Atomic uint64_t claim;    /* generation << 32 | chunks << 16 | next chunk */
    _Atomic int64_t done;      /* chunks finished in this generation */
    pool_job job;
    int started;               /* pool threads created so far */
    bool caller_sleeps;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .finished = PTHREAD_COND_INITIALIZER,
          .submit = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local bool in_pool_thread;
static _Thread_local int in_job; /* > 0 while this thread runs chunks of its own job */

/* Counters for tg_parallel_range_stats (relaxed: a diagnostic, not a synchronisation). */
static _Atomic int64_t stat_jobs, stat_chunks, stat_helper_chunks;

static uint32_t claim_gen(uint64_t c) { return (uint32_t)(c >> 32); }
static int64_t claim_chunks(uint64_t c) { return (int64_t)((c >> 16) & 0xffff); }
static int64_t claim_next(uint64_t c) { return (int64_t)(c & 0xffff); }

/* Runs chunks of generation gen until none is left; counts those a helper runs (before
 * publishing them done, so the caller sees the count when it returns). */
static void run_chunks(uint32_t gen, bool helper) {
    uint64_t c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    for (;;) {
        if (claim_gen(c) != gen || claim_next(c) >= claim_chunks(c)) return;
        int64_t i = claim_next(c), nchunks = claim_chunks(c);
        if (!atomic_compare_exchange_weak_explicit(&pool.claim, &c, c + 1,
                                                   memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* c now holds the current word */
        /* Chunk i of generation gen is ours: gen cannot finish before we do. */
        const pool_job *j = &pool.job;
        int64_t begin = i * j->grain;
        int64_t end = j->n - begin > j->grain ? begin + j->grain : j->n;
        j->fn(j->arg, begin, end);
        if (helper) atomic_fetch_add_explicit(&stat_helper_chunks, 1, memory_order_relaxed);
        if (atomic_fetch_add_explicit(&pool.done, 1, memory_order_acq_rel) + 1 == nchunks) {
            pthread_mutex_lock(&pool.lock);
            if (pool.caller_sleeps) pthread_cond_signal(&pool.finished);
            pthread_mutex_unlock(&pool.lock);
        }
        c = atomic_load_explicit(&pool.claim, memory_order_acquire);
    }
}

static void *pool_thread(void *arg) {
    int id = (int)(intptr_t)arg;
    in_pool_thread = true;
#ifdef _OPENMP
    /* A chunk that calls OpenBLAS (tg_sgemm's slices) must run it serially: its OpenMP
     * build threads a call by the calling thread's omp_get_max_threads(). */
    omp_set_num_threads(1);
#endif
    /* Not the current generation: a thread created for a job that was published while
     * it started looks at that job first (if it is finished, it finds nothing left). */
    uint32_t seen = claim_gen(atomic_load_explicit(&pool.claim, memory_order_acquire)) - 1;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        uint32_t gen;
        while ((gen = claim_gen(atomic_load_explicit(&pool.claim, memory_order_acquire))) ==
               seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        int helpers = pool.job.helpers; /* under the lock: this generation's */
        pthread_mutex_unlock(&pool.lock);
        seen = gen;
        if (id < helpers) run_chunks(gen, true);
    }
    return NULL;
}

/* In a forked child: no pool threads, and locks that a parent's thread may have held. */
static void pool_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.submit, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.finished, NULL);
    pool.started = 0;
    pool.caller_sleeps = false;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_register_fork(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

/* Called with pool.submit held: starts pool threads up to `want`; returns how many run. */
static int pool_grow(int want) {
    pthread_once(&pool_once, pool_register_fork);
    if (want > POOL_MAX) want = POOL_MAX;
    while (pool.started < want) {
        pthread_t t;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr)) break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&t, &attr, pool_thread, (void *)(intptr_t)pool.started);
        pthread_attr_destroy(&attr);
        if (err) break; /* run with the threads we have: the caller takes every chunk left */
        pool.started++;
    }
    return pool.started < want ? pool.started : want;
}

/* ------------------------------------------------------------ which executor */

static _Atomic int exec_mode = TG_RANGE_AUTO; /* as set; AUTO resolved on first use */
static _Atomic int exec_resolved = TG_RANGE_AUTO;

/* libgomp's rule: GOMP_SPINCOUNT wins; else OMP_WAIT_POLICY=passive means no spinning. */
static tg_range_exec exec_from_env(void) {
#ifdef _OPENMP
    const char *spin = getenv("GOMP_SPINCOUNT");
    if (spin && *spin) {
        char *end;
        double v = strtod(spin, &end);
        return end != spin && v == 0 ? TG_RANGE_POOL : TG_RANGE_OPENMP;
    }
    const char *policy = getenv("OMP_WAIT_POLICY");
    return policy && !strcasecmp(policy, "passive") ? TG_RANGE_POOL : TG_RANGE_OPENMP;
#else
    return TG_RANGE_POOL; /* no OpenMP: the pool is the only way to use more threads */
#endif
}

void tg_parallel_range_use(tg_range_exec e) {
    exec_mode = e;
    exec_resolved = e == TG_RANGE_AUTO ? exec_from_env() : e;
}

tg_range_exec tg_parallel_range_exec(void) {
    int e = exec_resolved;
    if (e == TG_RANGE_AUTO) {
        e = exec_mode == TG_RANGE_AUTO ? (int)exec_from_env() : exec_mode;
        exec_resolved = e;
    }
    return (tg_range_exec)e;
}

bool tg_parallel_range_nested(void) { return in_pool_thread || in_job > 0; }

static bool run_inline(void) {
    if (in_pool_thread || in_job > 0) return true;
#ifdef _OPENMP
    if (omp_in_parallel()) return true;
#endif
    return false;
}

void tg_parallel_items(int64_t items, double per_item, double serial_max, double chunk,
                       tg_range_fn fn, void *arg) {
    if (items <= 0) return;
    if ((double)items * per_item <= serial_max) {
        fn(arg, 0, items);
        return;
    }
    if (!(per_item > 0)) per_item = 1; /* no item is free (and no division by zero) */
    double grain = per_item >= chunk ? 1 : chunk / per_item;
    tg_parallel_range(items, grain < (double)items ? (int64_t)grain : items, fn, arg);
}

tg_range_stats tg_parallel_range_stats(void) {
    return (tg_range_stats){.jobs = atomic_load_explicit(&stat_jobs, memory_order_relaxed),
                            .chunks = atomic_load_explicit(&stat_chunks, memory_order_relaxed),
                            .helper_chunks = atomic_load_explicit(&stat_helper_chunks,
                                                                  memory_order_relaxed)};
}

static void count_job(int64_t nchunks) {
    atomic_fetch_add_explicit(&stat_jobs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stat_chunks, nchunks, memory_order_relaxed);
}

void tg_parallel_range(int64_t n, int64_t grain, tg_range_fn fn, void *arg) {
    if (n <= 0) return;
    int threads = tg_get_num_threads();
    if (grain > n) grain = n; /* one chunk; also keeps `b += grain` below from wrapping */
    if (grain <= 0) grain = n / ((int64_t)threads * POOL_CHUNKS_PER);
    if (grain < n / POOL_MAX_CHUNKS + 1) grain = n / POOL_MAX_CHUNKS + 1;
    int64_t nchunks = (n - 1) / grain + 1; /* <= POOL_MAX_CHUNKS */
    if (threads <= 1 || nchunks <= 1 || run_inline()) {
        for (int64_t b = 0; b < n; b += grain) fn(arg, b, n - b > grain ? b + grain : n);
        return;
    }
#ifdef _OPENMP
    if (tg_parallel_range_exec() == TG_RANGE_OPENMP) {
        int team = threads < nchunks ? threads : (int)nchunks;
        count_job(nchunks);
#pragma omp parallel num_threads(team)
        {
            int64_t ran = 0;
#pragma omp for schedule(static)
            for (int64_t c = 0; c < nchunks; c++) {
                fn(arg, c * grain, n - c * grain > grain ? (c + 1) * grain : n);
                ran++;
            }
            if (omp_get_thread_num() != 0 && ran)
                atomic_fetch_add_explicit(&stat_helper_chunks, ran, memory_order_relaxed);
        }
        return;
    }
#endif
    if (pthread_mutex_trylock(&pool.submit)) { /* another thread's job has the pool */
        /* Counted as a job of this thread: a tg_sgemm inside a chunk makes one call here
         * as it would on the pool, so the bits do not depend on who held the pool. */
        in_job++;
        for (int64_t b = 0; b < n; b += grain) fn(arg, b, n - b > grain ? b + grain : n);
        in_job--;
        return;
    }
    int helpers = pool_grow(threads - 1);
    if (helpers > nchunks - 1) helpers = (int)(nchunks - 1);
    count_job(nchunks);

    pthread_mutex_lock(&pool.lock);
    pool.job = (pool_job){.fn = fn, .arg = arg, .n = n, .grain = grain, .helpers = helpers};
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    uint32_t gen = claim_gen(atomic_load_explicit(&pool.claim, memory_order_relaxed)) + 1;
    atomic_store_explicit(&pool.claim, (uint64_t)gen << 32 | (uint64_t)nchunks << 16,
                          memory_order_release);
    if (helpers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    in_job++;
    run_chunks(gen, false);
    in_job--;
    /* Every chunk is claimed; wait for the ones other threads are still running. */
    for (int spin = 0; spin < POOL_SPIN; spin++) {
        if (atomic_load_explicit(&pool.done, memory_order_acquire) == nchunks) break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (atomic_load_explicit(&pool.done, memory_order_acquire) != nchunks) {
        pthread_mutex_lock(&pool.lock);
        pool.caller_sleeps = true;
        while (atomic_load_explicit(&pool.done, memory_order_acquire) != nchunks)
            pthread_cond_wait(&pool.finished, &pool.lock);
        pool.caller_sleeps = false;
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.submit);
}
