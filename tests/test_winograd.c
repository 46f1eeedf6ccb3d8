/*
 * tests/test_winograd.c — the Winograd F(4x4, 3x3) path of conv2d (ops/conv2d_winograd.c):
 * the kernels called directly against the double-precision reference on edge and random
 * shapes (planes smaller than a tile, sizes not multiples of 4, padding 0/1/2 each way,
 * channel counts across the 16-lane groups, batches, several tile blocks); its rounding
 * error against the im2col + SGEMM path's on a realistic layer; and the public switch
 * (tg_ctx_set_conv_algo): which geometries take it, the profile's name for it, gradients
 * through the tape, a training run, and a refused bad value; TG_CONV_ALGO_AUTO: one of the
 * two paths per geometry, bit for bit that path's forward and backward, kept across steps.
 */
#include "testutil.h"

#include "../ops/conv2d.h"
#include "conv_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct wcase {
    int N, C_in, C_out, H, W, ph, pw;
    bool bias;
} wcase;

static conv2d_geom wcase_geom(const wcase *c) {
    conv2d_geom g = {.N = c->N, .C_in = c->C_in, .H = c->H, .W = c->W, .C_out = c->C_out,
                     .KH = 3, .KW = 3, .stride_h = 1, .stride_w = 1, .pad_h = c->ph,
                     .pad_w = c->pw, .dil_h = 1, .dil_w = 1, .groups = 1};
    g.OH = g.H + 2 * g.pad_h - 2;
    g.OW = g.W + 2 * g.pad_w - 2;
    return g;
}

static void fill(tg_rng *rng, float *p, int64_t n) { tg_rng_fill_uniform(rng, p, n, -1, 1); }

/* Forward (out pre-filled with garbage: it must be overwritten) and every subset of
 * {dx, dW} (pre-filled with 0.5: gradients are ADDED) against the reference, with
 * tile_block tiles per block (0: the default). */
static void check_direct(const char *what, const wcase *c, int64_t tile_block, uint64_t seed) {
    conv2d_geom g = wcase_geom(c);
    ck_assert_msg(conv2d_winograd_supported(&g), "%s: not a Winograd geometry", what);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * g.C_in * 9;
    int64_t ny = g.N * g.C_out * g.OH * g.OW, nb = g.C_out;
    size_t nws = conv2d_winograd_workspace_floats(&g, true, tile_block);
    ck_assert_uint_ge(nws, conv2d_winograd_workspace_floats(&g, false, tile_block));
    float *buf = malloc((size_t)(2 * nx + 2 * nw + 2 * ny + nb) * sizeof(float));
    float *ws = malloc(nws * sizeof(float));
    double *want = calloc((size_t)(ny + nx + nw), sizeof(double));
    ck_assert(buf && ws && want);
    float *x = buf, *w = x + nx, *b = w + nw, *y = b + nb, *dy = y + ny, *dx = dy + ny;
    float *dw = dx + nx;
    fill(&rng, x, nx);
    fill(&rng, w, nw);
    fill(&rng, b, nb);
    fill(&rng, dy, ny);
    for (int64_t i = 0; i < ny; i++) y[i] = 1e30f;
    conv2d_winograd_forward_cpu(y, x, w, c->bias ? b : NULL, &g, ws, tile_block);
    conv_ref_forward(want, x, w, c->bias ? b : NULL, &g);
    char msg[200];
    /* Values are sums of 9 C_in products of numbers in [-1, 1]; the tolerances are fp32
     * rounding of such sums through the transforms (see winograd_error_vs_gemm). */
    snprintf(msg, sizeof msg, "%s: forward", what);
    tg_expect_close(msg, y, want, ny, 2e-4 * sqrt(c->C_in), 1e-4);

    const float pre = 0.5f;
    memset(want, 0, (size_t)(nx + nw) * sizeof(double));
    conv_ref_backward(want, want + nx, NULL, dy, x, w, &g);
    for (int64_t i = 0; i < nx + nw; i++) want[i] += pre;
    static const char *subsets[] = {"dx+dW", "dx only", "dW only"};
    for (int s = 0; s < 3; s++) {
        bool gx = s != 2, gw = s != 1;
        for (int64_t i = 0; i < nx + nw; i++) dx[i] = pre; /* dx and dw are adjacent */
        conv2d_winograd_backward_cpu(gx ? dx : NULL, gw ? dw : NULL, dy, x, w, &g, ws,
                                     tile_block, false);
        snprintf(msg, sizeof msg, "%s: %s dx", what, subsets[s]);
        if (gx) tg_expect_close(msg, dx, want, nx, 2e-4 * sqrt(c->C_out), 1e-4);
        for (int64_t i = 0; !gx && i < nx; i++) ck_assert_float_eq(dx[i], pre);
        /* dW sums over every output position: allow for the longer sums. */
        snprintf(msg, sizeof msg, "%s: %s dweight", what, subsets[s]);
        double spatial = (double)(g.N * g.OH * g.OW);
        if (gw) tg_expect_close(msg, dw, want + nx, nw, 2e-4 * sqrt(spatial), 1e-4);
        for (int64_t i = 0; !gw && i < nw; i++) ck_assert_float_eq(dw[i], pre);
    }
    free(buf);
    free(ws);
    free(want);
}

