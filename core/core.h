/*
 * core/core.h — internals shared by every folder: error recording, arenas, device
 * memory, the context struct. Not installed; users include <tapegrad.h> only.
 */
#ifndef TG_CORE_H
#define TG_CORE_H

#include "tapegrad.h"

#include <stdarg.h>

#if defined(__GNUC__)
#define TG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TG_PRINTF(a, b)
#endif

/* The `tag` that the options constructors (tg_adam_opts_default,
 * tg_cross_entropy_opts_default, ...) write, so that a struct zeroed or built field by
 * field, where 0 would silently mean zero, is refused instead. */
#define TG_OPTS_TAG 0x74676f70u /* "tgop" */

/* ------------------------------------------------------------ errors (core/error.c) */

/* tg_fail(status, fmt, ...) records an error; it is public (tapegrad.h, "writing your
 * own op"). */
/* True (and nothing recorded) when any tensor in the list is NULL: an earlier op
 * failed, its message stands. When none pending, records one naming op/argument. */
bool tg_check_not_null(const char *op, const char *arg, const void *ptr);

/* Internal invariant (a bug, not bad input): print file:line and abort. */
#define TG_ASSERT(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) tg_assert_fail(#cond, __FILE__, __LINE__);                           \
    } while (0)
_Noreturn void tg_assert_fail(const char *cond, const char *file, int line);

/* ------------------------------------------------------------ sizes (core/size.c) */

/* Checked arithmetic: false (and *out unspecified) on overflow. THE RULE: every size —
 * element counts, bytes, output geometry, file payloads — is formed with these. */
bool tg_mul_i64(int64_t a, int64_t b, int64_t *out);
bool tg_add_i64(int64_t a, int64_t b, int64_t *out);
bool tg_mul_size(size_t a, size_t b, size_t *out);
bool tg_add_size(size_t a, size_t b, size_t *out);
/* Validates a tensor shape (0..4 dims, every dim >= 1, numel <= TG_MAX_NUMEL, bytes fit
 * a size_t) and returns its numel and float32 bytes (either may be NULL). On failure
 * records TG_ERR_SHAPE naming `op`, `what` ("output", "argument 'shape'") and the shape. */
bool tg_shape_check(const char *op, const char *what, tg_shape shape, int64_t *numel,
                    size_t *bytes);
/* count * elem_size in *bytes; false and TG_ERR_NOMEM naming op/what on overflow. */
bool tg_size_bytes(const char *op, const char *what, int64_t count, size_t elem_size,
                   size_t *bytes);
/* The CPU allocator checks blocks at least this large against tg_mem_available(). */
#define TG_MEM_CHECK_MIN ((size_t)64 << 20)

/* ------------------------------------------------------------ device memory (core/device.c) */

/* Aligned (64 B) allocation on a device; NULL and a recorded TG_ERR_NOMEM on failure. */
void *tg_device_alloc(tg_device device, size_t bytes);
void tg_device_free(tg_device device, void *ptr);
tg_status tg_device_copy(tg_device dst_device, void *dst, tg_device src_device,
                         const void *src, size_t bytes);
tg_status tg_device_zero(tg_device device, void *ptr, size_t bytes);
/* Every float of ptr[0 .. bytes) set to a NaN (all bits set): the arena's poison mode. */
tg_status tg_device_poison(tg_device device, void *ptr, size_t bytes);
/* Waits for all queued device work (a no-op on the CPU). */
tg_status tg_device_sync(tg_device device);

/* ------------------------------------------------------------ arenas (core/arena.c) */

/* A bump allocator over a list of blocks. Reset rewinds to the start and keeps the
 * blocks (their pages stay touched). When a step needed more than one block, a device
 * arena's reset replaces them by one block of the high-water size; a CPU arena keeps
 * them (re-faulting a merged block costs ~1.5 us a page) unless they hold more than
 * twice the high-water mark. */
typedef struct tg_arena_block {
    char *base;
    size_t size;
} tg_arena_block;

typedef struct tg_arena {
    tg_device device;
    bool poison;      /* TG_ARENA_POISON set: every allocation filled with NaN */
    tg_arena_block *blocks;
    int nblocks, cap;
    int cur;          /* block being filled */
    size_t off;       /* offset in blocks[cur] */
    size_t used;      /* bytes handed out this step (incl. alignment) */
    size_t peak;      /* high-water mark of used */
} tg_arena;

void tg_arena_init(tg_arena *a, tg_device device);
void tg_arena_release(tg_arena *a);
/* 64-byte aligned; NULL and TG_ERR_NOMEM recorded on failure. */
void *tg_arena_alloc(tg_arena *a, size_t bytes);
void tg_arena_reset(tg_arena *a);
/* A position to come back to: everything allocated after the mark is released by
 * rewind (used by gradcheck, which evaluates a graph many times within one step). */
typedef struct tg_arena_mark {
    int cur;
    size_t off, used;
} tg_arena_mark;
tg_arena_mark tg_arena_get_mark(const tg_arena *a);
void tg_arena_rewind(tg_arena *a, tg_arena_mark mark);

/* ------------------------------------------------------------ the context (core/context.c) */

