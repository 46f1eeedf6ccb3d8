/*
 * tapegrad.h — a small, fast, readable training framework in C11.
 *
 * OVERVIEW
 * --------
 * Tensors are float32, NCHW, contiguous, up to 4-D. Every op you call on a context
 * (`tg_ctx`) runs immediately and, when one of its inputs requires a gradient, appends
 * one record to the context's tape. `tg_backward(ctx, loss)` walks the tape in reverse
 * (reverse recording order is a valid topological order) and ADDS dL/dx into the
 * `grad` buffer of every tensor that requires it.
 *
 * Memory comes from two kinds of arena, never from per-tensor malloc/free:
 *   - a parameter store (`tg_params`) holds parameters, their gradients and optimizer
 *     state as flat buffers; each parameter is a view at an offset. zero_grad is one
 *     memset, an optimizer step one loop.
 *   - the context's step arena holds inputs, activations, saved tensors, activation
 *     gradients, scratch and the tape. `tg_step_end(ctx)` rewinds it after each step;
 *     its pages are kept, so a training loop allocates nothing after the first step.
 *
 * Errors never abort: an op given bad input returns NULL and records one message
 * (op, argument, shapes, hint) readable with `tg_error_message()`. Ops given NULL
 * return NULL without overwriting the first message, so a whole forward pass can be
 * written without checks and tested once at the end. `tg_backward` and
 * `tg_optim_step` return a status and change nothing while an error is pending.
 * Sizes never wrap (no tensor holds more than TG_MAX_NUMEL elements), NaN/Inf can be
 * caught where they appear (anomaly mode), and files never hang or are read before their
 * size is checked: see the block "sizes, non-finite values, files" near the end.
 *
 * WORKED EXAMPLE (tests/test_example.c compiles and runs exactly this)
 * ---------------------------------------------------------------------
 *   // Fit y = 3x - 1 with a 1→16→1 MLP.
 *   #include <tapegrad.h>
 *   #include <stdio.h>
 *
 *   int main(void) {
 *       tg_rng rng;
 *       tg_rng_seed(&rng, 42);
 *       tg_params *ps = tg_params_new(TG_DEVICE_CPU);
 *       tg_tensor *w1 = tg_params_add(ps, "fc1.weight", tg_shape2(16, 1));
 *       tg_tensor *b1 = tg_params_add(ps, "fc1.bias", tg_shape1(16));
 *       tg_tensor *w2 = tg_params_add(ps, "fc2.weight", tg_shape2(1, 16));
 *       tg_tensor *b2 = tg_params_add(ps, "fc2.bias", tg_shape1(1));
 *       tg_init_linear(&rng, w1, b1);
 *       tg_init_linear(&rng, w2, b2);
 *       tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
 *       tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
 *
 *       float xs[32], ys[32];
 *       for (int i = 0; i < 32; i++) { xs[i] = i / 16.0f - 1; ys[i] = 3 * xs[i] - 1; }
 *       for (int step = 0; step < 200; step++) {
 *           tg_tensor *x = tg_tensor_from(ctx, tg_shape2(32, 1), xs);
 *           tg_tensor *y = tg_tensor_from(ctx, tg_shape2(32, 1), ys);
 *           tg_tensor *h = tg_relu(ctx, tg_linear(ctx, x, w1, b1));
 *           tg_tensor *loss = tg_mse_loss(ctx, tg_linear(ctx, h, w2, b2), y);
 *           tg_optim_zero_grad(opt);
 *           if (tg_backward(ctx, loss) != TG_OK || tg_optim_step(opt) != TG_OK) {
 *               fprintf(stderr, "%s\n", tg_error_message());
 *               return 1;
 *           }
 *           if (step % 50 == 0) printf("step %3d  loss %.5f\n", step, loss->data[0]);
 *           tg_step_end(ctx);  // rewind the step arena and the tape
 *       }
 *       tg_ctx_free(ctx);
 *       tg_optim_free(opt);
 *       tg_params_free(ps);
 *       return 0;
 *   }
 *
 * CONVENTIONS
 *   - Names: tg_<object>_<verb> (tg_tape_print), ops as tg_<op> (tg_conv2d).
 *   - Every _free accepts NULL.
 *   - Semantics follow PyTorch (verified by golden tests): losses reduce by mean,
 *     batchnorm's running variance is unbiased, ReLU's gradient at exactly 0 is 0.
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_VERSION_STRING "0.1.0"

/* _Alignas is C11; C++ (the CUDA sources include this header) spells it alignas. */
#ifdef __cplusplus
#define TG_ALIGNAS(n) alignas(n)
#else
#define TG_ALIGNAS(n) _Alignas(n)
#endif

/* ---------------------------------------------------------------- errors */

typedef enum tg_status {
    TG_OK = 0,
    TG_ERR_ARG,         /* an argument has a bad value (NULL, out of range, ...) */
    TG_ERR_SHAPE,       /* tensor shapes do not fit together */
    TG_ERR_STATE,       /* the call is not valid now (tape consumed, error pending) */
    TG_ERR_NOMEM,       /* out of memory */
    TG_ERR_IO,          /* a file could not be read or written */
    TG_ERR_FORMAT,      /* a file is truncated, corrupted or of another model */
    TG_ERR_DEVICE,      /* no such device, or a device call failed */
    TG_ERR_UNSUPPORTED, /* no implementation for this device/op combination */
    TG_ERR_NONFINITE,   /* a NaN or infinity where finite values are required (anomaly
                           mode, optimizer skip, checkpoint save) */
} tg_status;

/* The first error recorded since the last tg_error_clear() (thread-local). */
tg_status tg_error(void);
/* Its message ("" when none). The pointer stays valid until the next clear. */
const char *tg_error_message(void);
void tg_error_clear(void);
const char *tg_status_name(tg_status status);

/* ---------------------------------------------------------------- devices, threads */

typedef enum tg_device { TG_DEVICE_CPU = 0, TG_DEVICE_CUDA = 1, TG_DEVICE_COUNT } tg_device;

const char *tg_device_name(tg_device device);
/* TG_OK when a CUDA device can be used; otherwise a status and a message saying why
 * ("no CUDA device available: built without CUDA", "... cudaGetDeviceCount: ..."). */
tg_status tg_cuda_check(void);

/* One knob for all CPU parallelism: our loops and OpenBLAS. n <= 0 means all the
 * cores this process may run on (its affinity mask: a rank that mpirun bound to one core
 * gets 1). Before any call, tg_get_num_threads reports what OpenMP would use
 * (OMP_NUM_THREADS, else the affinity mask). */
void tg_set_num_threads(int n);
int tg_get_num_threads(void);
/* Adaptive thread count (off by default in the library; the `tapegrad` program turns it on
 * unless --threads is given). While on, tg_step_end measures, first after 0.1 s and then
 * at most every 0.25 s, how many cores OTHER processes used since the last look
 * (/proc/stat minus this process's own CPU time) and runs the following ops with the
 * cores left, rounded, between 1 and the count set by tg_set_num_threads (all cores by
 * default): OpenMP teams whose threads wait for time slices at every barrier are what
 * makes a busy machine 10-30x slower instead of 2x. tg_get_num_threads returns the count
 * in use now; turning it off restores the count set. Timings taken while the count
 * changed are flagged by the `tapegrad` tools. Its bookkeeping is process-wide and
 * unlocked: use it when one thread drives training. */
void tg_set_threads_adaptive(bool on);
bool tg_threads_adaptive(void);
/* How many times adaptive mode changed the thread count so far (process-wide). */
int tg_threads_adaptations(void);
/* The BLAS kernels in use: OpenBLAS's core name ("SkylakeX", "Haswell", "Prescott", ...),
 * or "not OpenBLAS". */
const char *tg_blas_core(void);
/* NULL when the BLAS kernels fit this CPU; otherwise the OPENBLAS_CORETYPE to set before
 * the program starts (OpenBLAS chooses when it is loaded): a CPU newer than the OpenBLAS
 * release falls back to its oldest x86-64 kernels ("Prescott"), 5-6x slower SGEMM on an
 * AVX-512 CPU. tg_runtime_defaults sets it. */
const char *tg_blas_core_better(void);
/* The loop every built-in CPU kernel runs on, for your own ops' kernels too: fn(arg, begin,
 * end) over [0, n) in chunks of `grain` elements (<= 0: about 8 chunks per thread; raised
 * so that there are at most 65,535), run by the calling thread and by whichever of the
 * library's threads wake while chunks are left. Nothing waits for a thread that has not
 * started, so a loop does not stall when other processes hold the cores (an OpenMP
 * `parallel for` waits at its closing barrier for every thread of its team). fn must
 * compute each element the same whoever runs its chunk (write only the chunk's own
 * outputs; give reductions one partial per chunk and add them in order afterwards): the
 * results are then the same bits at every thread count. Runs inline with one thread, in
 * an OpenMP region, inside another chunk, or while another thread's loop has the pool.
 * With libgomp's spinning wait policy the chunks run as a static OpenMP loop instead
 * (spinning OpenMP threads would hold the cores; tg_runtime_defaults turns spinning off). */
typedef void (*tg_range_fn)(void *arg, int64_t begin, int64_t end);
void tg_parallel_range(int64_t n, int64_t grain, tg_range_fn fn, void *arg);

/* Call first thing in main(), before any other tapegrad or OpenMP call: runs the program
 * with the settings tapegrad measured for a machine other processes also use. OpenMP's
 * waiting threads sleep at once instead of spinning (OMP_WAIT_POLICY=passive,
 * GOMP_SPINCOUNT=0: with one busy process per core a small CNN's epoch took 14-30x its
 * idle time under libgomp's default spin, about 2.5x with this), and OpenBLAS gets the
 * kernels of tg_blas_core_better when it chose older ones. Both are read when the program
 * is loaded, so the function sets the variables and re-executes the program once (execv
 * of /proc/self/exe, the same argv; buffered output is flushed first); the second start
 * returns at once. Everything main() did before the call runs twice: call it first.
 * Variables the user set win (nothing is changed), and TAPEGRAD_OMP_DEFAULTS=off /
 * TAPEGRAD_BLAS_FIXED=off (any value) keep libgomp's defaults / OpenBLAS's choice.
 * Returns true when the settings are in force (or the user's own are), false when they
 * could not be applied: no /proc, argv NULL, under valgrind, or started through the
 * dynamic loader (`ld.so prog`); the program then goes on with the library defaults. */
bool tg_runtime_defaults(char **argv);

/* ---------------------------------------------------------------- shapes, tensors */

#define TG_MAX_DIMS 4

typedef struct tg_shape {
    int ndim;               /* 0 (a scalar) .. TG_MAX_DIMS */
    int64_t dim[TG_MAX_DIMS];
} tg_shape;