/* Planes smaller than one 6x6 input tile, sizes around multiples of 4, each padding,
 * channels 1, 15, 16, 17 and 33, batches whose tiles share a block, and tile rows longer
 * than one 32-tile chunk of the transforms. */
START_TEST(winograd_edges) {
    static const struct {
        const char *name;
        wcase c;
    } cases[] = {
        {"1x1 plane pad 1", {1, 2, 3, 1, 1, 1, 1, true}},
        {"2x2 pad 2", {1, 3, 2, 2, 2, 2, 2, false}},
        {"3x3 pad 0 (one output)", {2, 2, 2, 3, 3, 0, 0, true}},
        {"4x4 pad 1", {1, 1, 1, 4, 4, 1, 1, true}},
        {"5x7 pad 1", {1, 3, 4, 5, 7, 1, 1, true}},
        {"6x6 pad 0", {1, 4, 3, 6, 6, 0, 0, false}},
        {"8x8 pad 1", {2, 5, 6, 8, 8, 1, 1, true}},
        {"9x13 pad 1", {1, 4, 5, 9, 13, 1, 1, true}},
        {"pad 0 by 2", {1, 3, 3, 7, 10, 0, 2, true}},
        {"pad 2 by 1", {1, 3, 3, 11, 6, 2, 1, false}},
        {"C_in 15 C_out 17", {1, 15, 17, 6, 9, 1, 1, true}},
        {"C_in 16 C_out 16", {1, 16, 16, 8, 8, 1, 1, true}},
        {"C_in 17 C_out 1", {1, 17, 1, 5, 5, 1, 1, false}},
        {"C_in 33 C_out 20", {2, 33, 20, 7, 7, 1, 1, true}},
        {"batch 3 of 4x5", {3, 2, 3, 4, 5, 1, 1, true}},
        {"row of 1", {1, 2, 2, 1, 30, 1, 1, true}},
        {"column of 1", {1, 2, 2, 30, 1, 1, 1, true}},
        /* tile rows longer than the transforms' 32-tile chunks, last tile partial */
        {"wide: 38 tiles a row", {1, 3, 2, 5, 150, 1, 1, true}},
        {"wide: pad 0 by 2, 36 tiles a row", {2, 2, 3, 6, 141, 0, 2, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_direct(cases[i].name, &cases[i].c, 0, 3000 + i);
}
END_TEST

/* Small tile blocks (16, 32, 48 tiles) so a layer takes several blocks, the last one
 * partial, and blocks start mid-row and mid-batch; dW then accumulates over blocks. */
START_TEST(winograd_tile_blocks) {
    wcase a = {2, 5, 7, 19, 23, 1, 1, true}; /* 2 x 5 x 6 = 60 tiles */
    wcase b = {3, 18, 4, 13, 9, 2, 0, false};
    wcase wide = {1, 3, 4, 6, 141, 1, 1, true}; /* 2 x 36 tiles: blocks cut rows and chunks */
    for (int64_t tb = 16; tb <= 48; tb += 16) {
        char name[64];
        snprintf(name, sizeof name, "60 tiles in blocks of %lld", (long long)tb);
        check_direct(name, &a, tb, 3100 + (uint64_t)tb);
        snprintf(name, sizeof name, "batch 3, blocks of %lld", (long long)tb);
        check_direct(name, &b, tb, 3200 + (uint64_t)tb);
        snprintf(name, sizeof name, "rows of 36 tiles, blocks of %lld", (long long)tb);
        check_direct(name, &wide, tb, 3250 + (uint64_t)tb);
    }
}
END_TEST

/* Random geometries: batch 1-3, channels 1-40, planes 1-26 each way, padding 0-2 each
 * way (planes too small for the padding are skipped: the output would be empty). */
START_TEST(winograd_random) {
    tg_rng rng;
    tg_rng_seed(&rng, 31337);
    int done = 0;
    while (done < 40) {
        wcase c = {1 + (int)tg_rng_below(&rng, 3), 1 + (int)tg_rng_below(&rng, 40),
                   1 + (int)tg_rng_below(&rng, 40), 1 + (int)tg_rng_below(&rng, 26),
                   1 + (int)tg_rng_below(&rng, 26), (int)tg_rng_below(&rng, 3),
                   (int)tg_rng_below(&rng, 3), tg_rng_below(&rng, 2) == 0};
        if (c.H + 2 * c.ph < 3 || c.W + 2 * c.pw < 3) continue;
        char name[160];
        snprintf(name, sizeof name, "random %d: N %d C %d->%d %dx%d pad %d,%d", done, c.N,
                 c.C_in, c.C_out, c.H, c.W, c.ph, c.pw);
        check_direct(name, &c, tg_rng_below(&rng, 2) ? 0 : 16, 3300 + (uint64_t)done);
        done++;
    }
}
END_TEST

/* Max |got - exact| / max |exact|. */
static double rel_err(const float *got, const double *exact, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        e = fmax(e, fabs(got[i] - exact[i]));
        m = fmax(m, fabs(exact[i]));
    }
    return e / m;
}

/* The accuracy promise of the header: on a forum-like layer (64 -> 64 channels, 24x24,
 * inputs in [-1, 1], weights at PyTorch's default scale), the worst Winograd error of the
 * forward, dx and dW against double precision stays below 2e-5 of the largest value and
 * within 50x the im2col + SGEMM path's. Measured when written (gcc 12, OpenBLAS 0.3.21):
 * forward 4.9e-6 (GEMM 4.8e-7), dx 5.9e-6 (2.2e-7), dW 4.2e-6 (4.9e-7): the 10-30x that
 * F(4x4, 3x3) is known for (its transforms multiply by up to 8 and 1/24 and cancel); a
 * transform constant off by one ulp-scale typo shows up as 1e-3 or worse. */
START_TEST(winograd_error_vs_gemm) {
    wcase c = {1, 64, 64, 24, 24, 1, 1, false};
    conv2d_geom g = wcase_geom(&c);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * g.C_in * 9;
    int64_t ny = g.N * g.C_out * g.OH * g.OW;
    size_t nws = conv2d_winograd_workspace_floats(&g, true, 0);
    size_t ngemm = conv2d_workspace_floats(&g, 0);
    float *buf = malloc((size_t)(2 * nx + 2 * nw + 2 * ny) * sizeof(float));
    float *ws = malloc((nws > ngemm ? nws : ngemm) * sizeof(float));
    double *exact = calloc((size_t)(ny + nx + nw), sizeof(double));
    ck_assert(buf && ws && exact);
    float *x = buf, *w = x + nx, *y = w + nw, *dy = y + ny, *dx = dy + ny, *dw = dx + nx;
    fill(&rng, x, nx);
    tg_rng_fill_uniform(&rng, w, nw, -1 / sqrt(9.0 * c.C_in), 1 / sqrt(9.0 * c.C_in));
    fill(&rng, dy, ny);
    conv_ref_forward(exact, x, w, NULL, &g);
    conv_ref_backward(exact + ny, exact + ny + nx, NULL, dy, x, w, &g);

    double err[2][3]; /* [gemm, winograd][forward, dx, dW] */
    for (int algo = 0; algo < 2; algo++) {
        memset(dx, 0, (size_t)(nx + nw) * sizeof(float));
        if (algo == 0) {
            conv2d_forward_cpu(y, x, w, NULL, &g, ws, 0);
            conv2d_backward_cpu(dx, dw, NULL, dy, x, w, &g, ws, 0, false);
        } else {
            conv2d_winograd_forward_cpu(y, x, w, NULL, &g, ws, 0);
            conv2d_winograd_backward_cpu(dx, dw, dy, x, w, &g, ws, 0, false);
        }
        err[algo][0] = rel_err(y, exact, ny);
        err[algo][1] = rel_err(dx, exact + ny, nx);
        err[algo][2] = rel_err(dw, exact + ny + nx, nw);
    }
    static const char *names[] = {"forward", "dx", "dW"};
    for (int k = 0; k < 3; k++) {
        printf("winograd %s: error %.2e of the largest value (im2col + SGEMM %.2e)\n",
               names[k], err[1][k], err[0][k]);
        ck_assert_msg(err[1][k] <= 2e-5, "winograd %s: relative error %.3g above 2e-5",
                      names[k], err[1][k]);
        ck_assert_msg(err[1][k] <= 50 * fmax(err[0][k], 1e-8),
                      "winograd %s: relative error %.3g is more than 50x the GEMM path's %.3g",
                      names[k], err[1][k], err[0][k]);
    }
    free(buf);
    free(ws);
    free(exact);
}
END_TEST

/* ---------------------------------------------------------------- through the API */

/* One tg_conv2d forward and backward with the given algorithm; returns the profile detail
 * of the record. y, dx, dw, db receive the results. */
static void run_api(tg_conv_algo algo, const wcase *c, int stride, float *y, float *dx,
                    float *dw, float *db, char *detail, size_t detail_size) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, algo), TG_OK);
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), algo);
    tg_rng rng;
    tg_rng_seed(&rng, 99);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape4(c->N, c->C_in, c->H, c->W));
    tg_tensor *w = tg_tensor_new(ctx, tg_shape4(c->C_out, c->C_in, 3, 3));
    tg_tensor *b = tg_tensor_new(ctx, tg_shape1(c->C_out));
    ck_assert(x && w && b);
    fill(&rng, x->data, x->numel);
    fill(&rng, w->data, w->numel);
    fill(&rng, b->data, b->numel);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_conv2d_opts o = tg_conv2d_opts_make(stride, c->ph, 1, 1);
    o.pad_w = c->pw;
    tg_tensor *out = tg_conv2d(ctx, x, w, b, o);
    ck_assert_ptr_nonnull(out);
    memcpy(y, out->data, (size_t)out->numel * sizeof(float));
    float *dout = malloc((size_t)out->numel * sizeof(float));
    ck_assert_ptr_nonnull(dout);
    fill(&rng, dout, out->numel);
    ck_assert_int_eq(tg_backward_with(ctx, out, dout), TG_OK);
    free(dout);
    memcpy(dx, x->grad, (size_t)x->numel * sizeof(float));
    memcpy(dw, w->grad, (size_t)w->numel * sizeof(float));
    memcpy(db, b->grad, (size_t)b->numel * sizeof(float));
    tg_op_profile rows[8];
    int n = tg_tape_profile(ctx, rows, 8);
    ck_assert_int_ge(n, 1);
    snprintf(detail, detail_size, "%s", rows[0].detail);
    tg_ctx_free(ctx);
}

