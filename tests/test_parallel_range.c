/*
 * tests/test_parallel_range.c — tg_parallel_range (core/pool.c), on the pool and as an
 * OpenMP loop (every test runs with both executors): every index runs exactly
 * once in chunks that respect the grain, at 1 to 4 threads; thousands of jobs in a row
 * (late pool threads must not take a chunk of a finished job); calls from inside a chunk,
 * from inside an OpenMP region and from two user threads at once; a loop run inline behind
 * another thread's job. That the kernels on it give the same bits at every thread count
 * is tests/test_same_bits.c.
 */
#include "testutil.h"

#include "../core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Loop tests run twice: _i 0 on the pool, _i 1 as an OpenMP loop over the chunks. */
static void use_executor(int i) { tg_parallel_range_use(i ? TG_RANGE_OPENMP : TG_RANGE_POOL); }

typedef struct count_job {
    int *hits; /* per index: plain ints (a chunk run twice also shows in `chunks`) */
    int64_t grain;
    _Atomic int bad_chunks; /* chunks not aligned to the grain or longer than it */
    _Atomic int64_t chunks;
} count_job;

static void count_range(void *arg, int64_t begin, int64_t end) {
    count_job *j = arg;
    atomic_fetch_add(&j->chunks, 1);
    if (j->grain > 0 && (begin % j->grain != 0 || end - begin > j->grain))
        atomic_fetch_add(&j->bad_chunks, 1);
    for (int64_t i = begin; i < end; i++) j->hits[i]++;
}

/* The first index whose count is not `want`, or -1 (one assertion, not one per index:
 * Check reports every passing assertion to its parent process). */
static int64_t first_not(const int *hits, int64_t n, int want) {
    for (int64_t i = 0; i < n; i++)
        if (hits[i] != want) return i;
    return -1;
}

/* Runs a counting job over n with grain; fails naming the first index not hit once. */
static void check_once(int64_t n, int64_t grain, int threads) {
    /* the grain the pool uses: raised so that there are at most 65,535 chunks */
    int64_t used = grain > 0 && grain < n / 65535 + 1 ? n / 65535 + 1 : grain;
    count_job j = {.hits = calloc((size_t)(n ? n : 1), sizeof(int)), .grain = used};
    ck_assert_ptr_nonnull(j.hits);
    tg_parallel_range(n, grain, count_range, &j);
    int64_t wrong = first_not(j.hits, n, 1);
    ck_assert_msg(wrong < 0, "n %lld, grain %lld, %d threads: index %lld ran %d times",
                  (long long)n, (long long)grain, threads, (long long)wrong,
                  wrong < 0 ? 1 : j.hits[wrong]);
    ck_assert_int_eq(j.bad_chunks, 0);
    if (n == 0) ck_assert_int_eq(j.chunks, 0); /* nothing to do: fn is not called */
    if (grain > 0 && n > 0) ck_assert_int_eq(j.chunks, (n - 1) / used + 1);
    free(j.hits);
}

START_TEST(every_index_once) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    const int64_t ns[] = {0, 1, 7, 1000, 65539, 300001};
    const int64_t grains[] = {0, 1, 13, 16384};
    for (int threads = 1; threads <= 4; threads++) {
        tg_set_num_threads(threads);
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof grains / sizeof *grains; b++)
                check_once(ns[a], grains[b], threads);
    }
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* More chunks than the claim word holds (65,535): the grain is raised, every index still
 * runs once. */
START_TEST(grain_raised_past_the_chunk_limit) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    count_job j = {.hits = calloc(200000, sizeof(int)), .grain = 0};
    ck_assert_ptr_nonnull(j.hits);
    tg_parallel_range(200000, 1, count_range, &j);
    ck_assert_int_eq(first_not(j.hits, 200000, 1), -1);
    ck_assert_int_le(j.chunks, 65535);
    free(j.hits);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

typedef struct sum_job {
    const int64_t *v;
    int64_t *partial; /* per chunk start / grain */
    int64_t grain, token;
} sum_job;

static void sum_range(void *arg, int64_t begin, int64_t end) {
    sum_job *j = arg;
    int64_t s = 0;
    for (int64_t i = begin; i < end; i++) s += j->v[i];
    j->partial[begin / j->grain] = s + j->token;
}