tg_shape tg_shape0(void);
tg_shape tg_shape1(int64_t d0);
tg_shape tg_shape2(int64_t d0, int64_t d1);
tg_shape tg_shape3(int64_t d0, int64_t d1, int64_t d2);
tg_shape tg_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* The product of the dims, or -1 when a dim is negative, ndim is out of range or the
 * product exceeds TG_MAX_NUMEL (it never wraps). */
int64_t tg_shape_numel(tg_shape shape);
bool tg_shape_equal(tg_shape a, tg_shape b);
/* Writes "(1, 3, 32, 32)" into buf; returns buf. */
char *tg_shape_str(tg_shape shape, char *buf, size_t size);

/* A tensor. The struct is public so learners can look inside; treat the fields as
 * read-only. `data` and `grad` point into an arena (the step arena of a context, or a
 * parameter store) on `device`. `grad` is NULL until a backward pass needs it. */
typedef struct tg_tensor {
    tg_shape shape;
    int64_t numel;
    tg_device device;
    float *data;
    float *grad;
    bool requires_grad;
    bool is_param;       /* lives in a parameter store */
    const char *name;    /* parameters: their name; others: NULL */
    int id;              /* creation order within the step (tape printing) */
    uint64_t stamp;      /* owner context and step (tape ownership checks); 0: parameter */
} tg_tensor;

/* ---------------------------------------------------------------- rng, initialisation */

typedef struct tg_rng {
    uint64_t s[4]; /* xoshiro256** state */
} tg_rng;

void tg_rng_seed(tg_rng *rng, uint64_t seed);
uint64_t tg_rng_next(tg_rng *rng);
double tg_rng_uniform(tg_rng *rng);           /* [0, 1) */
double tg_rng_normal(tg_rng *rng);            /* N(0, 1) */
int64_t tg_rng_below(tg_rng *rng, int64_t n); /* uniform integer in [0, n) */
void tg_rng_fill_uniform(tg_rng *rng, float *x, int64_t n, float lo, float hi);
void tg_rng_fill_normal(tg_rng *rng, float *x, int64_t n, float mean, float std);

/* Setting values: copy n = t->numel floats from host memory into t (a parameter, a buffer
 * or a step tensor, on either device), or read them back with tg_tensor_to_host. */
tg_status tg_tensor_copy_from_host(tg_tensor *t, const float *host);
/* Initialisers for parameters of either device, drawn on the host from rng (seeded:
 * the same seed gives the same values). */
tg_status tg_init_constant(tg_tensor *t, float value);
tg_status tg_init_uniform(tg_rng *rng, tg_tensor *t, float lo, float hi);
tg_status tg_init_normal(tg_rng *rng, tg_tensor *t, float mean, float std);
/* nn.BatchNorm2d / nn.LayerNorm's start: weight 1, bias 0 (either may be NULL). */
tg_status tg_init_batchnorm(tg_tensor *weight, tg_tensor *bias);

/* PyTorch's default initialisation of nn.Conv2d / nn.Linear: weight and bias uniform in
 * ±1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)). bias may be NULL. Works on
 * parameters of either device. */
tg_status tg_init_conv2d(tg_rng *rng, tg_tensor *weight, tg_tensor *bias);
tg_status tg_init_linear(tg_rng *rng, tg_tensor *weight, tg_tensor *bias);

/* ---------------------------------------------------------------- parameter store */

typedef struct tg_params tg_params;

tg_params *tg_params_new(tg_device device);
void tg_params_free(tg_params *ps);
/* A trainable parameter, zero-initialised, with a gradient buffer. The returned pointer
 * stays valid for the life of the store, even when later adds grow its buffers. While an
 * error is pending it returns NULL and allocates nothing, so a constructor adding many
 * parameters stops at its first failure. */
tg_tensor *tg_params_add(tg_params *ps, const char *name, tg_shape shape);
/* A non-trainable buffer (batchnorm running statistics): saved in checkpoints, never
 * touched by optimizers, not counted as a trainable parameter. */
tg_tensor *tg_params_add_buffer(tg_params *ps, const char *name, tg_shape shape, float fill);
int tg_params_count(const tg_params *ps);          /* parameters + buffers */
tg_tensor *tg_params_at(const tg_params *ps, int i);
tg_tensor *tg_params_find(const tg_params *ps, const char *name);
int64_t tg_params_numel(const tg_params *ps);      /* trainable elements */
int64_t tg_params_buffer_numel(const tg_params *ps);
tg_device tg_params_device(const tg_params *ps);
/* Flat views: all trainable values, their gradients (tg_params_numel floats each). */
float *tg_params_data(tg_params *ps);
float *tg_params_grad(tg_params *ps);
/* Zeroes every gradient (queued on a GPU); the status of the device call. */
tg_status tg_params_zero_grad(tg_params *ps);

/* ---------------------------------------------------------------- context, step arena */

typedef struct tg_ctx tg_ctx;

tg_ctx *tg_ctx_new(tg_device device);
void tg_ctx_free(tg_ctx *ctx);
tg_device tg_ctx_device(const tg_ctx *ctx);

/* Step-arena tensors. _new leaves data uninitialised; _zeros clears it; _from copies
 * numel floats from host memory (to the device when the context is on CUDA). */
tg_tensor *tg_tensor_new(tg_ctx *ctx, tg_shape shape);
tg_tensor *tg_tensor_zeros(tg_ctx *ctx, tg_shape shape);
tg_tensor *tg_tensor_from(tg_ctx *ctx, tg_shape shape, const float *host);
/* Copy a tensor's values (or its grad when grad is true) to host memory. */
tg_status tg_tensor_to_host(const tg_tensor *t, float *host, bool grad);
/* Mark a step tensor as needing a gradient (for inputs you want dL/dx of). */
void tg_tensor_set_requires_grad(tg_tensor *t, bool requires_grad);

/* Ends a step: rewinds the step arena and clears the tape. Every step tensor is
 * invalid afterwards; parameters are untouched. */
void tg_step_end(tg_ctx *ctx);
size_t tg_ctx_arena_used(const tg_ctx *ctx);  /* bytes in use in this step */
size_t tg_ctx_arena_peak(const tg_ctx *ctx);  /* high-water mark since creation */

/* ---------------------------------------------------------------- tape, autograd */

/* Grad mode: while disabled, ops record nothing (evaluation, optimizer math).
 * Returns the previous mode so scopes nest:  bool was = tg_set_grad_enabled(ctx, false);
 * ...; tg_set_grad_enabled(ctx, was); */
bool tg_set_grad_enabled(tg_ctx *ctx, bool enabled);
bool tg_is_grad_enabled(const tg_ctx *ctx);

/* Seeds dL/dloss = 1 (loss must have one element) and replays the tape in reverse,
 * adding into the grad of every leaf that requires it: parameters and the step tensors
 * you created. Gradients of intermediate results are released (grad = NULL) as soon as
 * the op that produced them has used them, and their memory is reused, as PyTorch does
 * with non-leaf tensors. A tape can be replayed once; a second call before tg_step_end
 * is TG_ERR_STATE. */
tg_status tg_backward(tg_ctx *ctx, tg_tensor *loss);
/* The same, seeding dL/dout with `dout` (out->numel floats on out's device). */
tg_status tg_backward_with(tg_ctx *ctx, tg_tensor *out, const float *dout);

int tg_tape_length(const tg_ctx *ctx);
/* A table: index, op, input shapes -> output shape, saved bytes, forward/backward ms. */
void tg_tape_print(const tg_ctx *ctx, FILE *f);
/* Graphviz DOT: tensors as boxes, ops as ellipses (render with `dot -Tpng`). */
tg_status tg_tape_write_dot(const tg_ctx *ctx, FILE *f);
/* While set, tg_backward logs each step: the op, its incoming gradient's shape and L2
 * norm, and one line on what its backward computes. NULL turns it off. */
void tg_tape_set_explain(tg_ctx *ctx, FILE *f);

/* Per-op profile of the current tape (after a forward and, for backward times, a
 * backward). FLOPs and bytes moved are the op's own model of its work. */
typedef struct tg_op_profile {
    const char *op;          /* "conv2d", "batchnorm2d", ... */
    char detail[48];         /* variant, e.g. "dense 3x3", "depthwise 3x3", "pointwise" */
    int ninputs;
    tg_shape in_shape[4];    /* ndim -1 where an optional input is absent */
    tg_shape out_shape;
    double fwd_seconds, bwd_seconds;
    double fwd_flops, fwd_bytes, bwd_flops, bwd_bytes;
    size_t saved_bytes;
} tg_op_profile;
/* Fills up to max_rows rows in recording order; returns the tape length. */
int tg_tape_profile(const tg_ctx *ctx, tg_op_profile *rows, int max_rows);
/* Timing mode: when on, every op waits for the device before and after it runs so the
 * per-op times are real on asynchronous devices (CUDA). Off by default; no effect on CPU. */
void tg_ctx_set_sync_timing(tg_ctx *ctx, bool on);
/* Waits until all queued work of the context's device has finished. */
tg_status tg_ctx_sync(tg_ctx *ctx);

/* ---------------------------------------------------------------- ops */

