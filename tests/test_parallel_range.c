/*
 * tests/test_parallel_range.c — tg_parallel_range (core/pool.c), on the pool and as an
 * OpenMP loop (every test runs with both executors): every index runs exactly
 * once in chunks that respect the grain, at 1 to 4 threads; thousands of jobs in a row
 * (late pool threads must not take a chunk of a finished job); calls from inside a chunk,
 * from inside an OpenMP region and from two user threads at once; and the kernels moved
 * onto it give the same bits at every thread count.
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

/* The ops moved onto tg_parallel_range, through the public API, at 1, 2 and 3 threads:
 * forward and backward of tanh, a broadcast add, relu, the causal mask, softmax over rows
 * and over tiles of inner dims, layer norm with weight and bias (its partial-sum chunks),
 * both permute paths, slice and concat, dropout, the 2x2 and the generic max pool, and an
 * embedding whose rows repeat (the scatter-add order matters), a batched matmul of 64
 * small products, a Winograd convolution with bias (transforms, 36 products, the bias
 * gradient), depthwise convolutions (3x3 and the generic path), batch norm (its running
 * statistics too), average and global average pooling, sum, mean, max and var along a
 * dim and max over all, cross entropy (ignored targets too), MSE and BCE (targets with
 * gradients) on 131,072 elements, then the gradients clipped by their global norm
 * and an Adam step, give the same bits (the parameters after two steps, the last norm
 * and the loss' value) at every thread count. Every tensor is above the ops'
 * thresholds for running in parallel. */
enum { EMB_V = 512, EMB_D = 128, EMB_N = 1024 };
#define W_NUMEL (8 * 16 * 64 * 64)
#define B_NUMEL (16 * 64)
#define ALL_NUMEL                                                                           \
    (W_NUMEL + B_NUMEL + EMB_V * EMB_D + 2 * 64 + 64 * 32 * 32 + 16 * 16 * 9 + 16 + 16 * 9 + \
     16 * 25 + 4 * 16 + 2) /* + the norm and the loss' value */

/* The first index at which a and b differ bit for bit, or n. */
static int64_t first_difference(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    while (i < n && !memcmp(&a[i], &b[i], sizeof(float))) i++;
    return i;
}

