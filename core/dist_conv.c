/*
 * core/dist_conv.c — TG_CONV_ALGO_AUTO's choices agreed across the ranks of a CPU job
 * (core/dist.c calls it from tg_dist_sync_grads).
 *
 * WHY. Under AUTO a context times im2col + SGEMM against Winograd the first time it meets
 * a 3x3 geometry and keeps the faster (ops/conv2d.c). Every rank times on its own, on a
 * busy machine, so two ranks may choose differently for one layer: their forwards then
 * round differently, the gradients they sum are not those of any one process, and the
 * checkpoint rank 0 writes carries rank 0's choices only.
 *
 * WHEN. In every tg_dist_sync_grads: one MPI_Allreduce of one int says whether any rank's
 * table changed since the last agreement (a geometry timed, or tg_ctx_set_conv_choices:
 * ctx->conv_choices_version moved). Only then are the tables gathered (at most
 * TG_CONV_CHOICES_MAX rows per rank) and merged, the same way on every rank. The step in
 * which a geometry is first timed runs each rank's own choice; from the next step on every
 * rank holds the same table, so every rank computes every layer the same way.
 *
 * THE MERGE. Every geometry any rank holds, with the choice of the lowest rank that holds
 * it: rank 0's choices win, and a geometry only another rank met (its share of a batch
 * that does not split evenly) takes that rank's. Rows in rank order, oldest first; when
 * there are more than TG_CONV_CHOICES_MAX the oldest are dropped, as the table's ring
 * would drop them. Timings stay those of the rank whose choice won.
 */
#include "core.h"
#include "dist.h"

#ifdef TG_HAVE_MPI
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_table {
    int32_t n, pad;
    tg_conv_choice rows[TG_CONV_CHOICES_MAX];
} conv_table;

tg_status dist_conv_agree(void *comm_p, int world, tg_ctx *ctx, uint64_t *agreed) {
    MPI_Comm comm = *(MPI_Comm *)comm_p;
    int dirty = ctx && ctx->conv_choices_version != *agreed, any = 0;
    if (MPI_Allreduce(&dirty, &any, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return tg_fail(TG_ERR_DEVICE, "tg_dist_sync_grads: MPI_Allreduce (conv choices) failed");
    if (!any) return TG_OK;
    conv_table *mine = calloc(1, sizeof *mine);
    conv_table *all = calloc((size_t)world, sizeof *all);
    tg_conv_choice *merged = calloc((size_t)world * TG_CONV_CHOICES_MAX, sizeof *merged);
    int ok = mine && all && merged, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    tg_status st = TG_OK;
    if (!all_ok) {
        st = tg_fail(TG_ERR_NOMEM, "tg_dist_sync_grads: out of memory agreeing the conv "
                     "choices (on this rank or another); each rank keeps its own");
        goto done;
    }
    if (ctx) mine->n = tg_ctx_conv_choices(ctx, mine->rows, TG_CONV_CHOICES_MAX);
    if (MPI_Allgather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE,
                      comm) != MPI_SUCCESS) {
        st = tg_fail(TG_ERR_DEVICE, "tg_dist_sync_grads: MPI_Allgather (conv choices) failed");
        goto done;
    }
    int m = 0;
    for (int q = 0; q < world; q++) {
        for (int i = 0; i < all[q].n && i < TG_CONV_CHOICES_MAX; i++) {
            const tg_conv_choice *c = &all[q].rows[i];
            bool seen = false;
            for (int j = 0; j < m && !seen; j++) seen = tg_conv_choice_same_geometry(&merged[j], c);
            if (!seen) merged[m++] = *c;
        }
    }
    if (ctx) {
        int first = m > TG_CONV_CHOICES_MAX ? m - TG_CONV_CHOICES_MAX : 0, n = m - first;
        memcpy(ctx->conv_choices, merged + first, (size_t)n * sizeof *merged);
        ctx->nconv_choices = n;
        ctx->next_conv_choice = n % TG_CONV_CHOICES_MAX;
        *agreed = ctx->conv_choices_version;
    }
done:
    free(merged);
    free(all);
    free(mine);
    return st;
}
#endif /* TG_HAVE_MPI */