/* How dense 3x3 convolutions are computed on the CPU (tg_ctx_set_conv_algo).
 *   TG_CONV_ALGO_GEMM      tiled im2col + SGEMM for every convolution: the same arithmetic
 *                          as the definition, fp32 rounding only.
 *   TG_CONV_ALGO_WINOGRAD  Winograd F(4x4, 3x3) for convolutions with a 3x3 kernel, stride
 *                          1, dilation 1, groups 1 and padding 0..2 (forward, dx and dW):
 *                          4x fewer multiplies, larger rounding error (about 5e-6 of the
 *                          largest output, 10-30x the GEMM path's; tests/test_winograd.c
 *                          bounds it). Other geometries, and the CUDA backend, keep
 *                          their usual kernels; the profile's detail column says which
 *                          ran ("winograd 3x3").
 *   TG_CONV_ALGO_AUTO      (the default of a new context) per geometry the faster of the
 *                          two, as cuDNN's benchmark mode: the first time the context
 *                          records a convolution that Winograd supports (CPU), both
 *                          forwards run on the live operands into scratch (after one
 *                          untimed warm-up each: first runs pay page faults; the better
 *                          of two timed runs each) and the faster is kept in a small
 *                          table in the context, keyed by the full geometry (batch,
 *                          channels, size, padding, bias). A geometry met again with
 *                          another batch size takes the choice of the closest batch size
 *                          already in the table, untimed (a last, shorter batch and an
 *                          evaluation batch are not timed again).
 *                          The table survives tg_step_end, so each geometry is timed once
 *                          per context; the profile's detail says "auto: winograd 3x3" or
 *                          "auto: dense 3x3". On CUDA contexts AUTO changes nothing (the
 *                          GPU keeps its kernels). The `tapegrad` commands train,
 *                          mobilenet and the examples use it; forum pins GEMM.
 * The choice is taken when the op is recorded; its backward uses the same algorithm.
 *
 * The contract under AUTO (the default): within a context the choices are deterministic
 * (a geometry keeps its first choice; tg_ctx_conv_choices lists them), so every step after
 * the first use of a geometry computes it the same way. Across processes a timing decides,
 * so two fresh processes may choose, and round, differently (cuDNN's benchmark mode has the
 * same property). Two things keep the guarantees that need the same bits:
 *   - checkpoints carry the choices (tg_train_state.conv_choices, filled from
 *     tg_ctx_conv_choices before a save and handed to tg_ctx_set_conv_choices after a
 *     load): a resumed run in a new process makes the choices the run it continues made,
 *     and ends byte-identical to that run had it gone on (`tapegrad train --resume`);
 *   - data-parallel ranks (tg_dist_attach) agree: tg_dist_sync_grads gives every rank
 *     rank 0's choices (and the geometries only other ranks met), from the step after a
 *     geometry's first use on;
 *   - a program that must match other processes bit for bit without a checkpoint (golden
 *     tests at GEMM-level tolerances, two fresh runs compared byte for byte) pins
 *     TG_CONV_ALGO_GEMM (or WINOGRAD), or seeds the same choices into every context with
 *     tg_ctx_set_conv_choices. */
typedef enum tg_conv_algo {
    TG_CONV_ALGO_GEMM = 0,
    TG_CONV_ALGO_WINOGRAD = 1,
    TG_CONV_ALGO_AUTO = 2,
} tg_conv_algo;
/* Sets the algorithm for the convolutions recorded on ctx from now on. An unknown value is
 * refused (TG_ERR_ARG) and the setting stays as it was. Choices AUTO already made are kept
 * (setting AUTO again does not re-time them). */
tg_status tg_ctx_set_conv_algo(tg_ctx *ctx, tg_conv_algo algo);
/* ctx's setting: TG_CONV_ALGO_AUTO for a new context (CPU or CUDA) and for NULL. */
tg_conv_algo tg_ctx_conv_algo(const tg_ctx *ctx);

/* ---- issue 14 (timing14b): what TG_CONV_ALGO_AUTO chose */
/* One geometry AUTO timed: x (n, c_in, h, w) with a (c_out, c_in, 3, 3) weight. */
typedef struct tg_conv_choice {
    int64_t n, c_in, h, w, c_out;
    int pad_h, pad_w;
    bool bias;
    bool winograd;                  /* the choice: Winograd (true) or im2col + SGEMM */
    double gemm_seconds, winograd_seconds; /* the timed forwards that decided it */
} tg_conv_choice;
/* Copies up to max_rows of ctx's choices (oldest first) into rows (may be NULL when
 * max_rows is 0) and returns how many the context holds (at most 64; beyond that the
 * oldest is replaced and timed again on its next use). */
int tg_ctx_conv_choices(const tg_ctx *ctx, tg_conv_choice *rows, int max_rows);
/* ---- end issue 14 (timing14b) */

/* ---- issue 14 (auto14): AUTO's choices seeded (checkpoint resume) */
/* The most choices a context holds (and a checkpoint carries). */
#define TG_CONV_CHOICES_MAX 64
/* Replaces ctx's table of choices with rows[0..nrows) (oldest first, as
 * tg_ctx_conv_choices lists them): under TG_CONV_ALGO_AUTO a geometry found there runs the
 * recorded algorithm without being timed, so a context seeded with another context's
 * choices computes the same bits as it. Only the geometry and `winograd` are read; the
 * seeded rows list 0 seconds for both timings (not timed in this context). nrows 0 empties
 * the table (every geometry is timed again on its first use). Works under every setting
 * (the table is consulted under AUTO only) and on CUDA contexts (where it is unused).
 * Refused (TG_ERR_ARG, the table unchanged): ctx NULL, nrows outside
 * 0..TG_CONV_CHOICES_MAX, rows NULL with nrows > 0, a row with a size (n, c_in, h, w,
 * c_out) outside 1..2^31-1 or a negative padding, two rows with the same geometry. */
tg_status tg_ctx_set_conv_choices(tg_ctx *ctx, const tg_conv_choice *rows, int nrows);
/* ---- end issue 14 (auto14) */

typedef struct tg_conv2d_opts {
    int stride_h, stride_w;     /* 0 means 1 */
    int pad_h, pad_w;           /* zero padding on each side */
    int dilation_h, dilation_w; /* 0 means 1 */
    int groups;                 /* 0 means 1; = C_in gives a depthwise conv */
} tg_conv2d_opts;

/* Square stride/padding/dilation, as PyTorch's int arguments. */
tg_conv2d_opts tg_conv2d_opts_make(int stride, int padding, int dilation, int groups);

/* x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW), bias (C_out) or NULL
 * -> (N, C_out, OH, OW), OH = (H + 2 pad_h - dilation_h (KH - 1) - 1) / stride_h + 1. */
tg_tensor *tg_conv2d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts);
/* x (N, C_in, L), weight (C_out, C_in/groups, K), bias (C_out) or NULL -> (N, C_out, OL).
 * conv2d with H = 1; uses opts' _w fields. */
tg_tensor *tg_conv1d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts);

/* x (N, C, H, W); weight, bias (C) or both NULL; running_mean, running_var (C) buffers.
 * training: normalise with batch statistics (biased variance) and update the running
 * ones with momentum (unbiased variance); eval: use the running statistics. PyTorch's
 * defaults are momentum 0.1, eps 1e-5. */
tg_tensor *tg_batchnorm2d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                          tg_tensor *running_mean, tg_tensor *running_var, bool training,
                          float momentum, float eps);

/* max(x, 0) and min(max(x, 0), 6). NaN propagates as in PyTorch: the output is NaN and
 * the gradient there is dy (0 only where x <= 0, or x >= 6 for relu6). */