/* Many short jobs back to back, each with its own freshly allocated arguments (freed
 * after the call: a late pool thread reading a finished job's arguments is a
 * use-after-free under ASan) and its own answer: a pool thread that wakes late must find
 * nothing left, never run a chunk of the next job with stale arguments. */
START_TEST(thousands_of_jobs_in_a_row) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(3);
    enum { N = 4096, GRAIN = 64, CHUNKS = N / GRAIN, JOBS = 2000 };
    for (int job = 0; job < JOBS; job++) {
        int64_t *v = malloc(N * sizeof *v), *partial = malloc(CHUNKS * sizeof *partial);
        sum_job *j = malloc(sizeof *j);
        ck_assert(v && partial && j);
        for (int64_t i = 0; i < N; i++) v[i] = job * 7 + i;
        for (int c = 0; c < CHUNKS; c++) partial[c] = -1;
        *j = (sum_job){.v = v, .partial = partial, .grain = GRAIN, .token = 1000000 * job};
        tg_parallel_range(N, GRAIN, sum_range, j);
        int bad = -1;
        int64_t want = 0;
        for (int c = 0; c < CHUNKS && bad < 0; c++) {
            want = 1000000 * (int64_t)job;
            for (int64_t i = c * GRAIN; i < (c + 1) * GRAIN; i++) want += job * 7 + i;
            if (partial[c] != want) bad = c;
        }
        ck_assert_msg(bad < 0, "job %d chunk %d: %lld, want %lld", job, bad,
                      (long long)(bad < 0 ? 0 : partial[bad]), (long long)want);
        free(j);
        free(partial);
        free(v);
    }
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* The caller's first chunk waits (up to 10 s) until another thread has run a chunk: a
 * pool whose threads never take work, or a loop that silently runs inline, fails here.
 * The helpers' count in tg_parallel_range_stats grows by what they ran. */
typedef struct helper_job {
    pthread_t caller;
    _Atomic int others; /* chunks run by a thread other than the caller */
    _Atomic int waited_out;
} helper_job;

