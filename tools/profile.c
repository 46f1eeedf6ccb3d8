/*
 * tools/profile.c — the timed runs of the benchmark subcommands (see profile.h); the
 * ceilings they are judged by are tools/ceilings.c, the tables they print
 * tools/profile_table.c.
 *
 * Timing rules (DESIGN §6, §9): warm-up steps are excluded; the device is synchronised
 * before every clock read (tg_ctx_sync, a no-op on the CPU), so a GPU time is the time
 * the work took and not the time it took to queue it; the ceilings are measured in the
 * same process (before and after the runs), and a rate above them is flagged, not
 * printed as if it were plausible.
 */
#include "profile.h"

#include "../core/core.h"

#ifdef TG_HAVE_CUDA
#include "../cuda/tg_cuda.h"
#endif

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- timed runs */

/* FLOPs and bytes per parameter of one optimizer update over the flat store. */
static void optim_cost(const tg_optim *opt, int slots, double *flops, double *bytes) {
    bool adam = !strncmp(tg_optim_name(opt), "adam", 4);
    *flops = adam ? 12.0 : 2.0 + 2.0 * slots;
    *bytes = 4.0 * (3 + 2 * slots); /* read p, g and the slots; write p and the slots */
}

static tg_tensor *step_loss(tg_ctx *ctx, const bench_spec *s, tg_tensor *out,
                            tg_tensor *target) {
    if (s->loss == TG_LOSS_CE) return tg_cross_entropy(ctx, out, s->labels);
    return tg_mse_loss(ctx, out, target);
}

/* Adds this step's per-record times into res->rows (creating them, with the costs, on
 * the first call). */
static tg_status collect_rows(tg_ctx *ctx, bench_result *res, bool with_bwd) {
    int n = tg_tape_length(ctx);
    if (!res->rows) {
        res->tape_len = n;
        res->nrows = n + 2;
        res->rows = calloc((size_t)res->nrows, sizeof *res->rows);
        if (!res->rows) return tg_fail(TG_ERR_NOMEM, "profile: out of memory");
    } else if (n != res->tape_len) {
        return tg_fail(TG_ERR_STATE, "profile: the tape changed length between steps "
                       "(%d, then %d records)", res->tape_len, n);
    }
    tg_op_profile *prof = malloc((size_t)(n ? n : 1) * sizeof *prof);
    if (!prof) return tg_fail(TG_ERR_NOMEM, "profile: out of memory");
    tg_tape_profile(ctx, prof, n);
    for (int r = 0; r < n; r++) {
        prof_row *row = &res->rows[r];
        if (!row->op) {
            row->op = prof[r].op;
            memcpy(row->detail, prof[r].detail, sizeof row->detail);
            row->in_shape = prof[r].in_shape[0];
            row->out_shape = prof[r].out_shape;
            row->count = 1;
            row->fwd_flops = prof[r].fwd_flops;
            row->fwd_bytes = prof[r].fwd_bytes;
            row->bwd_flops = with_bwd ? prof[r].bwd_flops : 0;
            row->bwd_bytes = with_bwd ? prof[r].bwd_bytes : 0;
        }
        row->fwd_s += prof[r].fwd_seconds;
        row->bwd_s += with_bwd ? prof[r].bwd_seconds : 0;
    }
    free(prof);
    return TG_OK;
}

/* The two rows after the tape's: zero_grad and the optimizer update. */
static void add_update_rows(bench_result *res, const bench_spec *s, tg_params *ps) {
    int64_t flat = tg_params_flat_numel(ps);
    prof_row *z = &res->rows[res->tape_len], *u = &res->rows[res->tape_len + 1];
    int slots = tg_params_state_slots(ps);
    double flops, bytes;
    optim_cost(s->opt, slots, &flops, &bytes);
    *z = (prof_row){.op = "zero_grad", .count = 1, .in_shape = tg_shape1(flat),
                    .out_shape = tg_shape1(flat), .fwd_bytes = 4.0 * (double)flat};
    snprintf(z->detail, sizeof z->detail, "memset");
    *u = (prof_row){.op = tg_optim_name(s->opt), .count = 1, .in_shape = tg_shape1(flat),
                    .out_shape = tg_shape1(flat), .fwd_flops = flops * (double)flat,
                    .fwd_bytes = bytes * (double)flat};
    snprintf(u->detail, sizeof u->detail, "fused update");
}