/* The switch: 3x3 stride 1 runs "winograd 3x3" and agrees with the GEMM path through the
 * tape (forward, dx, dW, db); stride 2 is not a Winograd geometry and keeps the GEMM path
 * under the same setting. */
START_TEST(winograd_api_switch) {
    wcase c = {2, 6, 5, 11, 9, 1, 1, true};
    int64_t nx = 2 * 6 * 11 * 9, nw = 5 * 6 * 9, ny = 2 * 5 * 11 * 9;
    float *a = malloc((size_t)(2 * (ny + nx + nw + 5)) * sizeof(float));
    ck_assert_ptr_nonnull(a);
    float *y0 = a, *dx0 = y0 + ny, *dw0 = dx0 + nx, *db0 = dw0 + nw;
    float *y1 = db0 + 5, *dx1 = y1 + ny, *dw1 = dx1 + nx, *db1 = dw1 + nw;
    char d0[64], d1[64];
    run_api(TG_CONV_ALGO_GEMM, &c, 1, y0, dx0, dw0, db0, d0, sizeof d0);
    run_api(TG_CONV_ALGO_WINOGRAD, &c, 1, y1, dx1, dw1, db1, d1, sizeof d1);
    ck_assert_str_eq(d0, "dense 3x3");
    ck_assert_str_eq(d1, "winograd 3x3");
    tg_expect_close_f("api forward", y1, y0, ny, 1e-4, 1e-4);
    tg_expect_close_f("api dx", dx1, dx0, nx, 1e-3, 1e-4);
    tg_expect_close_f("api dweight", dw1, dw0, nw, 1e-2, 1e-4);
    tg_expect_close_f("api dbias", db1, db0, 5, 1e-3, 1e-5);
    run_api(TG_CONV_ALGO_WINOGRAD, &c, 2, y1, dx1, dw1, db1, d1, sizeof d1);
    ck_assert_str_eq(d1, "dense 3x3 s2");
    free(a);
}
END_TEST