struct tg_record;

#define TG_FREE_GRADS 32
#define TG_CTX_CONV_CHOICES TG_CONV_CHOICES_MAX

typedef struct tg_tape {
    struct tg_record *records;
    int len, cap;
    bool consumed;   /* tg_backward has replayed it */
    FILE *explain;   /* tg_tape_set_explain */
} tg_tape;

struct tg_ctx {
    tg_device device;
    tg_arena arena;      /* step tensors' data (on device), scratch, saved tensors */
    tg_arena host_arena; /* CUDA contexts: tensor structs and host-side saved data */
    bool host_arena_ready;
    tg_tape tape;
    bool grad_enabled;
    bool sync_timing; /* tg_ctx_set_sync_timing */
    tg_conv_algo conv_algo; /* tg_ctx_set_conv_algo */
    /* TG_CONV_ALGO_AUTO's choices, one per geometry, kept across tg_step_end (ops/
     * conv2d.c fills them; tg_ctx_conv_choices lists them). Full: the oldest is replaced. */
    tg_conv_choice conv_choices[TG_CTX_CONV_CHOICES];
    int nconv_choices, next_conv_choice;
    tg_rng rng;             /* tg_ctx_rng: randomness inside ops (dropout masks) */
    int next_id;
    uint32_t serial;     /* unique per context (tape ownership checks) */
    uint32_t generation; /* advanced by tg_step_end */
    bool anomaly;        /* tg_ctx_set_anomaly */
    /* Gradient buffers of intermediate tensors, released during backward once their
     * producing op has consumed them, and reused (by exact size) for later gradients:
     * the backward of a deep net then holds a few activation gradients, not all. */
    float *free_grad[TG_FREE_GRADS];
    int64_t free_grad_numel[TG_FREE_GRADS];
    int nfree_grads;
    /* Data parallel (core/dist.h): tg_backward reports its progress to `dist` so gradient
     * buckets start early; batchnorm reduces its statistics over `sync_bn`'s ranks. */
    struct tg_dist *dist;
    struct tg_dist *sync_bn;
    /* Advanced whenever the table of conv choices changes (a geometry timed, or
     * tg_ctx_set_conv_choices): core/dist_conv.c agrees the table across ranks when it
     * moved. */
    uint64_t conv_choices_version;
};

/* A step tensor whose data is allocated in the arena (uninitialised). */
tg_tensor *tg_ctx_tensor(tg_ctx *ctx, tg_shape shape);
/* A step tensor over existing storage (views share data and own nothing). */
tg_tensor *tg_ctx_tensor_view(tg_ctx *ctx, tg_shape shape, float *data);
/* Gives a step tensor that has none a zeroed gradient buffer (a released one of the same
 * size when there is one). */
tg_status tg_ctx_ensure_grad(tg_ctx *ctx, tg_tensor *t);
/* Gives t (which has no gradient buffer) one, zeroed or left uninitialised (for an op's
 * backward that writes it whole: tg_grad_fresh). */
tg_status tg_ctx_new_grad(tg_ctx *ctx, tg_tensor *t, bool zero);
/* Hands t's gradient buffer back for reuse and sets t->grad to NULL. */
void tg_ctx_release_grad(tg_ctx *ctx, tg_tensor *t);
/* Tape ownership: true when t (a step tensor) was made by ctx in the current step, or is
 * a parameter or NULL; otherwise records an error naming op and arg ("input 0", "loss"):
 * TG_ERR_STATE for a tensor from an earlier step of ctx, TG_ERR_ARG for another
 * context's tensor — unless !strict and it does not require grad (a constant input, such
 * as a batch kept in a data context, is fine). Another context's tensor that died at its
 * own tg_step_end cannot be detected cheaply. */
bool tg_ctx_check_owned(tg_ctx *ctx, const char *op, const char *arg, const tg_tensor *t,
                        bool strict);
bool tg_ctx_check_inputs(tg_ctx *ctx, const char *op, tg_tensor *const *ts, int n);
/* True (and why, in `why`, size bytes) when rows[0..n) cannot be a context's table of
 * TG_CONV_ALGO_AUTO choices: n outside 0..TG_CONV_CHOICES_MAX, a size outside 1..2^31-1,
 * a negative padding, two rows with one geometry. tg_ctx_set_conv_choices and checkpoint
 * loading (before anything changes) both ask it. */
bool tg_conv_choices_invalid(const tg_conv_choice *rows, int n, char *why, size_t size);
/* Whether two rows key the same geometry (n, c_in, h, w, c_out, padding, bias). */
bool tg_conv_choice_same_geometry(const tg_conv_choice *a, const tg_conv_choice *b);
/* Scratch memory from the step arena (valid until tg_step_end). */
void *tg_ctx_scratch(tg_ctx *ctx, size_t bytes);

/* ------------------------------------------------------------ parameter store (core/params.c) */

/* Optimizer state: `slots` flat arrays of tg_params_flat_numel floats each, contiguous and
 * zeroed, allocated on first request. Adding parameters afterwards is refused. A second
 * request must ask for the same number of slots (one optimizer per store). */