static void sum_costs(bench_result *res) {
    res->flops = res->bytes = 0;
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        res->flops += row->fwd_flops + row->bwd_flops;
        res->bytes += row->fwd_bytes + row->bwd_bytes;
    }
}

tg_status bench_run(const bench_spec *s, bench_result *res) {
    memset(res, 0, sizeof *res);
    tg_status st = TG_OK;
    tg_ctx *ctx = tg_ctx_new(s->device), *data = tg_ctx_new(s->device);
    int total = s->warmup + s->steps;
    double *times = calloc((size_t)(3 * s->steps + 3), sizeof *times);
    double *t_fwd = times, *t_fb = times + s->steps + 1, *t_step = times + 2 * s->steps + 2;
    double zero_sum = 0, optim_sum = 0, wall_sum = 0;
    if (!ctx || !data || !times) {
        st = tg_error() ? tg_error() : tg_fail(TG_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    if ((st = tg_ctx_set_conv_algo(ctx, s->conv_algo)) != TG_OK) goto done;
    /* Per-op times are only true with the device drained around each op (on CUDA:
     * event-timed); a profile turns that on, a plain timed run leaves ops asynchronous. */
    tg_ctx_set_sync_timing(ctx, s->profile);
    tg_ctx_set_anomaly(ctx, s->check_finite);
    tg_dist_opts dist_opts = tg_dist_opts_default();
    dist_opts.sync_batchnorm = !s->no_sync_bn;
    if (s->dist && ((st = tg_dist_attach(s->dist, ctx, tg_model_params(s->model), dist_opts)) ||
                    (st = tg_dist_set_batch(s->dist, s->in_shape.dim[0], s->global_batch))))
        goto done;
    /* The input and target live in their own context: made once, like the peer's. */
    tg_tensor *x = tg_tensor_from(data, s->in_shape, s->input);
    tg_tensor *target = s->train && s->loss == TG_LOSS_MSE
                            ? tg_tensor_from(data, s->target_shape, s->target) : NULL;
    if (!x || (s->train && s->loss == TG_LOSS_MSE && !target)) {
        st = tg_error();
        goto done;
    }
    progress pg;
    progress_start(&pg, 3.0);
    busy_probe probe;
    for (int i = 0; i < total; i++) {
        bool timed = i >= s->warmup;
        int k = i - s->warmup;
        double t0, ta, tb, tc, td;
        if (i == s->warmup) busy_begin(&probe);
        if (k == 0) tg_dist_reset_stats(s->dist);
        tg_ctx_sync(ctx);
        t0 = tg_now();
        if (s->train) {
            if ((st = tg_optim_zero_grad(s->opt)) || (st = tg_ctx_sync(ctx))) goto done;
            ta = tg_now();
            tg_tensor *out = tg_model_forward(ctx, s->model, x, true);
            tg_tensor *loss = step_loss(ctx, s, out, target);
            if (!loss) {
                st = tg_error();
                goto done;
            }
            if ((st = tg_ctx_sync(ctx))) goto done;
            tb = tg_now();
            /* Data parallel: the exposed part of the gradient all-reduce counts as backward. */
            if ((st = tg_backward(ctx, loss)) || (st = tg_dist_sync_grads(s->dist)) ||
                (st = tg_ctx_sync(ctx)))
                goto done;
            tc = tg_now();
            if ((st = tg_optim_step(s->opt)) || (st = tg_ctx_sync(ctx))) goto done;
            td = tg_now();
        } else {
            bool was = tg_set_grad_enabled(ctx, false);
            ta = t0;
            tg_tensor *out = tg_model_forward(ctx, s->model, x, false);
            tg_set_grad_enabled(ctx, was);
            if (!out) {
                st = tg_error();
                goto done;
            }
            if ((st = tg_ctx_sync(ctx))) goto done;
            tb = tc = td = tg_now();
        }
        if (timed) {
            t_fwd[k] = tb - ta;
            t_fb[k] = tc - ta;
            t_step[k] = td - t0;
            wall_sum += td - t0;
            res->mean_fwd_s += (tb - ta) / s->steps;
            res->mean_bwd_s += (tc - tb) / s->steps;
            zero_sum += ta - t0;
            optim_sum += td - tc;
            /* costs from the first timed step; per-op times from every one if asked */
            if (s->train && (k == 0 || s->profile) && (st = collect_rows(ctx, res, true)))
                goto done;
        }
        tg_step_end(ctx);
        progress_line(&pg, "  %s: %s %d/%d  %.3f s", s->label, timed ? "step" : "warm-up",
                      timed ? k + 1 : i + 1, timed ? s->steps : s->warmup, td - t0);
    }
    if (s->steps > 0) busy_end(&probe, &res->busy);
    if (!s->train) {
        /* Forward-only: the timed passes recorded nothing, so costs (and per-op times)
         * come from recorded eval-mode forwards, and the profile compares with them. */
        int n = s->profile ? s->steps : 1;
        wall_sum = 0;
        for (int i = 0; i < n; i++) {
            tg_ctx_sync(ctx);
            double t0 = tg_now();
            tg_tensor *out = tg_model_forward(ctx, s->model, x, false);
            if (!out || (st = tg_ctx_sync(ctx))) {
                st = st ? st : tg_error();
                goto done;
            }
            wall_sum += tg_now() - t0;
            if ((st = collect_rows(ctx, res, false))) goto done;
            tg_step_end(ctx);
        }
        res->mean_step_s = wall_sum / n;
        for (int r = 0; r < res->tape_len; r++) res->rows[r].fwd_s /= n;
        res->nrows = res->tape_len; /* no zero_grad or optimizer rows */
    } else {
        res->mean_step_s = wall_sum / s->steps;
        int n = s->profile ? s->steps : 1;
        for (int r = 0; r < res->tape_len; r++) {
            res->rows[r].fwd_s /= n;
            res->rows[r].bwd_s /= n;
        }
        add_update_rows(res, s, tg_model_params(s->model));
        res->rows[res->tape_len].fwd_s = zero_sum / s->steps;
        res->rows[res->tape_len + 1].fwd_s = optim_sum / s->steps;
    }
    progress_done(&pg);
    sum_costs(res);
    res->fwd = stats_of(t_fwd, s->steps);
    if (s->train) {
        res->fwdbwd = stats_of(t_fb, s->steps);
        res->step = stats_of(t_step, s->steps);
    } else {
        res->step = res->fwd;
    }
    tg_params *ps = tg_model_params(s->model);
    int slots = tg_params_state_slots(ps);
    res->store_bytes = 4 * (tg_params_flat_numel(ps) * (2 + slots) + tg_params_buffer_numel(ps));
    res->arena_peak = tg_ctx_arena_peak(ctx) + tg_ctx_arena_peak(data);
    res->rss_bytes = peak_rss_bytes();
    res->dist = tg_dist_get_stats(s->dist);
done:
    free(times);
    tg_ctx_free(ctx);
    tg_ctx_free(data);
    return st;
}

void bench_bound(bench_result *res, const peaks *pk) {
    double P = pk->sgemm_gflops * 1e9, B = pk->copy_gbps * 1e9;
    res->roofline_s = res->compute_bound_s = 0;
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        res->roofline_s += fmax(row->fwd_flops / P, row->fwd_bytes / B) +
                           fmax(row->bwd_flops / P, row->bwd_bytes / B);
        res->compute_bound_s += (row->fwd_flops + row->bwd_flops) / P;
    }
}

void bench_result_free(bench_result *res) {
    if (!res) return;
    free(res->rows);
    res->rows = NULL;
}