/* TG_CONV_ALGO_AUTO picks one of the two paths, and its forward AND backward are bit for
 * bit those of the path it names: the backward follows the forward's choice. */
START_TEST(winograd_auto_follows_choice) {
    wcase c = {2, 6, 5, 11, 9, 1, 1, true};
    int64_t nx = 2 * 6 * 11 * 9, nw = 5 * 6 * 9, ny = 2 * 5 * 11 * 9;
    float *a = malloc((size_t)(2 * (ny + nx + nw + 5)) * sizeof(float));
    ck_assert_ptr_nonnull(a);
    float *y0 = a, *dx0 = y0 + ny, *dw0 = dx0 + nx, *db0 = dw0 + nw;
    float *y1 = db0 + 5, *dx1 = y1 + ny, *dw1 = dx1 + nx, *db1 = dw1 + nw;
    char d0[64], d1[64];
    run_api(TG_CONV_ALGO_AUTO, &c, 1, y0, dx0, dw0, db0, d0, sizeof d0);
    bool wino = !strcmp(d0, "auto: winograd 3x3");
    ck_assert_msg(wino || !strcmp(d0, "auto: dense 3x3"), "auto chose '%s'", d0);
    run_api(wino ? TG_CONV_ALGO_WINOGRAD : TG_CONV_ALGO_GEMM, &c, 1, y1, dx1, dw1, db1, d1,
            sizeof d1);
    ck_assert_str_eq(d1, wino ? "winograd 3x3" : "dense 3x3");
    ck_assert_msg(!memcmp(y0, y1, (size_t)ny * sizeof(float)), "auto forward != %s", d1);
    ck_assert_msg(!memcmp(dx0, dx1, (size_t)nx * sizeof(float)), "auto dx != %s", d1);
    ck_assert_msg(!memcmp(dw0, dw1, (size_t)nw * sizeof(float)), "auto dW != %s", d1);
    ck_assert_msg(!memcmp(db0, db1, 5 * sizeof(float)), "auto db != %s", d1);
    /* Not a Winograd geometry: no timing, no choice, the usual path. */
    run_api(TG_CONV_ALGO_AUTO, &c, 2, y1, dx1, dw1, db1, d1, sizeof d1);
    ck_assert_str_eq(d1, "dense 3x3 s2");
    free(a);
}
END_TEST