static void train_once(int threads, float *out, int64_t nout) {
    tg_set_num_threads(threads);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape4(8, 16, 64, 64));
    tg_tensor *b = tg_params_add(ps, "b", tg_shape4(1, 16, 1, 64));
    tg_tensor *e = tg_params_add(ps, "e", tg_shape2(EMB_V, EMB_D));
    tg_tensor *lw = tg_params_add(ps, "lw", tg_shape1(64));
    tg_tensor *lb = tg_params_add(ps, "lb", tg_shape1(64));
    tg_tensor *mm = tg_params_add(ps, "mm", tg_shape3(64, 32, 32));
    tg_tensor *cw = tg_params_add(ps, "cw", tg_shape4(16, 16, 3, 3));
    tg_tensor *cb = tg_params_add(ps, "cb", tg_shape1(16));
    tg_tensor *dwc = tg_params_add(ps, "dwc", tg_shape4(16, 1, 3, 3));
    tg_tensor *dwc5 = tg_params_add(ps, "dwc5", tg_shape4(16, 1, 5, 5));
    tg_tensor *bnw = tg_params_add(ps, "bnw", tg_shape1(16));
    tg_tensor *bnb = tg_params_add(ps, "bnb", tg_shape1(16));
    tg_tensor *rm = tg_params_add_buffer(ps, "rm", tg_shape1(16), 0.0f);
    tg_tensor *rv = tg_params_add_buffer(ps, "rv", tg_shape1(16), 1.0f);
    ck_assert(w && b && e && lw && lb && mm && cw && cb && dwc && dwc5 && bnw && bnb && rm && rv);
    tg_rng_fill_uniform(&rng, dwc->data, dwc->numel, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, dwc5->data, dwc5->numel, -0.2f, 0.2f);
    ck_assert_int_eq(tg_init_batchnorm(bnw, bnb), TG_OK);
    tg_rng_fill_uniform(&rng, cw->data, cw->numel, -0.2f, 0.2f);
    tg_rng_fill_uniform(&rng, cb->data, cb->numel, -0.5f, 0.5f);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_WINOGRAD), TG_OK);
    tg_rng_fill_uniform(&rng, mm->data, mm->numel, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, lw->data, 64, 0.5f, 1.5f);
    tg_rng_fill_uniform(&rng, lb->data, 64, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, w->data, w->numel, -2, 2);
    tg_rng_fill_uniform(&rng, b->data, b->numel, -1, 1);
    tg_rng_fill_uniform(&rng, e->data, e->numel, -1, 1);
    static int32_t idx[EMB_N];
    /* every used row at 4 positions: the scatter-add order matters */
    for (int i = 0; i < EMB_N; i++) idx[i] = (int32_t)((i * 37) % (EMB_V / 2));
    static int32_t class_target[8 * 32 * 8]; /* 64 classes along dim 1 */
    for (int i = 0; i < 8 * 32 * 8; i++) class_target[i] = i % 7 == 3 ? -100 : i * 5 % 64;
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 0.01;
    tg_optim *opt = tg_adam_new(ps, o);
    ck_assert_ptr_nonnull(opt);
    float norm = 0, loss_value = 0;
    for (int step = 0; step < 2; step++) {
        /* b (1, 16, 1, 64): blocks of kept elements; lb (64) over everything else: few
         * kept elements, the summed dims in chunks (the two reduction paths) */
        tg_tensor *h = tg_relu(ctx, tg_add(ctx, tg_add(ctx, tg_tanh(ctx, w), b), lb));
        /* softmax over the last dim (rows) and over dim 1 (tiles of the inner dims) */
        tg_tensor *sm = tg_softmax(ctx, tg_softmax(ctx, tg_causal_mask(ctx, h), -1), 1);
        tg_tensor *ln = tg_layer_norm(ctx, sm, 1, lw, lb, 1e-5f); /* partial-sum chunks */
        static const int rows_perm[4] = {0, 2, 1, 3}, tiles_perm[4] = {0, 1, 3, 2};
        tg_tensor *pr = tg_permute(ctx, tg_permute(ctx, ln, rows_perm), tiles_perm);
        tg_tensor *halves[2] = {tg_slice(ctx, pr, 2, 0, 32), tg_slice(ctx, pr, 2, 32, 64)};
        tg_tensor *cat = tg_concat(ctx, halves, 2, 2);
        tg_tensor *p = tg_max_pool2d(ctx, tg_dropout(ctx, cat, 0.1f, true),
                                     tg_pool2d_opts_make(2, 2, 0));
        p = tg_max_pool2d(ctx, p, tg_pool2d_opts_make(3, 1, 1)); /* the generic path */
        tg_tensor *em = tg_embedding(ctx, e, idx, tg_shape1(EMB_N));
        tg_tensor *prod = tg_matmul(ctx, mm, mm); /* 64 small products: the batched path */
        /* Winograd: its transforms and 36 products, and the bias gradient's channels */
        tg_tensor *cv = tg_conv2d(ctx, tg_tanh(ctx, w), cw, cb, tg_conv2d_opts_make(1, 1, 1, 1));
        /* depthwise, batch norm (training: its running statistics too), average pooling */
        tg_tensor *dwv =
            tg_conv2d(ctx, tg_tanh(ctx, w), dwc, NULL, tg_conv2d_opts_make(1, 1, 1, 16));
        tg_tensor *bn = tg_batchnorm2d(ctx, dwv, bnw, bnb, rm, rv, true, 0.1f, 1e-5f);
        tg_tensor *ap = tg_avg_pool2d(ctx, bn, tg_pool2d_opts_make(2, 2, 0));
        tg_tensor *gp = tg_global_avg_pool(ctx, ap);
        /* a 5x5 depthwise kernel: the generic path */
        tg_tensor *dw5 =
            tg_conv2d(ctx, tg_tanh(ctx, w), dwc5, NULL, tg_conv2d_opts_make(1, 2, 1, 16));
        /* the losses' tiles and partial sums: p is (8, 64, 32, 8), 131,072 elements */
        /* targets that need gradients too: MSE's dtarget and BCE's dt paths */
        tg_tensor *losses = tg_add(ctx, tg_cross_entropy(ctx, p, class_target),
                                   tg_add(ctx, tg_mse_loss(ctx, p, tg_tanh(ctx, p)),
                                          tg_bce_with_logits(ctx, p, tg_sigmoid(ctx, p))));
        tg_tensor *loss = tg_add(ctx, tg_sum_all(ctx, tg_mul(ctx, p, p)),
                                 tg_sum_all(ctx, tg_mul(ctx, em, em)));
        loss = tg_add(ctx, loss, losses);
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, prod, prod)));
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, cv, cv)));
        loss = tg_add(ctx, loss, tg_add(ctx, tg_sum_all(ctx, tg_mul(ctx, ap, ap)),
                                        tg_sum_all(ctx, tg_mul(ctx, gp, gp))));
        /* the reductions' paths on cv (8, 16, 64, 64): rows (dim 3), blocks of inner
         * columns (dims 1, 2), few long rows in chunks and the ties' count (max_all) */
        tg_tensor *reds[] = {tg_sum(ctx, cv, 3, false), tg_mean(ctx, cv, 1, false),
                             tg_max(ctx, cv, 2, false), tg_max(ctx, cv, 3, true),
                             tg_var(ctx, cv, 0, false, true), tg_max_all(ctx, cv)};
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, dw5, dw5)));
        for (int r = 0; r < 6; r++)
            loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, reds[r], reds[r])));
        ck_assert_msg(loss != NULL, "%s", tg_error_message());
        ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        loss_value = loss->data[0]; /* every forward's value: sums, losses */
        ck_assert_int_eq(tg_clip_grad_norm(ps, 1.0f, &norm), TG_OK);
        ck_assert(norm > 1.0f); /* the scaling ran too */
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_step_end(ctx);
    }
    tg_tensor *all[] = {w, b, e, lw, lb, mm, cw, cb, dwc, dwc5, bnw, bnb, rm, rv};
    int64_t at = 0;
    for (int k = 0; k < 14; k++) {
        ck_assert_int_le(at + all[k]->numel, nout);
        memcpy(out + at, all[k]->data, (size_t)all[k]->numel * sizeof(float));
        at += all[k]->numel;
    }
    ck_assert_int_eq(at + 2, nout);
    out[at] = norm;
    out[at + 1] = loss_value;
    tg_optim_free(opt);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

