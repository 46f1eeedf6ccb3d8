/*
 * autograd/tape.h — the tape, the op descriptor, and the gradient contract.
 *
 * An op family (ops/conv2d.c, ...) defines one constant `tg_op` (public, see
 * include/tapegrad.h) with its forward and backward functions indexed by device (C11
 * designated initializers), exactly as a user op does. Its public entry
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

/* The descriptor (tg_op), the record (tg_record), tg_op_apply, tg_record_save and
 * tg_check_tensor are public: include/tapegrad.h, "writing your own op". What follows
 * is only for built-in ops. */

bool tg_check_same_device(const char *op, tg_ctx *ctx, tg_tensor *const *ts, int n);

/* Explain-mode text of a record: the op's explain() line, else its backward_doc. */
const char *tg_record_explain(const tg_record *rec, char *buf, size_t size);

#define TG_PARAMS(rec, type) TG_OP_PARAMS(rec, type)

#endif /* TG_TAPE_H */