tg_tensor *tg_relu(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_relu6(tg_ctx *ctx, tg_tensor *x);
/* ---- issue 12 part A: elementwise and activations (ops/elementwise.c, ops/unary.c) ----
 * Binary ops broadcast as NumPy/PyTorch: shapes aligned at the last dim, each pair of
 * dims equal or one of them 1 (missing leading dims count as 1), up to 4-D; the result
 * takes the larger of each pair. The gradient of a broadcast input is summed over the
 * dims it was broadcast along. Same shapes (residual adds) take a plain loop. */
tg_tensor *tg_add(tg_ctx *ctx, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_ctx *ctx, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_ctx *ctx, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_ctx *ctx, tg_tensor *a, tg_tensor *b);
/* Element-wise functions of one tensor; y has x's shape. A NaN constant is refused. */
tg_tensor *tg_add_scalar(tg_ctx *ctx, tg_tensor *x, float c); /* x + c */
tg_tensor *tg_scale(tg_ctx *ctx, tg_tensor *x, float c);      /* c * x */
tg_tensor *tg_neg(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_exp(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_log(tg_ctx *ctx, tg_tensor *x);                 /* natural log; NaN below 0 */
tg_tensor *tg_sqrt(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_pow(tg_ctx *ctx, tg_tensor *x, float p);        /* x^p, constant p (powf) */
tg_tensor *tg_tanh(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_sigmoid(tg_ctx *ctx, tg_tensor *x);
/* x Phi(x) (erf form, PyTorch's default) or, with tanh_approx, PyTorch's
 * approximate='tanh': x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
tg_tensor *tg_gelu(tg_ctx *ctx, tg_tensor *x, bool tanh_approx);
tg_tensor *tg_silu(tg_ctx *ctx, tg_tensor *x);                /* x sigmoid(x) */
/* x > 0 ? x : negative_slope x (PyTorch's default slope is 0.01). */
tg_tensor *tg_leaky_relu(tg_ctx *ctx, tg_tensor *x, float negative_slope);
/* min(max(x, lo), hi); lo <= hi (use -INFINITY/INFINITY for one-sided). The gradient
 * passes where lo <= x <= hi, bounds included, as PyTorch. */
tg_tensor *tg_clamp(tg_ctx *ctx, tg_tensor *x, float lo, float hi);
/* ---- end of issue 12 part A ---- */
/* A view with another shape of the same numel; one dim may be -1 (inferred). */
tg_tensor *tg_reshape(tg_ctx *ctx, tg_tensor *x, tg_shape shape);
/* (N, ...) -> (N, rest). */
tg_tensor *tg_flatten(tg_ctx *ctx, tg_tensor *x);
/* x (..., in) with 2 to 4 dims, weight (out, in), bias (out) or NULL -> (..., out): the
 * leading dims are folded into one SGEMM's rows, so (B, T, in) costs what (B T, in) does. */
tg_tensor *tg_linear(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias);
/* (N, C, H, W) -> (N, C, 1, 1), the mean over H and W. */
tg_tensor *tg_global_avg_pool(tg_ctx *ctx, tg_tensor *x);

typedef struct tg_pool2d_opts {
    int kernel_h, kernel_w;
    int stride_h, stride_w; /* 0 means the kernel size (PyTorch's default) */
    int pad_h, pad_w;       /* implicit padding: -inf for max, zeros counted for avg */
} tg_pool2d_opts;
tg_pool2d_opts tg_pool2d_opts_make(int kernel, int stride, int padding);
/* A window holding NaN gives NaN, and its gradient goes to that NaN (the last one in
 * row-major order), as PyTorch; ties go to the first maximum. */
tg_tensor *tg_max_pool2d(tg_ctx *ctx, tg_tensor *x, tg_pool2d_opts opts);
/* count_include_pad = true, as PyTorch's default. */
tg_tensor *tg_avg_pool2d(tg_ctx *ctx, tg_tensor *x, tg_pool2d_opts opts);

/* >>> semantics (issue 10): cross entropy options ---------------------------------- */
/* Cross entropy with integer class targets (fused log-softmax + NLL), PyTorch's
 * F.cross_entropy: logits (N, C) with target[N], (N, C, L) with target[N*L] laid out
 * (N, L), or per pixel (N, C, H, W) with target[N*H*W] laid out (N, H, W). target is
 * host memory; it is copied. -> scalar: the mean over the targets that are not
 * ignore_index (-100 here, as PyTorch); NaN if every target is ignored (PyTorch's 0/0),
 * and ignored positions get zero gradient. Accurate at any logit scale (the max and the
 * log-sum are kept apart, as PyTorch's float32 log_softmax). */
tg_tensor *tg_cross_entropy(tg_ctx *ctx, tg_tensor *logits, const int32_t *target);

/* Options: start from tg_cross_entropy_opts_default() and change fields; a struct not
 * made by it (a zeroed one would ignore class 0) is refused with a message. */
typedef struct tg_cross_entropy_opts {
    int32_t ignore_index; /* targets equal to it are left out of loss and mean; -100 */
    uint32_t tag;         /* set by tg_cross_entropy_opts_default(); do not touch */
} tg_cross_entropy_opts;
tg_cross_entropy_opts tg_cross_entropy_opts_default(void);
tg_tensor *tg_cross_entropy_with(tg_ctx *ctx, tg_tensor *logits, const int32_t *target,
                                 tg_cross_entropy_opts opts);
/* <<< semantics (issue 10): cross entropy options ---------------------------------- */
/* mean((pred - target)^2) over all elements -> scalar. */
tg_tensor *tg_mse_loss(tg_ctx *ctx, tg_tensor *pred, tg_tensor *target);

/* ---------------------------------------------------------------- linear algebra, layout and
 * reductions (issue 12, part B; docs/OPS.md). Dims may be negative, Python style (-1 is the
 * last). Every result is a new contiguous tensor (no views). */

/* a (..., M, K) @ b (..., K, N) -> (..., M, N); 2 to 4 dims each. The batch dims (those
 * before the last two) are aligned from the right and broadcast as in NumPy (each pair
 * equal or one of them 1); the backward sums the gradient over broadcast dims. One SGEMM
 * per matrix (threads spread over many small ones), or ONE SGEMM when b has no batch
 * dims; cuBLAS strided-batched on CUDA. */
tg_tensor *tg_matmul(tg_ctx *ctx, tg_tensor *a, tg_tensor *b);
/* x with dims dim0 and dim1 swapped (a copy). */
tg_tensor *tg_transpose(tg_ctx *ctx, tg_tensor *x, int dim0, int dim1);
/* x with its dims reordered: out.dim[k] = x.dim[dims[k]]; dims has x->shape.ndim entries,
 * each dim once (a copy). */
tg_tensor *tg_permute(tg_ctx *ctx, tg_tensor *x, const int *dims);
/* xs[0..n-1] (1 <= n <= TG_MAX_INPUTS) joined along dim; all other dims equal. */
tg_tensor *tg_concat(tg_ctx *ctx, tg_tensor *const *xs, int n, int dim);
/* x[.., start:end, ..] along dim, Python slicing: negative positions count from the end,
 * positions are clamped to [0, size]; an empty result is an error (a copy). */
tg_tensor *tg_slice(tg_ctx *ctx, tg_tensor *x, int dim, int64_t start, int64_t end);
/* Reductions along dim; keepdim keeps it as size 1, else it is removed. A scalar input
 * takes dim 0 or -1. */
tg_tensor *tg_sum(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim);
tg_tensor *tg_mean(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim);
/* The maximum (a NaN wins); the gradient goes to the FIRST arg-max, as torch.max(x, dim). */
tg_tensor *tg_max(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim);
/* Variance, divided by n - 1 (unbiased, PyTorch's default) or n. */
tg_tensor *tg_var(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim, bool unbiased);
/* Over every element -> a scalar (shape ()). tg_max_all shares the gradient evenly between
 * tied maxima, as torch.max(x) does. */
tg_tensor *tg_sum_all(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_mean_all(tg_ctx *ctx, tg_tensor *x);
tg_tensor *tg_max_all(tg_ctx *ctx, tg_tensor *x);
/* ---------------------------------------------------------------- end of part B */

/* ================================================================ issue 12, part C:
 * normalisation, regularisation, lookup, losses, optimiser companions (docs/OPS.md).
 * Dims may be negative, Python style (-1 = the last). */

/* softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `dim` (any dim), computed from x - max
 * so it never overflows. -> x's shape. */
tg_tensor *tg_softmax(tg_ctx *ctx, tg_tensor *x, int dim);
/* log softmax along `dim`: x - max - log sum exp(x - max). -> x's shape. */
tg_tensor *tg_log_softmax(tg_ctx *ctx, tg_tensor *x, int dim);
/* x (..., T, T) attention scores: entries with column j > row i set to -inf (their
 * gradient is 0), the rest copied. Follow it by tg_softmax(ctx, y, -1). */
tg_tensor *tg_causal_mask(tg_ctx *ctx, tg_tensor *x);
/* nn.LayerNorm: normalise over the last normalized_ndim (1..x's ndim) dims with the biased
 * variance, then y = xhat * weight + bias; weight and bias have those dims' shape, or are
 * NULL (no affine). PyTorch's eps default is 1e-5. -> x's shape. */
tg_tensor *tg_layer_norm(tg_ctx *ctx, tg_tensor *x, int normalized_ndim, tg_tensor *weight,
                         tg_tensor *bias, float eps);
/* Inverted dropout: each element is zeroed with probability p (0 <= p <= 1) and the rest
 * scaled by 1 / (1 - p). The mask is drawn from the context's generator (tg_ctx_rng): one
 * 64-bit key per call, element i kept when hash(key, i) clears p — the same on CPU and
 * CUDA; the backward recomputes that mask. Returns x itself (nothing drawn) when !training
 * or p == 0. -> x's shape. */
tg_tensor *tg_dropout(tg_ctx *ctx, tg_tensor *x, float p, bool training);
/* The context's generator (dropout masks); seeded with 0 by tg_ctx_new. A training loop
 * saves *tg_ctx_rng(ctx) in tg_train_state.rng and restores it on resume, so the resumed
 * run draws the same masks. */
tg_rng *tg_ctx_rng(tg_ctx *ctx);
void tg_ctx_seed(tg_ctx *ctx, uint64_t seed);
/* Rows of weight (V, D) picked by int32 indices (host memory, copied; index_shape 1-D to
 * 3-D) -> (index_shape..., D). An index outside [0, V) is an error naming its position.
 * The backward scatter-adds into dweight (repeated indices add up). */
tg_tensor *tg_embedding(tg_ctx *ctx, tg_tensor *weight, const int32_t *indices,
                        tg_shape index_shape);
/* Binary cross entropy on logits, mean over all elements; target (same shape, values in
 * [0, 1]) may require grad. -> scalar. */
tg_tensor *tg_bce_with_logits(tg_ctx *ctx, tg_tensor *logits, tg_tensor *target);
/* Negative log-likelihood of log-probabilities: log_probs (N, C) with target[N], or
 * (N, C, L) / (N, C, H, W) with target[N*L] / [N*H*W] (host memory, copied); mean over the
 * targets that are not TG_IGNORE_INDEX (-100, PyTorch's default). All ignored: NaN, as
 * PyTorch. -> scalar. */
#define TG_IGNORE_INDEX (-100)
tg_tensor *tg_nll_loss(tg_ctx *ctx, tg_tensor *log_probs, const int32_t *target);

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of every trainable gradient of ps
 * (either device); when max_norm / (norm + 1e-6) < 1 every gradient is multiplied by it.
 * *total_norm (may be NULL) receives the norm before clipping. A non-finite norm leaves
 * the gradients untouched (skip that step) and is reported as it is. */
tg_status tg_clip_grad_norm(tg_params *ps, float max_norm, float *total_norm);

/* Learning-rate schedules, plain values usable from any loop:
 *     tg_optim_set_lr(opt, tg_lr_at(&sched, step));
 * step: base_lr * gamma^floor(step / step_size)           (torch StepLR)
 * cosine: step < warmup_steps: base_lr * (step + 1) / warmup_steps (linear warm-up);
 *         then min_lr + (base_lr - min_lr) (1 + cos(pi (step - warmup) / (total - warmup))) / 2
 *         up to total_steps, min_lr after it.
 * Bad arguments record an error and give a schedule for which tg_lr_at returns NaN. */
typedef enum tg_lr_kind { TG_LR_INVALID = 0, TG_LR_STEP, TG_LR_COSINE } tg_lr_kind;
typedef struct tg_lr_schedule {
    tg_lr_kind kind;
    float base_lr, min_lr, gamma;
    int64_t step_size, warmup_steps, total_steps;
} tg_lr_schedule;
tg_lr_schedule tg_lr_step(float base_lr, int64_t step_size, float gamma);
tg_lr_schedule tg_lr_cosine(float base_lr, float min_lr, int64_t warmup_steps,
                            int64_t total_steps);
float tg_lr_at(const tg_lr_schedule *s, int64_t step);
/* ================================================================ end of part C */

/* ---------------------------------------------------------------- writing your own op
 *
 * Every op, built-in or yours, is one constant descriptor (`tg_op`) and one call,
 * `tg_op_apply`. There is no second mechanism: tg_relu, tg_conv2d and the ops in
 * examples/custom_op.c all go through it, so a user op shows in tg_tape_print, the DOT
 * graph, tg_tape_profile (with its cost model) and the explain log, and tg_gradcheck
 * checks it like any other. docs/WRITING_OPS.md teaches it step by step.
 *
 *   static tg_status softplus_forward(tg_ctx *ctx, tg_record *rec) {
 *       const tg_tensor *x = rec->inputs[0];             // y = log(1 + e^x)
 *       for (int64_t i = 0; i < x->numel; i++)
 *           rec->out->data[i] = log1pf(expf(x->data[i]));
 *       return TG_OK;
 *   }
 *   static tg_status softplus_backward(tg_ctx *ctx, tg_record *rec,
 *                                      float *const *dinputs, const float *dout) {
 *       const tg_tensor *x = rec->inputs[0];             // dy/dx = sigmoid(x)
 *       for (int64_t i = 0; i < x->numel; i++)
 *           dinputs[0][i] += dout[i] / (1 + expf(-x->data[i]));   // ADD, never assign
 *       return TG_OK;
 *   }
 *   static const tg_op softplus_op = {
 *       .name = "softplus",
 *       .forward = {[TG_DEVICE_CPU] = softplus_forward},
 *       .backward = {[TG_DEVICE_CPU] = softplus_backward},
 *       .backward_doc = "dx += dy * sigmoid(x)",
 *   };
 *   tg_tensor *softplus(tg_ctx *ctx, tg_tensor *x) {
 *       if (!tg_check_tensor("softplus", "x", x, -1)) return NULL;
 *       return tg_op_apply(ctx, &softplus_op, &x, 1, x->shape, NULL, 0, NULL);
 *   }
 *
 * THE CONTRACT
 *   - forward computes rec->out->data (allocated by tg_op_apply, uninitialised, on the
 *     context's device) from rec->inputs[i]->data and the inline params. It may keep
 *     what the backward needs: tg_record_save (a tensor) or tg_record_save_bytes (raw
 *     bytes), both in the step arena. The inputs themselves stay alive until
 *     tg_step_end, so an op that only needs its inputs saves nothing.
 *   - backward ADDS dL/d(inputs[i]) into dinputs[i] (fan-out and shared weights then
 *     just work) and skips every dinputs[i] that is NULL (not needed). dout is
 *     dL/d(out), out->numel floats; it must not be written.
 *   - optional, for speed: an op whose descriptor sets bit i of
 *     writes_fresh_grads[device] is handed input i's gradient buffer UNINITIALISED when
 *     the tape has just allocated it, instead of zeroed, marked by tg_grad_fresh(rec, i);
 *     its backward must then WRITE every element of that dinputs[i] (no add). That saves the tape's zeroing pass and the
 *     kernel's read of zeros, two trips through memory per activation gradient (PyTorch's
 *     autograd hands the first gradient over instead of adding it, for the same reason).
 *     A buffer that already holds a gradient (fan-out, shared weights, parameters), or an
 *     input passed twice to one op, is never fresh.
 *   - both return TG_OK, or a status after tg_fail(...) with a message.
 *   - pointers are device pointers on the context's device (host memory on the CPU). A
 *     descriptor without a CUDA entry is refused on a CUDA context with a clear error.
 *   - kernels: plain functions of raw pointers and sizes; parallelise them with
 *     tg_parallel_range (what the built-in kernels use: it does not stall on a busy
 *     machine) or OpenMP (tapegrad's thread count is tg_get_num_threads()).
 */

#define TG_MAX_INPUTS 4      /* inputs per op (an entry may be NULL: optional bias) */
#define TG_MAX_SAVED 4       /* saved tensors per record */
#define TG_OP_PARAMS_BYTES 128 /* inline params per record (copied by tg_op_apply) */

typedef struct tg_record tg_record;

/* Computes rec->out->data from rec->inputs and the inline params; may save tensors. */
typedef tg_status (*tg_forward_fn)(tg_ctx *ctx, tg_record *rec);
/* dinputs[i]: where to ADD dL/d(inputs[i]), or NULL when not needed. dout: dL/d(out). */
typedef tg_status (*tg_backward_fn)(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout);
/* FLOPs and bytes moved by the forward and the backward, for profiles. */
typedef void (*tg_cost_fn)(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                           double *bwd_flops, double *bwd_bytes);
/* Writes one line of text about this record into buf (size bytes, NUL-terminated). */
typedef void (*tg_text_fn)(const tg_record *rec, char *buf, size_t size);

typedef struct tg_op {
    const char *name;                          /* shown in tables, DOT, profiles, errors */
    tg_forward_fn forward[TG_DEVICE_COUNT];    /* CPU required; CUDA optional */
    tg_backward_fn backward[TG_DEVICE_COUNT];  /* NULL: the op cannot be differentiated */
    tg_cost_fn cost;                           /* optional: profile shows "-" without */
    tg_text_fn describe;                       /* optional: the variant ("depthwise 3x3") */
    tg_text_fn explain;                        /* optional: what THIS record's backward
                                                  computes (--explain); else backward_doc */
    const char *backward_doc;                  /* optional: the same, one line for all */
    unsigned writes_fresh_grads[TG_DEVICE_COUNT]; /* optional, bit i: the backward
                                                  honours tg_grad_fresh(rec, i) (THE
                                                  CONTRACT above) */
} tg_op;

/* One entry of the tape. Read by forward/backward (and by learners); tg_op_apply
 * fills it. */
struct tg_record {
    const tg_op *op;
    int ninputs;
    tg_tensor *inputs[TG_MAX_INPUTS]; /* an entry may be NULL (conv without bias) */
    tg_tensor *out;
    tg_tensor *saved[TG_MAX_SAVED];   /* forward results the backward needs */
    void *aux;                        /* other saved data (tg_record_save_bytes result) */
    size_t saved_bytes;               /* counted for the tape table */
    TG_ALIGNAS(16) unsigned char params[TG_OP_PARAMS_BYTES];
    double fwd_seconds, bwd_seconds;
    int index;                        /* position on the tape (-1: not recorded) */
    unsigned fresh_grads;             /* during backward, bit i: dinputs[i] is fresh */
};

/* Inside a backward: whether dinputs[i] arrived uninitialised and must be written, not
 * added to. Always false unless the op's descriptor sets bit i of writes_fresh_grads. */
static inline bool tg_grad_fresh(const tg_record *rec, int i) {
    return (rec->fresh_grads >> i) & 1u;
}

/* The inline params of rec as a pointer to your struct:  TG_OP_PARAMS(rec, my_params). */
#define TG_OP_PARAMS(rec, type) ((type *)(void *)(rec)->params)

/* Runs `op` on `inputs` (ninputs <= TG_MAX_INPUTS, entries may be NULL), producing a new
 * step tensor of shape out_shape. `params` (size <= TG_OP_PARAMS_BYTES bytes, may be
 * NULL) is copied into the record. When any input requires grad and grad mode is on, the
 * record is appended to the tape and the output requires grad. The forward is timed
 * (waiting for the device when sync timing is on). When share_data is non-NULL the
 * output is a view over that storage (reshape) and no data is allocated. Returns NULL
 * with a message on failure (wrong device, no entry for this device, forward failed). */
tg_tensor *tg_op_apply(tg_ctx *ctx, const tg_op *op, tg_tensor *const *inputs, int ninputs,
                       tg_shape out_shape, const void *params, size_t size,
                       float *share_data);
/* Inside a forward: a tensor of `shape` saved in slot (0 .. TG_MAX_SAVED-1) of rec, in
 * the step arena on the context's device, uninitialised; its bytes count as saved. */
tg_tensor *tg_record_save(tg_ctx *ctx, tg_record *rec, int slot, tg_shape shape);
/* Inside a forward: raw bytes in the step arena (host memory on the CPU, device memory
 * on CUDA), counted as saved; keep the pointer in rec->aux or your params. */
void *tg_record_save_bytes(tg_ctx *ctx, tg_record *rec, size_t bytes);

/* Argument checks for op entry points; each records a message naming op and argument
 * and returns false. ndim < 0 accepts any rank. A NULL from an earlier failed op keeps
 * that op's message. */
bool tg_check_tensor(const char *op, const char *arg, const tg_tensor *t, int ndim);
/* Records `status` with a printf-style message, unless an error is already pending (the
 * first error is the one worth reading). Returns status:  return tg_fail(...); */
tg_status tg_fail(tg_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- optimizers */

typedef struct tg_optim tg_optim;

/* >>> semantics (issue 10): optimizer options ------------------------------------- */
/* Every value PyTorch accepts can be expressed, and a zero field means zero (lr = 0,
 * Adam's beta1 = 0, eps = 0 are legal, as in torch.optim). Ranges are checked as
 * PyTorch does (lr, eps, weight_decay >= 0, betas in [0, 1), all finite); a bad one
 * gives NULL and a message naming the option, its value and the range. */

/* torch.optim.SGD. Its defaults are all zero (no momentum, no dampening, no weight
 * decay, no Nesterov) and lr has none, so a designated initializer is the constructor:
 * (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f}. */
typedef struct tg_sgd_opts {
    float lr;           /* >= 0 (0: the parameters do not move) */
    float momentum;     /* 0: plain SGD */
    float dampening;
    float weight_decay; /* L2, added to the gradient */
    bool nesterov;      /* needs momentum > 0 and dampening = 0 */
} tg_sgd_opts;

/* torch.optim.Adam / AdamW. Start from a constructor, which fills PyTorch's defaults,
 * then change fields:
 *     tg_adam_opts o = tg_adam_opts_default();   (lr 1e-3, betas 0.9 and 0.999, eps 1e-8)
 *     o.lr = 3e-4;
 *     tg_optim *opt = tg_adam_new(ps, o);
 * A struct not made by a constructor (zeroed, or a compound literal) is refused, since
 * its zero betas and eps would otherwise silently mean zero. Values are doubles, as
 * torch's Python floats: 1e-8 is exactly the eps torch uses. */
typedef struct tg_adam_opts {
    double lr;           /* >= 0 */
    double beta1, beta2; /* each in [0, 1); beta1 = 0: no momentum (RMSprop-like) */
    double eps;          /* >= 0, added after the square root */
    double weight_decay; /* >= 0. Adam: L2 added to the gradient; AdamW: decoupled */
    uint32_t tag;        /* set by the constructors below; do not touch */
} tg_adam_opts;
/* lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0 (torch.optim.Adam). */
tg_adam_opts tg_adam_opts_default(void);
/* The same with weight_decay 1e-2 (torch.optim.AdamW's default). */
tg_adam_opts tg_adamw_opts_default(void);
/* <<< semantics (issue 10): optimizer options ------------------------------------- */

/* The optimizer keeps its state (momentum, moments) in the parameter store, so add
 * every parameter before creating it. One optimizer with state per store: creating a
 * second one on the same store restarts that state from zero (free the first one). Free
 * the optimizer before its store. Bad options give NULL and a message. */
tg_optim *tg_sgd_new(tg_params *ps, tg_sgd_opts opts);
tg_optim *tg_adam_new(tg_params *ps, tg_adam_opts opts);
tg_optim *tg_adamw_new(tg_params *ps, tg_adam_opts opts);
void tg_optim_free(tg_optim *opt);
tg_status tg_optim_zero_grad(tg_optim *opt);
/* One update over the whole flat store. While an error is pending it returns that
 * error's status and changes nothing (parameters, state, step count). */
tg_status tg_optim_step(tg_optim *opt);
/* lr >= 0 and finite (0 is legal: the next steps move nothing); otherwise an error and
 * the rate is left unchanged. */
void tg_optim_set_lr(tg_optim *opt, float lr);
float tg_optim_lr(const tg_optim *opt);
int64_t tg_optim_steps(const tg_optim *opt);
const char *tg_optim_name(const tg_optim *opt);

/* ---------------------------------------------------------------- models */

/* A model is a parameter store (parameters + buffers) + a forward function + your own
 * data. The built-in models below are made with tg_model_new like yours, so anything you
 * build this way checkpoints, resumes and trains like them (tg_checkpoint_save/load):
 *
 *   typedef struct { tg_tensor *w, *b; } my_net;
 *   static tg_tensor *my_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
 *       my_net *net = tg_model_user(m);
 *       return tg_linear(ctx, x, net->w, net->b);
 *   }
 *   ...
 *   my_net *net = calloc(1, sizeof *net);
 *   tg_model *m = tg_model_new("my-net", TG_DEVICE_CPU, my_forward, net, free);
 *   net->w = tg_params_add(tg_model_params(m), "fc.weight", tg_shape2(10, 784));
 *   net->b = tg_params_add(tg_model_params(m), "fc.bias", tg_shape1(10));
 *   tg_init_linear(&rng, net->w, net->b);
 *
 * The name is stored in checkpoints: a checkpoint loads only into a model of the same
 * name with the same parameter names and shapes. */
typedef struct tg_model tg_model;

/* The model's output for input x; training selects e.g. batchnorm's mode. May be NULL in
 * tg_model_new for a model you drive with your own functions (then tg_model_forward is
 * an error, checkpoints still work). */
typedef tg_tensor *(*tg_model_forward_fn)(tg_ctx *ctx, tg_model *m, tg_tensor *x,
                                          bool training);
/* A model with an empty parameter store on `device` (add to tg_model_params(m)). `user`
 * is yours (tg_model_user); tg_model_free calls free_user(user) when free_user is not
 * NULL — also when tg_model_new itself fails, so the caller never leaks it. name: 1 to 63
 * characters. NULL + message on failure. */
tg_model *tg_model_new(const char *name, tg_device device, tg_model_forward_fn forward,
                       void *user, void (*free_user)(void *user));
void *tg_model_user(const tg_model *m);

typedef enum tg_loss_kind { TG_LOSS_CE = 0, TG_LOSS_MSE } tg_loss_kind;

/* The forum's 50-layer stack (DESIGN §7): conv(3->C, 3x3, pad 1); layers 2..L-1 dense
 * conv(C->C, 3x3, pad 1) or separable = depthwise 3x3 (groups C) + pointwise 1x1; a last
 * conv(C->10) for per-pixel cross entropy or conv(C->3) for MSE. Every conv has a bias.
 * relu / bn insert ReLU / batchnorm after every conv but the last. */
typedef struct tg_forum50_opts {
    bool separable;
    tg_loss_kind loss;
    int channels; /* 0 means 256 */
    int layers;   /* 0 means 50 (counting the first and last conv) */
    bool relu, bn;
} tg_forum50_opts;

/* MobileNet v1 (224x224): conv 3->32 3x3 stride 2, 13 depthwise-separable blocks, every
 * conv without bias and followed by batchnorm + ReLU, global average pool, linear. */
typedef struct tg_mobilenet_opts {
    int groups;       /* groups of the 3x3 "depthwise" convs: 0 = C (true depthwise), 1, 4 */
    float width;      /* width multiplier; 0 means 1.0 */
    int num_classes;  /* 0 means 1000 */
} tg_mobilenet_opts;

tg_model *tg_forum50_new(tg_forum50_opts opts, tg_device device, uint64_t seed);
tg_model *tg_mobilenet_new(tg_mobilenet_opts opts, tg_device device, uint64_t seed);
void tg_model_free(tg_model *m);
const char *tg_model_name(const tg_model *m);
tg_params *tg_model_params(tg_model *m);
/* The model's output (logits or prediction) for input x; training selects batchnorm's
 * mode. Returns NULL with a message on bad input (wrong channels, too small). */
tg_tensor *tg_model_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training);

/* ---------------------------------------------------------------- data, mlp/cnn, checkpoints */

/* An IDX file (the MNIST format): big-endian header (0, 0, type, ndim, then ndim u32
 * dims) followed by the elements. Only unsigned bytes (type 0x08) and 1..4 dims are
 * accepted. Files may be gzip-compressed (detected from their first bytes, not their
 * name). Headers and sizes are validated: a bad magic, an unsupported type, a zero dim,
 * a truncated file or trailing bytes give NULL and a TG_ERR_FORMAT message naming the
 * file. */
typedef struct tg_idx {
    int ndim;
    int64_t dim[TG_MAX_DIMS];
    int64_t numel;
    uint8_t *data;   /* numel bytes, row-major */
} tg_idx;

tg_idx *tg_idx_load(const char *path);
/* The same from memory (raw or gzip); `what` names the source in messages. */
tg_idx *tg_idx_parse(const void *bytes, size_t size, const char *what);
void tg_idx_free(tg_idx *idx);

/* A labelled dataset in host memory: n examples of one shape (float32) with int32 class
 * labels in [0, num_classes). */
typedef struct tg_dataset tg_dataset;

/* Copies x (n * numel(example) floats) and y (n labels). */
tg_dataset *tg_dataset_new(int64_t n, tg_shape example, const float *x, const int32_t *y,
                           int num_classes);
/* Images (n, H, W) or (n, C, H, W) and labels (n) from IDX files, pixels mapped to
 * (p / 255 - mean) / std (std 0 means 1). Labels must be < num_classes. */
tg_dataset *tg_dataset_from_idx(const tg_idx *images, const tg_idx *labels, int num_classes,
                                float mean, float std);
/* MNIST from a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte (train)
 * or t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (held out), each possibly with .gz.
 * Examples are (1, 28, 28), normalised with MNIST's mean 0.1307 and std 0.3081. */
tg_dataset *tg_mnist_load(const char *dir, bool train);
void tg_dataset_free(tg_dataset *ds);
int64_t tg_dataset_size(const tg_dataset *ds);
tg_shape tg_dataset_example_shape(const tg_dataset *ds);
int tg_dataset_num_classes(const tg_dataset *ds);
const float *tg_dataset_x(const tg_dataset *ds);   /* n * numel(example) floats */
const int32_t *tg_dataset_y(const tg_dataset *ds); /* n labels */

/* Where a minibatch iterator stands. Epoch e visits the examples in a permutation drawn
 * from (seed, e) alone, so (seed, epoch, cursor) is the whole state: saving it and
 * seeking back resumes the exact batch sequence. */
typedef struct tg_loader_pos {
    uint64_t seed;
    int64_t epoch;   /* epochs started so far, counting from 0 */
    int64_t cursor;  /* next position in this epoch's permutation */
} tg_loader_pos;

typedef struct tg_loader tg_loader;

/* Batches of `batch` examples; shuffle draws a new permutation per epoch, otherwise the
 * order is the dataset's. The last batch of an epoch may be smaller; a batch larger than
 * the dataset gives one batch of every example. The dataset must outlive the loader. */
tg_loader *tg_loader_new(const tg_dataset *ds, int batch, bool shuffle, uint64_t seed);
void tg_loader_free(tg_loader *ld);
/* The next batch of this epoch as a step tensor x (B, example...) in ctx and labels y
 * (B, host memory valid until the next call). Returns false (x, y NULL) once the epoch
 * is done, and moves to the next epoch, so `while (tg_loader_next(...))` is one epoch. */
bool tg_loader_next(tg_loader *ld, tg_ctx *ctx, tg_tensor **x, const int32_t **y);
int64_t tg_loader_batches(const tg_loader *ld); /* per epoch */
tg_loader_pos tg_loader_position(const tg_loader *ld);
/* Continues from pos (its seed included); TG_ERR_ARG when the cursor is past the end. */
tg_status tg_loader_seek(tg_loader *ld, tg_loader_pos pos);

/* A multilayer perceptron: flatten, then linear + ReLU for each hidden size, then a
 * linear layer to num_classes logits. Parameters fc1.weight, fc1.bias, ... */
typedef struct tg_mlp_opts {
    int in_features;    /* 0 means 784 (28x28) */
    int hidden[4];      /* hidden sizes, ended by the first 0; all 0 means {128} */
    int num_classes;    /* 0 means 10 */
} tg_mlp_opts;

/* The small MNIST CNN: conv(C->c1, 3x3, pad 1) + ReLU + maxpool 2, conv(c1->c2, 3x3,
 * pad 1) + ReLU + maxpool 2, flatten, linear(c2*H/4*W/4 -> hidden) + ReLU, linear ->
 * num_classes. */
typedef struct tg_cnn_opts {
    int in_channels;    /* 0 means 1 */
    int height, width;  /* 0 means 28; multiples of 4 */
    int channels1;      /* 0 means 16 */
    int channels2;      /* 0 means 32 */
    int hidden;         /* 0 means 128 */
    int num_classes;    /* 0 means 10 */
} tg_cnn_opts;

tg_model *tg_mlp_new(tg_mlp_opts opts, tg_device device, uint64_t seed);
tg_model *tg_cnn_new(tg_cnn_opts opts, tg_device device, uint64_t seed);

/* What a training loop needs besides parameters and optimizer state to resume exactly. */
typedef struct tg_train_state {
    int64_t epoch;       /* completed epochs */
    int64_t step;        /* optimizer steps taken */
    tg_rng rng;          /* the loop's own RNG (augmentation, dropout, ...) */
    tg_loader_pos data;  /* the minibatch iterator's position */
    /* Distributed runs (0 or 1: one process; a load gives 0 for a one-process file).
     * Recorded in the checkpoint when > 1. On
     * load, when the caller sets them > 0 beforehand, a file written with another world
     * size or global batch is refused before anything changes (the ranks' shards, hence
     * per-rank statistics and the data each rank sees, would differ silently). */
    int32_t world_size;
    int32_t batch;       /* the global batch */
    /* TG_CONV_ALGO_AUTO's choices, so that a resumed run computes what the run it
     * continues would have: before a save, nconv_choices = tg_ctx_conv_choices(ctx,
     * conv_choices, TG_CONV_CHOICES_MAX); after a load, tg_ctx_set_conv_choices(ctx,
     * conv_choices, nconv_choices) before the first step. The file keeps the geometry and
     * the choice of each row (no timings: they load as 0); 0 rows (a pinned algorithm, a
     * CUDA context, a file from before this field) write and read as before. */
    int32_t nconv_choices;
    tg_conv_choice conv_choices[TG_CONV_CHOICES_MAX];
} tg_train_state;

/* One file: magic, format version, model name, every parameter's and buffer's name and
 * shape, their values, the optimizer's kind, step count, learning rate and state, the
 * train state (with AUTO's conv choices when it holds some), and a CRC-32; no timestamps (the same state gives the same bytes).
 * Written to a temporary file in the same directory, flushed and fsynced, then renamed
 * over `path` (and the directory fsynced): a crash at any moment leaves either the old
 * or the new checkpoint; temporary files a killed save left behind are removed by the
 * next save of the same path. opt and state may be NULL. Refused (nothing written) while
 * an error is pending: state an error may have touched is never saved; and refused
 * (TG_ERR_NONFINITE) when a parameter, buffer or optimizer state value is NaN or
 * infinite (tg_checkpoint_save_opts can allow it). */
tg_status tg_checkpoint_save(const char *path, tg_model *m, const tg_optim *opt,
                             const tg_train_state *state);
/* Validates everything (magic, version, sizes, checksum, the model's parameter names and
 * shapes, the optimizer's kind) before changing anything: on failure (TG_ERR_IO,
 * TG_ERR_FORMAT) the model, optimizer and state are untouched. opt NULL skips the
 * optimizer state; state NULL skips the train state. The optimizer's step count, state
 * and learning rate are restored; its other hyperparameters stay as constructed. */
tg_status tg_checkpoint_load(const char *path, tg_model *m, tg_optim *opt,
                             tg_train_state *state);
/* The same from memory; `what` names the source in messages. */
tg_status tg_checkpoint_parse(const void *bytes, size_t size, const char *what, tg_model *m,
                              tg_optim *opt, tg_train_state *state);

/* ---------------------------------------------------------------- words and a tiny GPT
 *
 * A character-level language model that learns to spell English words (examples/gpt.c,
 * `tapegrad train words`). The data: a word list (Debian's wamerican,
 * /usr/share/dict/words) or, with path NULL, a built-in sample of 999 of its words; only
 * words of lowercase a-z (at most 32 letters) are kept. Tokens: '.' (a word boundary) = 0,
 * 'a'..'z' = 1..26. The split is fixed: a word is held out when the 32-bit FNV-1a hash of
 * its letters is 0 mod 10 (about 10%), so it never depends on the file's order. Each
 * split is one stream ".w1.w2. ... .wn." in file order. */
#define TG_WORDS_VOCAB 27
enum { TG_WORDS_TRAIN = 0, TG_WORDS_HELD_OUT = 1 };

typedef struct tg_words tg_words;

tg_words *tg_words_load(const char *path);   /* NULL: the built-in sample */
void tg_words_free(tg_words *w);
int64_t tg_words_count(const tg_words *w, int split);    /* words in a split */
/* A split's token stream (*len tokens, owned by w). */
const int32_t *tg_words_stream(const tg_words *w, int split, int64_t *len);
/* TG_WORDS_TRAIN or TG_WORDS_HELD_OUT: the split a word belongs to by the hash rule. */
int tg_words_split_of(const char *word);
/* The split of a word in the list, or -1 when it is not in the list. */
int tg_words_find(const tg_words *w, const char *word);
/* `batch` windows of seq + 1 tokens from a split's stream at positions
 * tg_rng_below(rng, len - seq) (drawn in order): x (batch, seq) the first seq tokens, y
 * (batch, seq) the next-token targets. */
tg_status tg_words_batch(const tg_words *w, int split, int batch, int seq, tg_rng *rng,
                         int32_t *x, int32_t *y);
/* The baseline: mean negative log-likelihood (nats per token) of the held-out stream's
 * transitions under bigram counts of the training stream with add-one smoothing. */
double tg_words_bigram_loss(const tg_words *w);
char tg_words_decode(int32_t token);         /* 0 -> '.', 1..26 -> 'a'..'z' */

/* A GPT (decoder-only transformer): token + position embedding, dropout, n_layer
 * pre-layernorm blocks x += proj(attn(ln_1(x))); x += mlp(ln_2(x)) with causal multi-head
 * self-attention and a GELU (tanh) MLP of width 4 n_embd, a final layernorm and a linear
 * head to vocab_size logits. Parameters (names as a PyTorch module would have them):
 * wte.weight (V, C), wpe.weight (T, C), h.<l>.ln_1.{weight,bias}, h.<l>.attn.{q,k,v,proj}.
 * {weight,bias}, h.<l>.ln_2.{weight,bias}, h.<l>.mlp.{fc,proj}.{weight,bias},
 * ln_f.{weight,bias}, lm_head.weight (V, C). Initialised as GPT-2: weights N(0, 0.02),
 * the residual projections N(0, 0.02 / sqrt(2 n_layer)), biases 0, layernorms 1 and 0. */
typedef struct tg_gpt_opts {
    int vocab_size;   /* V */
    int block_size;   /* T: the longest context */
    int n_layer, n_head, n_embd;
    float dropout;    /* after the embeddings, the attention weights, each residual branch */
} tg_gpt_opts;
/* The example's size: V 27, T 16, 2 layers, 4 heads, 64 channels, dropout 0.1. */
tg_gpt_opts tg_gpt_opts_default(void);
tg_model *tg_gpt_new(tg_gpt_opts opts, tg_device device, uint64_t seed);
tg_gpt_opts tg_gpt_opts_of(const tg_model *m);
/* Logits (batch, seq, V) for tokens (batch, seq) in host memory (copied), seq <= T. */
tg_tensor *tg_gpt_forward(tg_ctx *ctx, tg_model *m, const int32_t *tokens, int batch,
                          int seq, bool training);
/* Mean cross entropy of those logits against targets (batch, seq) -> scalar. */
tg_tensor *tg_gpt_loss(tg_ctx *ctx, tg_model *m, const int32_t *tokens,
                       const int32_t *targets, int batch, int seq, bool training);
/* Mean loss (nats per token) over the consecutive non-overlapping windows of block_size
 * tokens of a stream, `batch` windows per forward, without a tape. Calls tg_step_end(ctx):
 * use a context with no step in progress. NaN and a message on failure. */
double tg_gpt_eval(tg_ctx *ctx, tg_model *m, const int32_t *stream, int64_t len, int batch);
/* Samples one word: starts after a boundary token, draws each next letter from
 * softmax(logits / temperature) with rng, stops at the next boundary (or when buf is
 * full). Writes the letters and a NUL into buf; returns their count, -1 on failure. Calls
 * tg_step_end(ctx). */
int tg_gpt_sample(tg_ctx *ctx, tg_model *m, tg_rng *rng, float temperature, char *buf,
                  size_t size);
/* ---------------------------------------------------------------- safetensors (issue 16)
 * Weights in the safetensors format that PyTorch, JAX, NumPy and model hubs read and
 * write: an 8-byte little-endian header length, a JSON header mapping each tensor's name
 * to {"dtype", "shape", "data_offsets": [begin, end]} (plus "__metadata__", a map of
 * strings), then the raw little-endian data. tapegrad's parameter names and layouts are
 * PyTorch's (conv1.weight is (C_out, C_in, KH, KW), linear weights are (out, in), NCHW
 * flatten), so a state_dict of the equivalent nn.Module loads as it is. See
 * docs/WEIGHTS.md, "Moving weights between tapegrad and PyTorch". */

/* Loading options; all-zero is the default: strict, names used as they are. */
typedef struct tg_safetensors_opts {
    /* false (strict): every store entry must be in the file and every file tensor must
     * name a store entry. true (partial): load what matches; the rest is reported. */
    bool partial;
    /* Removed from the front of file names that start with it ("model.", "module."). */
    const char *strip_prefix;
    /* Renames after the prefix strip: pairs {"file name", "store name", ..., NULL}. */
    const char *const *name_map;
} tg_safetensors_opts;

/* What a load did (filled on success). Names are comma-separated, cut with "..." when
 * they do not fit. */
typedef struct tg_safetensors_report {
    int loaded;             /* store entries given values */
    int missing;            /* store entries the file lacks (partial loads) */
    int unexpected;         /* file tensors naming no store entry (partial loads) */
    int ignored;            /* BatchNorm "num_batches_tracked" counters skipped */
    char model[64];         /* __metadata__ "model" ("" when absent) */
    char missing_names[512], unexpected_names[512];
} tg_safetensors_report;

/* Every parameter and buffer of ps as F32, in store order, with __metadata__ {"format":
 * "pt", "format_version": "1", "model": model_name (omitted when NULL), "producer":
 * "tapegrad"}; no timestamps, so the same store gives the same bytes. Written atomically
 * as checkpoints are (temporary file, fsync, rename). Refused while an error is pending. */
tg_status tg_safetensors_save(const char *path, tg_params *ps, const char *model_name);
/* Reads F32, F16, BF16 and F64 tensors (converted to float32) into the store entries of
 * the same name and shape. Validates the whole file first (header length against the
 * file size; JSON; dtypes; shape products and byte sizes with overflow checks; offsets
 * inside the data section, in order, neither overlapping nor leaving holes; duplicate
 * names; every name, shape and dtype against the store): a bad file is TG_ERR_FORMAT
 * naming the file and the tensor, an unreadable one TG_ERR_IO, and the store is then
 * untouched. The file is opened without blocking and must be a regular file. opts and
 * report may be NULL. */
tg_status tg_safetensors_load(const char *path, tg_params *ps, const tg_safetensors_opts *opts,
                              tg_safetensors_report *report);
/* The same from memory; `what` names the source in messages. */
tg_status tg_safetensors_parse(const void *bytes, size_t size, const char *what, tg_params *ps,
                               const tg_safetensors_opts *opts,
                               tg_safetensors_report *report);
/* The model name a checkpoint was saved from (tg_model_name), read from its header alone,
 * into name (size bytes). TG_ERR_FORMAT when the file is not a checkpoint. */
tg_status tg_checkpoint_model_name(const char *path, char *name, size_t size);
/* ---------------------------------------------------------------- end safetensors */
/* ================================================================ BEGIN distributed
 * Data-parallel training (core/dist.c; DESIGN §12). Every rank holds the whole model and
 * takes its share of every global batch; gradients are all-reduced so every rank applies
 * the same update. `mpirun` launches and MPI bootstraps; CPU gradients go through MPI,
 * CUDA gradients through NCCL on its own stream, overlapping the backward kernels (device
 * buffers, no host copies, no host waits).
 * A process not launched by mpirun, or a build without MPI (-Dmpi=disabled), has a world
 * of 1 and every call below is a cheap no-op: single-process training is unchanged.
 *
 *   tg_dist *d = tg_dist_init(device);          // rank, world, local rank -> GPU
 *   ... build the model and optimizer (same seed on every rank) ...
 *   tg_dist_broadcast_params(d, ps);            // rank 0's values and buffers everywhere
 *   tg_dist_attach(d, ctx, ps, tg_dist_opts_default());
 *   tg_loader_shard(loader, tg_dist_rank(d), tg_dist_world(d));
 *   for each step:
 *       x, y = this rank's slice of the global batch; tg_dist_set_batch(d, local, global);
 *       zero_grad; forward; tg_backward(ctx, loss);   // buckets start as they complete
 *       tg_dist_sync_grads(d);                   // wait: grads = the global batch's
 *       tg_optim_step(opt); tg_step_end(ctx);
 *   tg_dist_free(d);                             // MPI_Finalize
 *
 * The gradient all-reduce is weighted by each rank's share (local / global examples), so
 * N ranks with global batch B compute the gradient of the same mean loss as one process
 * with batch B, also when B is not a multiple of N. With synchronised batchnorm (on by
 * default) batch statistics and their backward sums are reduced across ranks, so even
 * nets with batchnorm train as with one process, to fp32 rounding. */
typedef struct tg_dist tg_dist;

/* True when built with MPI. */
bool tg_dist_available(void);
/* True when this process was started by mpirun (Open MPI / PMIx / PMI environment). */
bool tg_dist_launched(void);
/* Joins the job: MPI_Init when launched by mpirun (world of 1 otherwise), and for CUDA
 * selects GPU (local rank mod device count) and creates the NCCL communicator; call it
 * before anything else touches the GPU. NULL and a message on failure. One per process. */
tg_dist *tg_dist_init(tg_device device);
/* Detaches d from its context and store (the gradients leave the shared window; the
 * context stops calling d), then MPI_Finalize (when init called MPI_Init). Accepts NULL.
 * d, its context and its store may be freed in any order: tg_ctx_free and tg_params_free
 * tell d, which forgets them (a later tg_dist_sync_grads without a store is an error). */
void tg_dist_free(tg_dist *d);
int tg_dist_rank(const tg_dist *d);        /* 0 for NULL */
int tg_dist_world(const tg_dist *d);       /* 1 for NULL */
int tg_dist_local_rank(const tg_dist *d);  /* rank among the processes of this host */

/* Copies rank 0's trainable values and buffers to every rank. */
tg_status tg_dist_broadcast_params(tg_dist *d, tg_params *ps);
tg_status tg_dist_barrier(tg_dist *d);
/* Element-wise sum of n doubles (host memory) over all ranks, in place (metrics). */
tg_status tg_dist_allreduce_sum(tg_dist *d, double *values, int n);

typedef struct tg_dist_opts {
    size_t bucket_bytes;  /* gradient bytes per all-reduce, cut at parameter boundaries */
    bool overlap;         /* start a bucket as soon as backward has finished it */
    bool sync_batchnorm;  /* batch statistics over all ranks' examples */
    bool shared_memory;   /* ranks all on one host: gradient stores in one shared mapping,
                           * reduced in place (core/dist_shm.c); false: always MPI */
} tg_dist_opts;
/* bucket_bytes 512 KiB, overlap on, sync batchnorm on, shared memory on. */
tg_dist_opts tg_dist_opts_default(void);

/* Prepares gradient synchronisation of ps for backward passes on ctx (d NULL: a world of
 * 1, nothing to do). The flat gradient
 * store is cut into buckets in backward order (last parameters first), and with overlap
 * tg_backward starts a bucket's all-reduce as soon as the op with the bucket's last
 * contribution has run. One store and one context per tg_dist: a second attach starts
 * over, detaching the earlier context (its backward passes are its own again) and store
 * (its gradients leave the shared window). Collective. Refused on every rank
 * (TG_ERR_STATE, the earlier attachment stands) while a step's buckets are on their way
 * (between tg_backward and tg_dist_sync_grads), and for a store another tg_dist holds. A
 * world of 1 changes nothing. */
tg_status tg_dist_attach(tg_dist *d, tg_ctx *ctx, tg_params *ps, tg_dist_opts opts);
/* This step's share: `local` of the `global` examples (weights the all-reduce). */
tg_status tg_dist_set_batch(tg_dist *d, int64_t local, int64_t global);
/* Starts the buckets not started yet and waits for all of them: afterwards every rank
 * holds the gradient of the global batch's mean loss. Call after every tg_backward, before
 * the optimizer step. On CUDA the wait is on the device (kernels queued afterwards see the
 * reduced gradients); the host does not block.
 * CPU: it also agrees TG_CONV_ALGO_AUTO's choices (tg_ctx_conv_choices) of the attached
 * contexts: when any rank's table changed since the last sync (a geometry timed, or
 * tg_ctx_set_conv_choices), every rank takes the union of all ranks' tables, each geometry
 * with the choice of the lowest rank that holds it (rank 0's win), so from the next step
 * on every rank computes every layer with the same algorithm (core/dist_conv.c). */
tg_status tg_dist_sync_grads(tg_dist *d);

/* What the gradient synchronisation did so far (rank-local figures). */
typedef struct tg_dist_stats {
    int buckets;            /* buckets of the attached store */
    int64_t steps;          /* tg_dist_sync_grads calls */
    double bytes;           /* gradient bytes all-reduced */
    int64_t early_buckets;  /* buckets started from inside tg_backward (overlapped) */
    double wait_seconds;    /* time blocked in tg_dist_sync_grads: exposed communication
                             * (CUDA: host time to queue the wait; it happens on the GPU) */
    double launch_seconds;  /* time spent starting buckets and polling during backward
                             * (with shared memory: also the reductions run there) */
    bool shared_memory;     /* the buckets go through the shared-memory path */
} tg_dist_stats;
tg_dist_stats tg_dist_get_stats(const tg_dist *d);
void tg_dist_reset_stats(tg_dist *d);

/* Loader sharding (io/dataset.c). After tg_loader_shard(ld, rank, world) the loader still
 * walks the same global permutation in global batches of its `batch` examples, and
 * tg_loader_next returns rank's contiguous slice of each: examples [g r / N, g (r+1) / N)
 * of a global batch of g, so shares differ by at most one. The position stays global, so
 * checkpoints and tg_loader_seek work unchanged. An epoch's last global batch with fewer
 * examples than ranks is skipped on every rank (at most N - 1 examples, only when the
 * dataset size mod batch < N). world 1 is the unsharded loader. */
tg_status tg_loader_shard(tg_loader *ld, int rank, int world);
/* Sizes of the batch the last tg_loader_next returned: this rank's and the global one. */
void tg_loader_last_batch(const tg_loader *ld, int64_t *local, int64_t *global);
/* ================================================================ END distributed */

/* ---------------------------------------------------------------- gradient checks */

/* Builds a graph from the inputs and returns its output (any shape). */
typedef tg_tensor *(*tg_graph_fn)(tg_ctx *ctx, tg_tensor *const *inputs, void *user);

typedef struct tg_gradcheck_result {
    double max_abs_err;  /* over all checked elements */
    double max_rel_err;  /* |a - n| / max(|a|, |n|, atol_floor) */
    int64_t checked;     /* elements compared */
    int64_t failed;      /* elements outside tolerance */
    char worst[160];     /* description of the worst element */
} tg_gradcheck_result;

/* Central differences on L = sum(out * R), R a fixed random projection, accumulated in
 * double, against the tape's gradients for every element of every input that requires
 * grad (at most max_per_input elements each, spread evenly; 0 = all). Inputs are CPU
 * tensors (parameters or step tensors). An element passes when
 * |analytic - numeric| <= atol + rtol * |numeric|; a NaN on either side fails it. eps must
 * be finite and > 0, atol and rtol >= 0 (TG_ERR_ARG otherwise). */
tg_status tg_gradcheck(tg_ctx *ctx, tg_graph_fn fn, void *user, tg_tensor *const *inputs,
                       int ninputs, double eps, double atol, double rtol,
                       int64_t max_per_input, uint64_t seed, tg_gradcheck_result *result);

/* Whole-model check along one random direction d over every trainable parameter of ps:
 * (L(p + eps d) - L(p - eps d)) / 2 eps against grad . d. fn must return a scalar loss.
 * Parameters are restored afterwards. */
tg_status tg_gradcheck_direction(tg_ctx *ctx, tg_params *ps, tg_graph_fn fn, void *user,
                                 double eps, uint64_t seed, double *analytic,
                                 double *numeric);

/* ================================================================ sizes, non-finite
 * values, files (issue 11). The error model: docs/ARCHITECTURE.md, "Errors".
 *
 * SIZES. No tensor, parameter store or file payload holds more than TG_MAX_NUMEL
 * elements. Every size is computed with overflow-checked arithmetic (core/size.c): a
 * shape whose dims multiply past the limit — a huge reshape, conv padding INT_MAX, a
 * model width of INT_MAX — is a TG_ERR_SHAPE naming the op and the shape, never a
 * wrapped size. Memory is estimated before it is touched: a CPU allocation of 64 MiB or
 * more, a parameter store, a model and a loader are checked against the memory the
 * kernel reports available (MemAvailable) and refused (TG_ERR_NOMEM) with a message
 * naming what, how much and how much is available. */
#define TG_MAX_NUMEL ((int64_t)1 << 40) /* 2^40 elements: 4 TiB of float32 */

/* Bytes the kernel says can be allocated without swapping (/proc/meminfo MemAvailable,
 * else sysconf); SIZE_MAX when unknown. */
size_t tg_mem_available(void);
/* TG_OK when `bytes` fit in tg_mem_available(); else TG_ERR_NOMEM with a message naming
 * `what`, the size and the available memory. */
tg_status tg_mem_check(const char *what, size_t bytes);

/* ANOMALY MODE (off by default; PyTorch's detect_anomaly). While on, every op's output
 * and every gradient a backward step writes is checked for NaN/Inf; the first non-finite
 * one is TG_ERR_NONFINITE naming the op, its tape index, its inputs' shapes and whether
 * its inputs were finite. It costs one pass over each output and gradient. */
void tg_ctx_set_anomaly(tg_ctx *ctx, bool on);
bool tg_ctx_anomaly(const tg_ctx *ctx);
/* TG_OK when every value (grad: every gradient value) of t is finite, else
 * TG_ERR_NONFINITE naming `what`, the first bad index and its value. */
tg_status tg_tensor_check_finite(const tg_tensor *t, bool grad, const char *what);

/* Optimizers: when on (off by default), tg_optim_step first checks every gradient; if one
 * is NaN or infinite it changes nothing (parameters, state, step count), counts the step
 * as skipped, and returns TG_OK (as AMP's GradScaler skips a step). */
void tg_optim_set_skip_nonfinite(tg_optim *opt, bool on);
int64_t tg_optim_skipped_steps(const tg_optim *opt);   /* skipped so far */
bool tg_optim_last_step_skipped(const tg_optim *opt);  /* the last tg_optim_step skipped */

/* Checkpoint save refuses (TG_ERR_NONFINITE, nothing written) a model whose parameters,
 * buffers or optimizer state hold a NaN or infinity, unless allow_nonfinite is set. */
typedef struct tg_checkpoint_opts {
    bool allow_nonfinite;
} tg_checkpoint_opts;
tg_status tg_checkpoint_save_opts(const char *path, tg_model *m, const tg_optim *opt,
                                  const tg_train_state *state, tg_checkpoint_opts opts);
/* TG_OK when a checkpoint can be written at `path`: its directory exists and is writable
 * (a temporary file is created and removed), and path is not a directory. Call it before
 * training, so a bad --checkpoint is found before the first epoch. */
tg_status tg_checkpoint_check_writable(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_H */
