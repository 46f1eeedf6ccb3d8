/*
 * autograd/anomaly.h — anomaly mode's checks, called from tg_op_apply (after a forward)
 * and tg_backward (after each backward step) when ctx->anomaly is set. See anomaly.c.
 */
#ifndef TG_ANOMALY_H
#define TG_ANOMALY_H

#include "tape.h"

/* TG_OK when rec->out is finite; else TG_ERR_NONFINITE naming the op, `index` (its tape
 * index, -1 when not recorded), the inputs' shapes and whether they were finite. */
tg_status tg_anomaly_forward(tg_ctx *ctx, const tg_record *rec, int index);
/* TG_OK when every gradient dinputs[i] (input i's grad buffer) is finite. */
tg_status tg_anomaly_backward(tg_ctx *ctx, const tg_record *rec, int index,
                              float *const *dinputs);

#endif /* TG_ANOMALY_H */