/* The choices live in the context: one per geometry (two here; the stride-2 conv is not
 * timed), the same on every later step and after tg_step_end, and every record names the
 * choice of its geometry. */
START_TEST(winograd_auto_cache) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU), *params = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert(ctx && params);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_AUTO), TG_OK);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 0);
    ck_assert_int_eq(tg_ctx_conv_choices(NULL, NULL, 0), 0);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_tensor *w1 = tg_tensor_new(params, tg_shape4(8, 4, 3, 3));
    tg_tensor *w2 = tg_tensor_new(params, tg_shape4(8, 8, 3, 3));
    tg_tensor *b2 = tg_tensor_new(params, tg_shape1(8));
    ck_assert(w1 && w2 && b2);
    fill(&rng, w1->data, w1->numel);
    fill(&rng, w2->data, w2->numel);
    fill(&rng, b2->data, b2->numel);
    float xin[2 * 4 * 10 * 10];
    fill(&rng, xin, 2 * 4 * 10 * 10);
    tg_conv_choice first[4], now[4];
    for (int step = 0; step < 3; step++) {
        tg_tensor *x = tg_tensor_from(ctx, tg_shape4(2, 4, 10, 10), xin);
        tg_tensor_set_requires_grad(x, true);
        tg_tensor *h = tg_conv2d(ctx, x, w1, NULL, tg_conv2d_opts_make(1, 1, 1, 1));
        tg_tensor *y = tg_conv2d(ctx, h, w2, b2, tg_conv2d_opts_make(1, 0, 1, 1));
        tg_tensor *z = tg_conv2d(ctx, y, w2, b2, tg_conv2d_opts_make(2, 1, 1, 1));
        ck_assert_msg(z != NULL, "%s", tg_error_message());
        ck_assert_int_eq(tg_backward(ctx, tg_sum_all(ctx, z)), TG_OK);
        int n = tg_ctx_conv_choices(ctx, now, 4);
        ck_assert_int_eq(n, 2);
        if (step == 0) memcpy(first, now, sizeof now);
        ck_assert_msg(!memcmp(first, now, 2 * sizeof now[0]), "step %d re-timed", step);
        /* oldest first: the 10x10 pad-1 layer, then the pad-0 one with a bias */
        ck_assert(now[0].n == 2 && now[0].c_in == 4 && now[0].h == 10 && now[0].pad_h == 1 &&
                  !now[0].bias && now[0].c_out == 8);
        ck_assert(now[1].c_in == 8 && now[1].pad_h == 0 && now[1].bias);
        tg_op_profile rows[8];
        ck_assert_int_ge(tg_tape_profile(ctx, rows, 8), 3);
        for (int i = 0; i < 2; i++) {
            ck_assert(now[i].gemm_seconds > 0 && now[i].winograd_seconds > 0);
            ck_assert(now[i].winograd == (now[i].winograd_seconds < now[i].gemm_seconds));
            ck_assert_str_eq(rows[i].detail,
                             now[i].winograd ? "auto: winograd 3x3" : "auto: dense 3x3");
        }
        ck_assert_str_eq(rows[2].detail, "dense 3x3 s2");
        tg_step_end(ctx);
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 2); /* kept across steps */
    }
    /* Switching away and back does not forget or re-time. */
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM), TG_OK);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_AUTO), TG_OK);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, now, 4), 2);
    ck_assert(!memcmp(first, now, 2 * sizeof now[0]));
    tg_ctx_free(ctx);
    tg_ctx_free(params);
}
END_TEST