float *tg_params_state(tg_params *ps, int slots);
int tg_params_state_slots(const tg_params *ps);
/* Length of the flat trainable buffers including per-parameter alignment padding (kept
 * zero): what a fused optimizer loop runs over. */
int64_t tg_params_flat_numel(const tg_params *ps);
/* Names the model owning the store in its messages ("model 'mlp-784-128-10':
 * tg_params_add('fc1.weight', ...) needs ..."). */
void tg_params_set_label(tg_params *ps, const char *label);
/* Moves the CPU gradient store into caller-owned memory buf (tg_params_flat_numel floats,
 * 64-byte aligned), copying the gradients; the store stops owning it (tg_params_free
 * leaves it alone) and refuses to add trainable parameters. buf NULL moves the gradients
 * back into memory of the store's own. (core/dist.c: ranks on one host share their
 * gradient stores.) */
tg_status tg_params_place_grads(tg_params *ps, float *buf);
/* One watcher per store: tg_params_free calls gone(arg) before it frees anything, so the
 * owner of a pointer to the store (the tg_dist attached to it) can forget it. gone NULL
 * removes the watcher. tg_params_watcher: the current watcher's arg (NULL: none). */
void tg_params_watch(tg_params *ps, void (*gone)(void *), void *arg);
void *tg_params_watcher(const tg_params *ps);
/* The flat non-trainable buffer area (tg_params_buffer_numel floats). */
float *tg_params_buffers(tg_params *ps);

/* ------------------------------------------------------------ threads (core/threads.c) */

/* Parallel-for helper choice: we use OpenMP pragmas directly in kernels; this returns
 * the thread count they use. */
int tg_threads(void);
/* Applies the process-wide tg_set_num_threads count to the calling thread's OpenMP
 * setting (a cheap check when it already matches). Library entry points call it. */
void tg_threads_apply(void);
/* Adaptive mode: resizes the thread team to the cores other processes left (tg_step_end). */
void tg_threads_adapt(void);
/* Whether serial BLAS calls inside our OpenMP loops are safe (not OpenBLAS's pthreads build). */
bool tg_blas_nests(void);
/* Its rule: the cores left when others (in cores, measured) are taken, rounded, in [1, limit]. */
int tg_threads_for_load(int cores, double others, int limit);

/* ------------------------------------------------------------ SGEMM (core/gemm.c) */

/* C (M x N) = alpha op(A) op(B) + beta C, row-major (op(A) M x K, op(B) K x N; ta/tb:
 * A/B stored transposed), on this process's threads: one serial SGEMM per thread on a
 * slice of C's rows or columns, not OpenBLAS's own threads (they spin-wait for each
 * other and collapse on a busy machine; with OpenBLAS's pthreads build, which cannot run
 * inside our threads, they are all there is). Inside a parallel region, or below ~2 M
 * multiply-adds, one plain call. Same bits run to run at a given thread count; another
 * count may change the last bits (where a slice starts decides which OpenBLAS kernel
 * variant computes an element). */
void tg_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* ------------------------------------------------------------ short loops (core/pool.c) */

/* tg_parallel_range and tg_range_fn are public (include/tapegrad.h). */
/* The kernels' common use: fn over `items` items of about `per_item` elements each, as one
 * call fn(arg, 0, items) on the calling thread when they hold `serial_max` elements or
 * fewer (threads would cost more than they save), else on tg_parallel_range in chunks of
 * about `chunk` elements (at least one item each). */
void tg_parallel_items(int64_t items, double per_item, double serial_max, double chunk,
                       tg_range_fn fn, void *arg);
/* Who runs the chunks: the pool, or a static OpenMP loop over them. AUTO (the default)
 * reads the environment once: the pool when the process's OpenMP threads sleep as soon as
 * they wait (OMP_WAIT_POLICY=passive without GOMP_SPINCOUNT, or GOMP_SPINCOUNT=0), else
 * OpenMP (spinning OpenMP workers would hold the cores the pool's threads need). Chunks
 * are the same calls either way: the same bits. Setting it is for tests and benchmarks. */
typedef enum tg_range_exec { TG_RANGE_AUTO, TG_RANGE_POOL, TG_RANGE_OPENMP } tg_range_exec;
void tg_parallel_range_use(tg_range_exec e);
tg_range_exec tg_parallel_range_exec(void); /* the executor in use (never AUTO) */
/* True inside a chunk of tg_parallel_range on the pool (run by a pool thread or by the
 * caller): a nested tg_parallel_range runs inline there, so a kernel that would split
 * its work (tg_sgemm) makes one serial call instead, as inside an OpenMP region. */
bool tg_parallel_range_nested(void);
/* Since the process started: jobs run on more than one thread's behalf (pool or OpenMP),
 * their chunks, and how many of those a thread other than the caller ran (on a busy
 * machine, the share the caller did alone shows here). */
typedef struct tg_range_stats {
    int64_t jobs, chunks, helper_chunks;
} tg_range_stats;
tg_range_stats tg_parallel_range_stats(void);

/* ------------------------------------------------------------ time (core/threads.c) */
double tg_now(void); /* monotonic seconds */

#endif /* TG_CORE_H */