static void helper_range(void *arg, int64_t begin, int64_t end) {
    helper_job *j = arg;
    (void)end;
    if (!pthread_equal(pthread_self(), j->caller)) {
        atomic_fetch_add(&j->others, 1);
        return;
    }
    if (begin != 0) return;
    double t0 = tg_now();
    while (!atomic_load(&j->others)) {
        if (tg_now() - t0 > 10) {
            atomic_store(&j->waited_out, 1);
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

START_TEST(other_threads_take_chunks) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    tg_range_stats before = tg_parallel_range_stats();
    helper_job j = {.caller = pthread_self()};
    tg_parallel_range(8, 1, helper_range, &j);
    tg_range_stats after = tg_parallel_range_stats();
    ck_assert_msg(!j.waited_out && j.others > 0, "no other thread ran a chunk in 10 s");
    ck_assert_int_eq(after.jobs - before.jobs, 1);
    ck_assert_int_eq(after.chunks - before.chunks, 8);
    ck_assert_int_eq(after.helper_chunks - before.helper_chunks, j.others);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* tg_sgemm hands its slices to tg_parallel_range: one job of one chunk per slice (a
 * caller that ran them itself, as a regression once did when it held OpenMP to one
 * thread before the pool read the thread count, submits none). */
START_TEST(sgemm_slices_are_one_parallel_job) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    enum { M = 256, N = 256, K = 256 };
    float *A = calloc(M * K, sizeof(float)), *B = calloc(K * N, sizeof(float));
    float *C = calloc(M * N, sizeof(float));
    ck_assert(A && B && C);
    tg_range_stats before = tg_parallel_range_stats();
    tg_sgemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    tg_range_stats after = tg_parallel_range_stats();
    ck_assert_int_eq(after.jobs - before.jobs, 1);
    ck_assert_int_eq(after.chunks - before.chunks, 2);
    free(A);
    free(B);
    free(C);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* A child forked after the pool has threads has none: its jobs still finish, every index
 * once (the caller takes every chunk until the child grows threads of its own). Pool
 * only: libgomp itself does not survive fork() after a parallel region. */
START_TEST(jobs_after_fork) {
    tg_parallel_range_use(TG_RANGE_POOL);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(3);
    check_once(100000, 100, 3); /* the pool now has threads */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int ok = 1;
        for (int round = 0; round < 50 && ok; round++) {
            int *hits = calloc(100000, sizeof(int));
            count_job j = {.hits = hits, .grain = 100};
            if (!hits) _exit(2);
            tg_parallel_range(100000, 100, count_range, &j);
            ok = first_not(hits, 100000, 1) < 0 && j.chunks == 1000;
            free(hits);
        }
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the forked child's jobs went wrong (status %d)", status);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

typedef struct nested_job {
    int *hits;        /* [10][1000]: one row per outer index */
    _Atomic int bad;  /* inner chunks over their grain of 16 */
} nested_job;

typedef struct inner_job {
    int *row;
    _Atomic int *bad;
} inner_job;

static void inner_range(void *arg, int64_t begin, int64_t end) {
    inner_job *j = arg;
    if (begin % 16 || end - begin > 16) atomic_fetch_add(j->bad, 1);
    for (int64_t i = begin; i < end; i++) j->row[i]++;
}

static void nested_range(void *arg, int64_t begin, int64_t end) {
    nested_job *j = arg;
    for (int64_t i = begin; i < end; i++) { /* a whole inner loop per outer index, inline */
        inner_job in = {.row = j->hits + i * 1000, .bad = &j->bad};
        tg_parallel_range(1000, 16, inner_range, &in);
    }
}

START_TEST(calls_from_a_chunk_run_inline) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    nested_job j = {.hits = calloc(10 * 1000, sizeof(int))};
    ck_assert_ptr_nonnull(j.hits);
    tg_parallel_range(10, 1, nested_range, &j);
    ck_assert_int_eq(first_not(j.hits, 10 * 1000, 1), -1);
    ck_assert_int_eq(j.bad, 0);
    free(j.hits);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

START_TEST(calls_from_an_openmp_region) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    count_job j = {.hits = calloc(40000, sizeof(int)), .grain = 100};
    ck_assert_ptr_nonnull(j.hits);
#pragma omp parallel for num_threads(2)
    for (int half = 0; half < 2; half++) {
        count_job mine = {.hits = j.hits + half * 20000, .grain = 100};
        tg_parallel_range(20000, 100, count_range, &mine);
        atomic_fetch_add(&j.bad_chunks, mine.bad_chunks);
    }
    ck_assert_int_eq(first_not(j.hits, 40000, 1), -1);
    ck_assert_int_eq(j.bad_chunks, 0);
    free(j.hits);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* Two user threads with jobs of their own at the same time: one has the pool, the other
 * runs inline; both get every index once. */
static void *user_thread(void *arg) {
    int64_t *failures = arg;
    for (int round = 0; round < 200; round++) {
        enum { N = 5000 };
        count_job j = {.hits = calloc(N, sizeof(int)), .grain = 37};
        if (!j.hits) {
            (*failures)++;
            return NULL;
        }
        tg_parallel_range(N, 37, count_range, &j);
        *failures += first_not(j.hits, N, 1) >= 0;
        *failures += j.bad_chunks;
        free(j.hits);
    }
    return NULL;
}

START_TEST(two_user_threads_at_once) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(3);
    pthread_t t[2];
    int64_t failures[2] = {0, 0};
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, user_thread,
                                                                &failures[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    ck_assert_int_eq(failures[0], 0);
    ck_assert_int_eq(failures[1], 0);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* A loop that runs inline because another user thread's job holds the pool is still a
 * job of its own: a tg_sgemm inside its chunks makes one serial call, as on the pool, and
 * submits no job of its own even after the pool comes free (were it sliced, the bits
 * would depend on who held the pool). */
static atomic_int busy_holding, busy_release, busy_not_nested;

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, us % 1000000 * 1000};
    nanosleep(&ts, NULL);
}

static void hold_pool(void *arg, int64_t b, int64_t e) {
    (void)arg, (void)e;
    if (b != 0) return;
    atomic_store(&busy_holding, 1);
    while (!atomic_load(&busy_release)) sleep_us(100);
}

static void *pool_holder(void *arg) {
    (void)arg;
    tg_parallel_range(2, 1, hold_pool, NULL);
    return NULL;
}

enum { BUSY_M = 256 };
static float busy_a[BUSY_M * BUSY_M], busy_b[BUSY_M * BUSY_M], busy_c[4][BUSY_M * BUSY_M];

static void products(void *arg, int64_t x0, int64_t x1) {
    (void)arg;
    for (int64_t x = x0; x < x1; x++) {
        if (!tg_parallel_range_nested()) atomic_fetch_add(&busy_not_nested, 1);
        if (x == 1) { /* the holder's job ends: the pool is free for the rest */
            atomic_store(&busy_release, 1);
            sleep_us(20000);
        }
        tg_sgemm(false, false, BUSY_M, BUSY_M, BUSY_M, 1.0f, busy_a, BUSY_M, busy_b, BUSY_M, 0.0f,
                 busy_c[x], BUSY_M);
    }
}

START_TEST(inline_behind_a_busy_pool_is_a_job) {
    tg_parallel_range_use(TG_RANGE_POOL);
    const int saved = tg_get_num_threads();
    tg_set_num_threads(2);
    for (int i = 0; i < BUSY_M * BUSY_M; i++) {
        busy_a[i] = (float)(i % 7) * 0.1f;
        busy_b[i] = (float)(i % 5) * 0.3f;
    }
    pthread_t holder;
    ck_assert_int_eq(pthread_create(&holder, NULL, pool_holder, NULL), 0);
    while (!atomic_load(&busy_holding)) sleep_us(100);
    tg_range_stats s0 = tg_parallel_range_stats();
    tg_parallel_range(4, 1, products, NULL);
    tg_range_stats s1 = tg_parallel_range_stats();
    pthread_join(holder, NULL);
    int not_nested = atomic_load(&busy_not_nested);
    ck_assert_msg(not_nested == 0, "%d of 4 chunks run inline were not a job", not_nested);
    ck_assert_int_eq(s1.jobs - s0.jobs, 0); /* no slices submitted from the chunks */
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* AUTO follows libgomp's wait rule: the pool only when OpenMP's threads sleep at once. */
static void setenv_or_unset(const char *name, const char *value) {
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

START_TEST(auto_follows_the_openmp_wait_policy) {
#ifdef _OPENMP
    static const struct {
        const char *policy, *spin;
        tg_range_exec want;
    } cases[] = {
        {NULL, NULL, TG_RANGE_OPENMP},        /* libgomp's default: spins first */
        {"passive", NULL, TG_RANGE_POOL},     /* passive alone: no spinning */
        {"PASSIVE", NULL, TG_RANGE_POOL},
        {"active", NULL, TG_RANGE_OPENMP},
        {"passive", "10000", TG_RANGE_OPENMP}, /* the spin count wins */
        {NULL, "0", TG_RANGE_POOL},
        {"active", "0", TG_RANGE_POOL},
    };
    char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    policy = policy ? strdup(policy) : NULL;
    spin = spin ? strdup(spin) : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv_or_unset("OMP_WAIT_POLICY", cases[i].policy);
        setenv_or_unset("GOMP_SPINCOUNT", cases[i].spin);
        tg_parallel_range_use(TG_RANGE_AUTO);
        ck_assert_msg(tg_parallel_range_exec() == cases[i].want,
                      "OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s: executor %d, want %d",
                      cases[i].policy ? cases[i].policy : "(unset)",
                      cases[i].spin ? cases[i].spin : "(unset)", (int)tg_parallel_range_exec(),
                      (int)cases[i].want);
    }
    setenv_or_unset("OMP_WAIT_POLICY", policy);
    setenv_or_unset("GOMP_SPINCOUNT", spin);
    free(policy);
    free(spin);
#endif
    tg_parallel_range_use(TG_RANGE_AUTO);
    ck_assert_int_ne(tg_parallel_range_exec(), TG_RANGE_AUTO); /* always resolved */
}
END_TEST

Suite *parallel_range_suite(void) {
    Suite *s = suite_create("parallel_range");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, every_index_once, 0, 2);
    tcase_add_loop_test(tc, grain_raised_past_the_chunk_limit, 0, 2);
    tcase_add_loop_test(tc, thousands_of_jobs_in_a_row, 0, 2);
    tcase_add_loop_test(tc, other_threads_take_chunks, 0, 2);
    tcase_add_loop_test(tc, sgemm_slices_are_one_parallel_job, 0, 2);
    tcase_add_test(tc, jobs_after_fork);
    tcase_add_loop_test(tc, calls_from_a_chunk_run_inline, 0, 2);
    tcase_add_loop_test(tc, calls_from_an_openmp_region, 0, 2);
    tcase_add_loop_test(tc, two_user_threads_at_once, 0, 2);
    tcase_add_test(tc, inline_behind_a_busy_pool_is_a_job);
    tcase_add_test(tc, auto_follows_the_openmp_wait_policy);
    suite_add_tcase(s, tc);
    return s;
}
