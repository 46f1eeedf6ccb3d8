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

/* ------------------------------------------------------------ errors (core/error.c) */

/* Records `status` and a formatted message unless an error is already pending (the
 * first error is the one worth reading). Returns status, so `return tg_fail(...)`. */
tg_status tg_fail(tg_status status, const char *fmt, ...) TG_PRINTF(2, 3);
/* True (and nothing recorded) when any tensor in the list is NULL: an earlier op
 * failed, its message stands. When none pending, records one naming op/argument. */
bool tg_check_not_null(const char *op, const char *arg, const void *ptr);

/* Internal invariant (a bug, not bad input): print file:line and abort. */
#define TG_ASSERT(cond)                                                                   \
    do {                                                                                  \
        if (!(cond)) tg_assert_fail(#cond, __FILE__, __LINE__);                           \
    } while (0)
_Noreturn void tg_assert_fail(const char *cond, const char *file, int line);

/* ------------------------------------------------------------ device memory (core/device.c) */

/* Aligned (64 B) allocation on a device; NULL and a recorded TG_ERR_NOMEM on failure. */
void *tg_device_alloc(tg_device device, size_t bytes);
void tg_device_free(tg_device device, void *ptr);
tg_status tg_device_copy(tg_device dst_device, void *dst, tg_device src_device,
                         const void *src, size_t bytes);
tg_status tg_device_zero(tg_device device, void *ptr, size_t bytes);
/* Waits for all queued device work (a no-op on the CPU). */
tg_status tg_device_sync(tg_device device);

/* ------------------------------------------------------------ arenas (core/arena.c) */

/* A bump allocator over a list of blocks. Reset rewinds to the start and keeps the
 * blocks (their pages stay touched); when a step needed more than one block, reset
 * replaces them by one block of the high-water size, so later steps are contiguous. */
typedef struct tg_arena_block {
    char *base;
    size_t size;
} tg_arena_block;

typedef struct tg_arena {
    tg_device device;
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
    int next_id;
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
};

/* A step tensor whose data is allocated in the arena (uninitialised). */
tg_tensor *tg_ctx_tensor(tg_ctx *ctx, tg_shape shape);
/* A step tensor over existing storage (views share data and own nothing). */
tg_tensor *tg_ctx_tensor_view(tg_ctx *ctx, tg_shape shape, float *data);
/* Gives a step tensor that has none a zeroed gradient buffer (a released one of the same
 * size when there is one). */
tg_status tg_ctx_ensure_grad(tg_ctx *ctx, tg_tensor *t);
/* Hands t's gradient buffer back for reuse and sets t->grad to NULL. */
void tg_ctx_release_grad(tg_ctx *ctx, tg_tensor *t);
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
/* The flat non-trainable buffer area (tg_params_buffer_numel floats). */
float *tg_params_buffers(tg_params *ps);

/* ------------------------------------------------------------ threads (core/threads.c) */

/* Parallel-for helper choice: we use OpenMP pragmas directly in kernels; this returns
 * the thread count they use. */
int tg_threads(void);

/* ------------------------------------------------------------ time (core/threads.c) */
double tg_now(void); /* monotonic seconds */

#endif /* TG_CORE_H */
