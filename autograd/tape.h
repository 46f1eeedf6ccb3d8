/*
 * autograd/tape.h — the tape, the op descriptor, and the gradient contract.
 *
 * An op family (ops/conv2d.c, ...) defines one constant `tg_op` with its forward and
 * backward functions indexed by device (C11 designated initializers). Its public entry
 * point (tg_conv2d) validates the arguments, fills an inline params struct and calls
 * tg_op_apply(), which allocates the output in the step arena, runs the forward for the
 * context's device, times it, and — when any input requires grad and grad mode is on —
 * appends one record to the tape. A missing table entry is a clear error
 * ("conv2d has no cuda forward"), never a silent fallback.
 *
 * GRADIENT CONTRACT (every backward obeys it)
 *   - Backward ADDS into every gradient it is given (fan-out and shared weights just
 *     work; GEMMs in backward use beta = 1).
 *   - A NULL gradient pointer means "not needed": skip that computation.
 *   - Gradients are the true dL/dx; optimizers subtract.
 *   - ReLU's gradient at exactly 0 is 0, as in PyTorch.
 *   - Losses reduce by mean; the 1/N lives inside the loss backward.
 *
 * tg_backward(loss) seeds dL/dloss = 1 and walks the records in reverse. Reverse
 * recording order is a valid topological order, so no graph sort is needed: that is the
 * point of a tape. Before an op's backward runs, every input that requires grad has a
 * zeroed grad buffer (parameters have theirs in the store).
 */
#ifndef TG_TAPE_H
#define TG_TAPE_H

#include "../core/core.h"

#define TG_MAX_INPUTS 4
#define TG_MAX_SAVED 4
#define TG_OP_PARAMS_BYTES 128

typedef struct tg_record tg_record;

/* Computes rec->out->data from rec->inputs (and rec->params); may allocate saved tensors
 * (rec->saved) from ctx's step arena. */
typedef tg_status (*tg_forward_fn)(tg_ctx *ctx, tg_record *rec);
/* dinputs[i]: where to ADD dL/d(inputs[i]), or NULL when not needed. dout: dL/d(out). */
typedef tg_status (*tg_backward_fn)(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout);
/* FLOPs and bytes moved by forward and backward (for profiles); optional. */
typedef void (*tg_cost_fn)(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                           double *bwd_flops, double *bwd_bytes);

typedef struct tg_op {
    const char *name;
    tg_forward_fn forward[TG_DEVICE_COUNT];
    tg_backward_fn backward[TG_DEVICE_COUNT];
    tg_cost_fn cost;
    /* Optional: the variant this record ran ("depthwise 3x3"), for profiles. */
    void (*describe)(const tg_record *rec, char *buf, size_t size);
    /* One line for `--explain`: what the backward computes. */
    const char *backward_doc;
} tg_op;

struct tg_record {
    const tg_op *op;
    int ninputs;
    tg_tensor *inputs[TG_MAX_INPUTS]; /* an entry may be NULL (conv without bias) */
    tg_tensor *out;
    tg_tensor *saved[TG_MAX_SAVED];   /* forward results the backward needs */
    void *aux;                        /* other saved data in the step arena (targets) */
    size_t saved_bytes;               /* for the tape table */
    _Alignas(16) unsigned char params[TG_OP_PARAMS_BYTES];
    double fwd_seconds, bwd_seconds;
};

/* Run op on inputs, producing a new step tensor of shape out_shape. `params` (size
 * bytes <= TG_OP_PARAMS_BYTES) is copied into the record. Returns NULL on failure (the
 * message is recorded). When `share_data` is non-NULL the output is a view over that
 * storage (reshape) and no data is allocated. */
tg_tensor *tg_op_apply(tg_ctx *ctx, const tg_op *op, tg_tensor *const *inputs, int ninputs,
                       tg_shape out_shape, const void *params, size_t size,
                       float *share_data);

/* Allocate a saved tensor for rec in ctx's step arena and count its bytes. */
tg_tensor *tg_record_save(tg_ctx *ctx, tg_record *rec, int slot, tg_shape shape);
/* Scratch or saved raw bytes for rec (counted as saved). */
void *tg_record_save_bytes(tg_ctx *ctx, tg_record *rec, size_t bytes);

/* Common argument checks for op entry points; each records a message naming op/arg. */
bool tg_check_tensor(const char *op, const char *arg, const tg_tensor *t, int ndim);
bool tg_check_same_device(const char *op, tg_ctx *ctx, tg_tensor *const *ts, int n);

#define TG_PARAMS(rec, type) ((type *)(void *)(rec)->params)

#endif /* TG_TAPE_H */