START_TEST(moved_ops_same_bits_every_thread_count) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    const int64_t n = ALL_NUMEL;
    float *one = malloc((size_t)n * sizeof(float)), *many = malloc((size_t)n * sizeof(float));
    ck_assert(one && many);
    train_once(1, one, n);
    for (int threads = 2; threads <= 3; threads++) {
        train_once(threads, many, n);
        int64_t i = first_difference(one, many, n);
        ck_assert_msg(i == n, "%d threads: parameter %lld is %.9g, with 1 thread %.9g",
                      threads, (long long)i, i < n ? many[i] : 0.0, i < n ? one[i] : 0.0);
    }
    free(one);
    free(many);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* The im2col + SGEMM and pointwise convolutions run in one part per thread, so their bits
 * may depend on the thread count (where a column chunk starts), but not on the executor:
 * at 2 and 3 threads the pool and a static OpenMP loop give the same gradients. */
enum { PC_N = 2, PC_C = 32, PC_H = 64 }; /* a plane of 4096: dx in column chunks */
#define PC_X (PC_N * PC_C * PC_H * PC_H)
#define PC_ALL (PC_X + 2 * PC_C * PC_C * 9 + PC_C * PC_C + 2 * PC_C + 1)

static void conv_parts_once(int threads, tg_range_exec e, float *out) {
    tg_set_num_threads(threads);
    tg_parallel_range_use(e);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert(ctx && ps);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM), TG_OK);
    tg_tensor *x = tg_params_add(ps, "x", tg_shape4(PC_N, PC_C, PC_H, PC_H));
    tg_tensor *w3 = tg_params_add(ps, "w3", tg_shape4(PC_C, PC_C, 3, 3));
    tg_tensor *w3b = tg_params_add(ps, "w3b", tg_shape4(PC_C, PC_C, 3, 3)); /* no bias */
    tg_tensor *w1 = tg_params_add(ps, "w1", tg_shape4(PC_C, PC_C, 1, 1));
    tg_tensor *b3 = tg_params_add(ps, "b3", tg_shape1(PC_C));
    tg_tensor *b1 = tg_params_add(ps, "b1", tg_shape1(PC_C));
    ck_assert(x && w3 && w3b && w1 && b3 && b1);
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_tensor *all[] = {x, w3, w3b, w1, b3, b1};
    for (int k = 0; k < 6; k++) tg_rng_fill_uniform(&rng, all[k]->data, all[k]->numel, -0.3f, 0.3f);
    tg_conv2d_opts same = tg_conv2d_opts_make(1, 1, 1, 1), one = tg_conv2d_opts_make(1, 0, 1, 1);
    tg_tensor *y = tg_conv2d(ctx, tg_conv2d(ctx, x, w3, b3, same), w1, b1, one);
    y = tg_conv2d(ctx, y, w3b, NULL, tg_conv2d_opts_make(2, 1, 1, 1)); /* strided too */
    tg_tensor *loss = tg_sum_all(ctx, tg_mul(ctx, y, y));
    ck_assert_msg(loss != NULL, "%s", tg_error_message());
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    int64_t at = 0;
    for (int k = 0; k < 6; k++) {
        memcpy(out + at, all[k]->grad, (size_t)all[k]->numel * sizeof(float));
        at += all[k]->numel;
    }
    out[at++] = loss->data[0];
    ck_assert_int_eq(at, PC_ALL);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

START_TEST(conv_parts_same_bits_on_both_executors) {
    const int saved = tg_get_num_threads();
    float *pool = malloc(PC_ALL * sizeof(float)), *omp = malloc(PC_ALL * sizeof(float));
    ck_assert(pool && omp);
    for (int threads = 2; threads <= 3; threads++) {
        conv_parts_once(threads, TG_RANGE_POOL, pool);
        conv_parts_once(threads, TG_RANGE_OPENMP, omp);
        int64_t i = first_difference(pool, omp, PC_ALL);
        ck_assert_msg(i == PC_ALL, "%d threads: gradient %lld is %.9g on the pool, %.9g on OpenMP",
                      threads, (long long)i, i < PC_ALL ? pool[i] : 0.0, i < PC_ALL ? omp[i] : 0.0);
    }
    free(pool);
    free(omp);
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
    tcase_add_loop_test(tc, moved_ops_same_bits_every_thread_count, 0, 2);
    tcase_add_test(tc, conv_parts_same_bits_on_both_executors);
    tcase_add_test(tc, auto_follows_the_openmp_wait_policy);
    suite_add_tcase(s, tc);
    return s;
}