/* A smooth scalar of the conv output: MSE against a fixed target. */
static tg_tensor *wino_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const float *target = user;
    tg_tensor *y = tg_conv2d(ctx, in[0], in[1], in[2], tg_conv2d_opts_make(1, 1, 1, 1));
    if (!y) return NULL;
    return tg_mse_loss(ctx, y, tg_tensor_from(ctx, y->shape, target));
}

/* Finite differences through the Winograd records of the tape. */
START_TEST(winograd_gradcheck) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_WINOGRAD), TG_OK);
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_tensor *in[3] = {tg_tensor_new(ctx, tg_shape4(2, 3, 6, 7)),
                        tg_tensor_new(ctx, tg_shape4(4, 3, 3, 3)),
                        tg_tensor_new(ctx, tg_shape1(4))};
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_nonnull(in[i]);
        fill(&rng, in[i]->data, in[i]->numel);
        tg_tensor_set_requires_grad(in[i], true);
    }
    float target[2 * 4 * 6 * 7];
    fill(&rng, target, 2 * 4 * 6 * 7);
    tg_expect_gradcheck("winograd conv2d", ctx, wino_graph, target, in, 3);
    tg_ctx_free(ctx);
}
END_TEST

/* The dense forum net (5 layers, 16 channels, 12x12) trains with Winograd convolutions:
 * its first loss matches the GEMM path's and the loss falls over 20 SGD steps. */
START_TEST(winograd_forum50_trains) {
    enum { HW = 12 };
    float x[3 * HW * HW];
    int32_t labels[HW * HW];
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    fill(&rng, x, 3 * HW * HW);
    for (int i = 0; i < HW * HW; i++) labels[i] = (int32_t)tg_rng_below(&rng, 10);
    float first[2] = {0, 0}, last = 0;
    for (int algo = 0; algo < 2; algo++) {
        tg_model *m = tg_forum50_new((tg_forum50_opts){.separable = false, .loss = TG_LOSS_CE,
                                                       .channels = 16, .layers = 5},
                                     TG_DEVICE_CPU, 1);
        ck_assert_ptr_nonnull(m);
        tg_optim *opt = tg_sgd_new(tg_model_params(m),
                                   (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        ck_assert(opt && ctx);
        tg_conv_algo algos[2] = {TG_CONV_ALGO_GEMM, TG_CONV_ALGO_WINOGRAD};
        ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, algos[algo]), TG_OK);
        int steps = algo ? 20 : 1;
        for (int s = 0; s < steps; s++) {
            tg_optim_zero_grad(opt);
            tg_tensor *in = tg_tensor_from(ctx, tg_shape4(1, 3, HW, HW), x);
            tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, in, true), labels);
            ck_assert_msg(loss != NULL, "%s", tg_error_message());
            if (s == 0) first[algo] = loss->data[0];
            last = loss->data[0];
            ck_assert(isfinite(last));
            ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
            ck_assert_int_eq(tg_optim_step(opt), TG_OK);
            tg_step_end(ctx);
        }
        tg_optim_free(opt);
        tg_ctx_free(ctx);
        tg_model_free(m);
    }
    ck_assert_msg(fabsf(first[1] - first[0]) <= 1e-4f * fmaxf(1.0f, fabsf(first[0])),
                  "first loss: winograd %g, gemm %g", (double)first[1], (double)first[0]);
    ck_assert_msg(last < 0.9f * first[1], "loss %g -> %g did not fall", (double)first[1],
                  (double)last);
}
END_TEST

/* A value outside the enum is refused with a message naming the argument, and the
 * setting stays as it was. */
START_TEST(winograd_bad_algo) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_WINOGRAD), TG_OK);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, (tg_conv_algo)7), TG_ERR_ARG);
    tg_expect_error("bad algo", TG_ERR_ARG, "tg_ctx_set_conv_algo", "'algo' = 7");
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), TG_CONV_ALGO_WINOGRAD);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, (tg_conv_algo)(TG_CONV_ALGO_AUTO + 1)),
                     TG_ERR_ARG);
    tg_expect_error("bad algo", TG_ERR_ARG, "tg_ctx_set_conv_algo", "TG_CONV_ALGO_AUTO");
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), TG_CONV_ALGO_WINOGRAD);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_AUTO), TG_OK);
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), TG_CONV_ALGO_AUTO);
    ck_assert_int_eq(tg_ctx_set_conv_algo(NULL, TG_CONV_ALGO_GEMM), TG_ERR_ARG);
    tg_expect_error("NULL ctx", TG_ERR_ARG, "tg_ctx_set_conv_algo", "'ctx'");
    tg_ctx_free(ctx);
}
END_TEST

Suite *winograd_suite(void) {
    Suite *s = suite_create("winograd");
    TCase *tc = tg_test_case("winograd");
    tcase_add_test(tc, winograd_edges);
    tcase_add_test(tc, winograd_tile_blocks);
    tcase_add_test(tc, winograd_random);
    tcase_add_test(tc, winograd_error_vs_gemm);
    tcase_add_test(tc, winograd_api_switch);
    tcase_add_test(tc, winograd_auto_follows_choice);
    tcase_add_test(tc, winograd_auto_cache);
    tcase_add_test(tc, winograd_gradcheck);
    tcase_add_test(tc, winograd_forum50_trains);
    tcase_add_test(tc, winograd_bad_algo);
    suite_add_tcase(s, tc);
    return s;
}
