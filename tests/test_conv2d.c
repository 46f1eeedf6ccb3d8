/*
 * tests/test_conv2d.c — conv2d and conv1d: every kernel path (dense, grouped, pointwise,
 * depthwise, depthwise with a channel multiplier) against a double-precision naive
 * convolution on odd, non-square and tiny shapes; im2col tiling with tiles smaller than
 * the problem; finite differences over the groups/stride/pad/dilation/kernel/batch/bias
 * grid; PyTorch golden values; accumulation; NULL-gradient skipping; bad inputs.
 */
#include "testutil.h"

#include "../ops/conv2d.h"
#include "conv_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One convolution: is1d uses H = KH = 1 and 3-D tensors. */
typedef struct cfg {
    int N, C_in, C_out, H, W, KH, KW;
    int sh, sw, ph, pw, dh, dw, groups;
    bool bias, is1d;
} cfg;

static conv2d_geom cfg_geom(const cfg *c) {
    conv2d_geom g = {.N = c->N, .C_in = c->C_in, .H = c->H, .W = c->W, .C_out = c->C_out,
                     .KH = c->KH, .KW = c->KW, .stride_h = c->sh, .stride_w = c->sw,
                     .pad_h = c->ph, .pad_w = c->pw, .dil_h = c->dh, .dil_w = c->dw,
                     .groups = c->groups};
    g.OH = (g.H + 2 * g.pad_h - g.dil_h * (g.KH - 1) - 1) / g.stride_h + 1;
    g.OW = (g.W + 2 * g.pad_w - g.dil_w * (g.KW - 1) - 1) / g.stride_w + 1;
    return g;
}

static tg_conv2d_opts cfg_opts(const cfg *c) {
    return (tg_conv2d_opts){.stride_h = c->sh, .stride_w = c->sw, .pad_h = c->ph,
                            .pad_w = c->pw, .dilation_h = c->dh, .dilation_w = c->dw,
                            .groups = c->groups};
}

static tg_shape x_shape(const cfg *c) {
    return c->is1d ? tg_shape3(c->N, c->C_in, c->W) : tg_shape4(c->N, c->C_in, c->H, c->W);
}

static tg_shape w_shape(const cfg *c) {
    int cg = c->C_in / c->groups;
    return c->is1d ? tg_shape3(c->C_out, cg, c->KW) : tg_shape4(c->C_out, cg, c->KH, c->KW);
}

static tg_tensor *conv(tg_ctx *ctx, const cfg *c, tg_tensor *x, tg_tensor *w, tg_tensor *b) {
    return c->is1d ? tg_conv1d(ctx, x, w, b, cfg_opts(c)) : tg_conv2d(ctx, x, w, b, cfg_opts(c));
}

static void fill(tg_rng *rng, float *p, int64_t n) { tg_rng_fill_uniform(rng, p, n, -1, 1); }

static tg_tensor *rand_tensor(tg_ctx *ctx, tg_rng *rng, tg_shape s, bool requires_grad) {
    tg_tensor *t = tg_tensor_new(ctx, s);
    ck_assert_ptr_nonnull(t);
    fill(rng, t->data, t->numel);
    tg_tensor_set_requires_grad(t, requires_grad);
    return t;
}

/* Forward and backward through the public API against the reference. Gradients are
 * requested for x and/or the weight and bias; the others must stay NULL (skipped). */
static void check_api(const char *what, const cfg *c, uint64_t seed, bool gx, bool gw) {
    conv2d_geom g = cfg_geom(c);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    tg_tensor *x = rand_tensor(ctx, &rng, x_shape(c), gx);
    tg_tensor *w = rand_tensor(ctx, &rng, w_shape(c), gw);
    tg_tensor *b = c->bias ? rand_tensor(ctx, &rng, tg_shape1(c->C_out), gw) : NULL;
    tg_tensor *y = conv(ctx, c, x, w, b);
    tg_expect_ok(what);
    ck_assert_int_eq(y->shape.ndim, c->is1d ? 3 : 4);
    ck_assert_int_eq(y->numel, g.N * g.C_out * g.OH * g.OW);
    int64_t ny = y->numel, nx = x->numel, nw = w->numel;
    double *want = calloc((size_t)(ny + nx + nw + c->C_out), sizeof(double));
    float *dout = malloc((size_t)ny * sizeof(float));
    ck_assert(want && dout);
    conv_ref_forward(want, x->data, w->data, b ? b->data : NULL, &g);
    char key[160];
    snprintf(key, sizeof key, "%s: y", what);
    tg_expect_close(key, y->data, want, ny, 1e-5, 1e-5);

    fill(&rng, dout, ny);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout), TG_OK);
    double *dx = want + ny, *dw = dx + nx, *db = dw + nw;
    memset(want + ny, 0, (size_t)(nx + nw + c->C_out) * sizeof(double));
    conv_ref_backward(gx ? dx : NULL, gw ? dw : NULL, gw && b ? db : NULL, dout, x->data, w->data,
                 &g);
    if (gx) {
        snprintf(key, sizeof key, "%s: dx", what);
        tg_expect_close(key, x->grad, dx, nx, 1e-4, 1e-5);
    } else {
        ck_assert_msg(x->grad == NULL, "%s: dx computed though x needs no grad", what);
    }
    if (gw) {
        snprintf(key, sizeof key, "%s: dweight", what);
        tg_expect_close(key, w->grad, dw, nw, 1e-4, 1e-5);
        if (b) {
            snprintf(key, sizeof key, "%s: dbias", what);
            tg_expect_close(key, b->grad, db, c->C_out, 1e-4, 1e-5);
        }
    } else {
        ck_assert_msg(w->grad == NULL, "%s: dweight computed though w needs no grad", what);
    }
    free(want);
    free(dout);
    tg_ctx_free(ctx);
}

/* ---------------------------------------------------------------- reference comparisons */

typedef struct path_case {
    const char *name;
    cfg c;
    conv2d_path path;
} path_case;

/*  N Cin Cout H  W KH KW sh sw ph pw dh dw groups bias is1d */
static const path_case PATH_CASES[] = {
    {"dense 3x3 pad1", {2, 3, 5, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, CONV2D_DENSE},
    {"dense rect s(2,1) p(0,2) d(1,2)",
     {2, 3, 4, 9, 7, 3, 2, 2, 1, 0, 2, 1, 2, 1, true, false}, CONV2D_DENSE},
    {"dense W < kernel + pad", {1, 2, 3, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false},
     CONV2D_DENSE},
    {"dense 1x1 input", {2, 2, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, false}, CONV2D_DENSE},
    {"dense stride > input", {1, 3, 2, 3, 5, 2, 2, 4, 3, 0, 1, 1, 1, 1, true, false},
     CONV2D_DENSE},
    {"dense 5x5 kernel > input", {1, 2, 2, 2, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, false},
     CONV2D_DENSE},
    {"dense C_in 1", {3, 1, 4, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, CONV2D_DENSE},
    {"dense 1x1 stride 2", {2, 4, 3, 7, 5, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, false},
     CONV2D_DENSE},
    {"dense 1x1 pad 1", {1, 3, 2, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, false}, CONV2D_DENSE},
    {"pointwise", {3, 6, 4, 5, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, false}, CONV2D_POINTWISE},
    {"pointwise groups 2", {2, 4, 6, 3, 5, 1, 1, 1, 1, 0, 0, 1, 1, 2, true, false},
     CONV2D_POINTWISE},
    {"depthwise 3x3", {2, 5, 5, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 5, true, false},
     CONV2D_DEPTHWISE},
    {"depthwise s2 d2", {2, 4, 4, 9, 8, 3, 3, 2, 2, 2, 1, 2, 2, 4, true, false},
     CONV2D_DEPTHWISE},
    {"depthwise 5x3 W < kernel", {1, 3, 3, 6, 2, 5, 3, 1, 1, 2, 1, 1, 1, 3, false, false},
     CONV2D_DEPTHWISE},
    {"depthwise 1x1", {2, 3, 3, 4, 5, 1, 1, 1, 1, 0, 0, 1, 1, 3, true, false},
     CONV2D_DEPTHWISE},
    {"depthwise multiplier 2", {2, 3, 6, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, false},
     CONV2D_DEPTHWISE},
    {"depthwise multiplier 3 s2", {1, 2, 6, 8, 7, 3, 3, 2, 2, 1, 1, 1, 1, 2, false, false},
     CONV2D_DEPTHWISE},
    {"grouped 2", {2, 4, 6, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}, CONV2D_GROUPED},
    {"grouped 3 s2 d2", {2, 6, 3, 9, 8, 3, 3, 2, 2, 1, 2, 2, 1, 3, true, false},
     CONV2D_GROUPED},
    {"grouped 4 no bias", {1, 8, 4, 5, 5, 3, 3, 1, 1, 0, 0, 1, 1, 4, false, false},
     CONV2D_GROUPED},
    {"conv1d dense", {2, 3, 4, 1, 11, 1, 3, 1, 1, 0, 1, 1, 1, 1, true, true}, CONV2D_DENSE},
    {"conv1d depthwise s2", {2, 4, 4, 1, 9, 1, 3, 1, 2, 0, 1, 1, 1, 4, true, true},
     CONV2D_DEPTHWISE},
    {"conv1d pointwise", {2, 4, 3, 1, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, true},
     CONV2D_POINTWISE},
};
#define NPATH_CASES ((int)(sizeof PATH_CASES / sizeof PATH_CASES[0]))

START_TEST(conv2d_matches_reference) {
    for (int i = 0; i < NPATH_CASES; i++) {
        const path_case *pc = &PATH_CASES[i];
        conv2d_geom g = cfg_geom(&pc->c);
        ck_assert_msg(conv2d_choose_path(&g) == pc->path, "%s: path %s, expected %s", pc->name,
                      conv2d_path_name(conv2d_choose_path(&g)), conv2d_path_name(pc->path));
        check_api(pc->name, &pc->c, 100 + (uint64_t)i, true, true);
    }
}
END_TEST

/* NULL gradients are skipped: only dx, then only dweight and dbias, on every path. */
START_TEST(conv2d_null_grads_skipped) {
    for (int i = 0; i < NPATH_CASES; i++) {
        check_api(PATH_CASES[i].name, &PATH_CASES[i].c, 200 + (uint64_t)i, true, false);
        check_api(PATH_CASES[i].name, &PATH_CASES[i].c, 300 + (uint64_t)i, false, true);
    }
}
END_TEST

/* The GEMM kernels called directly with tiles much smaller than the problem (and not
 * dividing it, so tiles straddle output rows) against the reference. */
static void check_tiled(const char *what, const cfg *c, int64_t tile) {
    conv2d_geom g = cfg_geom(c);
    ck_assert_msg(tile < g.OH * g.OW, "%s: the tile must be smaller than the problem", what);
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * (g.C_in / g.groups) * g.KH * g.KW;
    int64_t ny = g.N * g.C_out * g.OH * g.OW, nb = g.C_out;
    size_t nws = conv2d_workspace_floats(&g, tile);
    ck_assert_int_eq((int64_t)nws, g.C_in / g.groups * g.KH * g.KW * tile);
    float *buf = malloc((size_t)(2 * nx + 2 * nw + 2 * ny + 2 * nb) * sizeof(float));
    float *ws = malloc(nws * sizeof(float));
    double *want = calloc((size_t)(ny + nx + nw + nb), sizeof(double));
    ck_assert(buf && ws && want);
    float *x = buf, *w = x + nx, *b = w + nw, *y = b + nb, *dy = y + ny, *dx = dy + ny;
    float *dw = dx + nx, *db = dw + nw;
    fill(&rng, x, nx);
    fill(&rng, w, nw);
    fill(&rng, b, nb);
    fill(&rng, dy, ny);
    memset(dx, 0, (size_t)(nx + nw + nb) * sizeof(float));
    conv2d_forward_cpu(y, x, w, b, &g, ws, tile);
    conv_ref_forward(want, x, w, b, &g);
    tg_expect_close(what, y, want, ny, 1e-4, 1e-5);
    conv2d_backward_cpu(dx, dw, db, dy, x, w, &g, ws, tile, false);
    memset(want, 0, (size_t)(ny + nx + nw + nb) * sizeof(double));
    conv_ref_backward(want, want + nx, want + nx + nw, dy, x, w, &g);
    tg_expect_close("tiled dx", dx, want, nx, 1e-4, 1e-5);
    tg_expect_close("tiled dweight", dw, want + nx, nw, 1e-3, 1e-5);
    tg_expect_close("tiled dbias", db, want + nx + nw, nb, 1e-3, 1e-5);
    free(buf);
    free(ws);
    free(want);
}

START_TEST(conv2d_tiles_match_reference) {
    cfg big = {1, 16, 8, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false};
    check_tiled("dense 1x16x40x40 3x3, 97-column tiles", &big, 97);
    check_tiled("dense 1x16x40x40 3x3, 16-column tiles", &big, 16);
    cfg grouped = {2, 6, 9, 23, 19, 3, 3, 2, 2, 1, 2, 2, 1, 3, true, false};
    check_tiled("grouped 3 s2, 13-column tiles", &grouped, 13);
    cfg seq = {2, 3, 4, 1, 50, 1, 5, 1, 3, 0, 2, 1, 2, 1, true, true};
    check_tiled("conv1d, 7-column tiles", &seq, 7);
}
END_TEST

/* The GEMM paths split their work between threads (ops/conv2d_gemm.c, THREADS): at 1, 2,
 * 3 and 4 threads y, dx, dweight and dbias must be the same bits run to run and agree
 * with one thread to rounding (OpenBLAS picks its kernels by shape, so another split can
 * change the last bits, as docs/ARCHITECTURE.md allows), with tiles that straddle rows,
 * image and channel counts that do not divide by the threads, and with dx skipped (then
 * threads split single rows of the im2col matrix). */
static void conv_run_threads(const cfg *c, int64_t tile, int threads, bool want_dx,
                             float *res) {
    conv2d_geom g = cfg_geom(c);
    int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * (g.C_in / g.groups) * g.KH * g.KW;
    int64_t ny = g.N * g.C_out * g.OH * g.OW, nb = g.C_out;
    tg_rng rng;
    tg_rng_seed(&rng, 91);
    float *in = malloc((size_t)(nx + nw + nb + ny) * sizeof(float));
    tg_set_num_threads(threads);
    size_t nws = conv2d_workspace_floats(&g, tile);
    float *ws = malloc((nws ? nws : 1) * sizeof(float));
    ck_assert(in && ws);
    float *x = in, *w = x + nx, *b = w + nw, *dy = b + nb;
    fill(&rng, in, nx + nw + nb + ny);
    /* res: y, then dx, dw, db (accumulated onto ones, as gradients are) */
    float *y = res, *dx = y + ny, *dw = dx + nx, *db = dw + nw;
    for (int64_t i = 0; i < nx + nw + nb; i++) dx[i] = 1.0f;
    conv2d_forward_cpu(y, x, w, b, &g, ws, tile);
    conv2d_backward_cpu(want_dx ? dx : NULL, dw, db, dy, x, w, &g, ws, tile, false);
    free(in);
    free(ws);
}

START_TEST(conv2d_threads_deterministic) {
    const struct {
        const char *name;
        cfg c;
        int64_t tile;
        bool dx;
    } cases[] = {
        {"dense N3 C5->8 17x19, 41-column tiles", {3, 5, 8, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, 41, true},
        {"dense N3 C5->8 17x19, no dx", {3, 5, 8, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, 0, false},
        {"dense N1 C1->16 28x28, no dx", {1, 1, 16, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, 0, false},
        {"dense N8 C7->9 14x14", {8, 7, 9, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false}, 0, true},
        {"grouped 3 N2 s2", {2, 6, 9, 23, 19, 3, 3, 2, 2, 1, 2, 1, 1, 3, true, false}, 13, true},
        {"pointwise N3 12->10 20x21", {3, 12, 10, 20, 21, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, false}, 0, true},
        {"pointwise N1 7->33 30x31", {1, 7, 33, 30, 31, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, false}, 0, true},
    };
    int saved = tg_get_num_threads();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conv2d_geom g = cfg_geom(&cases[i].c);
        int64_t n = g.N * g.C_out * g.OH * g.OW + g.N * g.C_in * g.H * g.W +
                    g.C_out * (g.C_in / g.groups) * g.KH * g.KW + g.C_out;
        float *ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        float *again = malloc((size_t)n * sizeof(float));
        ck_assert(ref && got && again);
        conv_run_threads(&cases[i].c, cases[i].tile, 1, cases[i].dx, ref);
        for (int t = 1; t <= 4; t++) {
            conv_run_threads(&cases[i].c, cases[i].tile, t, cases[i].dx, got);
            conv_run_threads(&cases[i].c, cases[i].tile, t, cases[i].dx, again);
            ck_assert_msg(memcmp(got, again, (size_t)n * sizeof(float)) == 0,
                          "%s: two runs at %d threads differ", cases[i].name, t);
            for (int64_t k = 0; k < n; k++)
                ck_assert_msg(fabsf(got[k] - ref[k]) <= 1e-5f + 1e-5f * fabsf(ref[k]),
                              "%s: element %lld is %.9g at 1 thread, %.9g at %d", cases[i].name,
                              (long long)k, ref[k], got[k], t);
        }
        free(again);
        free(ref);
        free(got);
    }
    tg_set_num_threads(saved);
}
END_TEST

/* The default tile keeps the column buffer within ~8 MiB and stays a multiple of 16. */
START_TEST(conv2d_tile_policy) {
    cfg layer = {1, 256, 256, 256, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false};
    conv2d_geom g = cfg_geom(&layer);
    int64_t t = conv2d_default_tile_cols(&g);
    ck_assert_int_lt(t, g.OH * g.OW);
    ck_assert_int_eq(t % 16, 0);
    ck_assert_uint_le(conv2d_workspace_floats(&g, 0) * sizeof(float), (size_t)8 << 20);
    cfg small = {1, 4, 4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false};
    g = cfg_geom(&small);
    ck_assert_int_eq(conv2d_default_tile_cols(&g), 64);
    layer.KH = layer.KW = 1;
    layer.ph = layer.pw = 0;
    g = cfg_geom(&layer);
    ck_assert_uint_eq(conv2d_workspace_floats(&g, 0), 0); /* pointwise: no transform */
    layer.KH = layer.KW = 3;
    layer.groups = 256;
    g = cfg_geom(&layer);
    ck_assert_uint_eq(conv2d_workspace_floats(&g, 0), 0); /* depthwise: direct */
}
END_TEST

/* ---------------------------------------------------------------- finite differences */

static tg_tensor *conv_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return conv(ctx, user, in[0], in[1], in[2]);
}

static void gradcheck_cfg(const char *what, const cfg *c, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    tg_tensor *in[3] = {rand_tensor(ctx, &rng, x_shape(c), true),
                        rand_tensor(ctx, &rng, w_shape(c), true),
                        c->bias ? rand_tensor(ctx, &rng, tg_shape1(c->C_out), true) : NULL};
    tg_expect_gradcheck_tol(what, ctx, conv_graph, (void *)c, in, c->bias ? 3 : 2, 1e-2, 2e-3,
                            1e-2, 16);
    tg_ctx_free(ctx);
}

/* groups 1/2/C x stride 1/2 x pad 0/1 x dilation 1/2 x 1x1/3x3 x batch 1/3 x bias, on
 * odd non-square 5x7 inputs with 4 channels. */
START_TEST(conv2d_gradcheck_grid) {
    const int groups[] = {1, 2, 4};
    char what[160];
    int n = 0;
    for (int gi = 0; gi < 3; gi++)
        for (int s = 1; s <= 2; s++)
            for (int p = 0; p <= 1; p++)
                for (int d = 1; d <= 2; d++)
                    for (int k = 1; k <= 3; k += 2)
                        for (int batch = 1; batch <= 3; batch += 2)
                            for (int bias = 0; bias <= 1; bias++) {
                                cfg c = {batch, 4, 4, 5, 7, k, k, s, s, p, p, d, d,
                                         groups[gi], bias == 1, false};
                                snprintf(what, sizeof what, "conv2d g%d s%d p%d d%d k%d n%d b%d",
                                         groups[gi], s, p, d, k, batch, bias);
                                gradcheck_cfg(what, &c, 1000 + (uint64_t)n++);
                            }
    ck_assert_int_eq(n, 192);
}
END_TEST

/* Depthwise with a channel multiplier, non-square kernels and mixed strides/pads. */
START_TEST(conv2d_gradcheck_extra) {
    const cfg cases[] = {
        {2, 3, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, false},
        {1, 2, 6, 7, 5, 3, 3, 2, 2, 1, 1, 2, 2, 2, false, false},
        {2, 3, 3, 6, 5, 3, 1, 2, 1, 1, 0, 1, 1, 3, true, false},
        {2, 4, 3, 5, 8, 1, 3, 1, 2, 0, 1, 1, 2, 1, true, false},
        {1, 6, 4, 4, 9, 2, 3, 1, 1, 1, 0, 1, 1, 2, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        gradcheck_cfg("conv2d extra", &cases[i], 2000 + i);
}
END_TEST

START_TEST(conv1d_gradcheck) {
    const cfg cases[] = {
        {2, 4, 4, 1, 9, 1, 3, 1, 1, 0, 1, 1, 1, 1, true, true},
        {1, 4, 6, 1, 11, 1, 3, 1, 2, 0, 0, 1, 2, 2, true, true},
        {3, 4, 4, 1, 8, 1, 3, 1, 2, 0, 1, 1, 1, 4, false, true},
        {2, 4, 8, 1, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, true},
        {1, 4, 8, 1, 10, 1, 5, 1, 1, 0, 2, 1, 2, 4, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        gradcheck_cfg("conv1d", &cases[i], 3000 + i);
}
END_TEST

/* ---------------------------------------------------------------- PyTorch golden values */

typedef struct golden_case {
    const char *name;
    bool is1d;
    tg_conv2d_opts opts;
} golden_case;

/* Mirrors CONFIGS in tests/golden/gen_conv2d.py. */
static const golden_case GOLDEN[] = {
    {"dense3x3", false, {1, 1, 1, 1, 1, 1, 1}},
    {"stride2", false, {2, 2, 1, 1, 1, 1, 1}},
    {"dilation2", false, {1, 1, 2, 2, 2, 2, 1}},
    {"groups2", false, {1, 1, 1, 1, 1, 1, 2}},
    {"depthwise", false, {1, 1, 1, 1, 1, 1, 5}},
    {"depthwise_s2_m2", false, {2, 2, 1, 1, 1, 1, 3}},
    {"pointwise", false, {1, 1, 0, 0, 1, 1, 1}},
    {"pointwise_g2", false, {1, 1, 0, 0, 1, 1, 2}},
    {"rect_nobias", false, {1, 2, 0, 2, 2, 1, 1}},
    {"conv1d", true, {0, 1, 0, 1, 0, 1, 1}},
    {"conv1d_s2d2g3", true, {0, 2, 0, 1, 0, 2, 3}},
};

static void expect_golden(const tg_fixture *fx, const char *name, const char *field,
                          const float *got, int64_t n, double atol) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", name, field);
    tg_shape s;
    const double *want = tg_fixture_get(fx, key, &s);
    ck_assert_msg(tg_shape_numel(s) == n, "%s: %lld elements, fixture has %lld", key,
                  (long long)n, (long long)tg_shape_numel(s));
    tg_expect_close(key, got, want, n, atol, 1e-5);
}

static tg_tensor *golden_tensor(tg_ctx *ctx, const tg_fixture *fx, const char *name,
                                const char *field, bool requires_grad) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return tg_fixture_has(fx, key) ? tg_fixture_tensor(ctx, fx, key, requires_grad) : NULL;
}

START_TEST(conv2d_golden) {
    tg_fixture *fx = tg_fixture_load("conv2d.bin");
    for (size_t i = 0; i < sizeof GOLDEN / sizeof GOLDEN[0]; i++) {
        const golden_case *gc = &GOLDEN[i];
        tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
        tg_tensor *x = golden_tensor(ctx, fx, gc->name, "x", true);
        tg_tensor *w = golden_tensor(ctx, fx, gc->name, "weight", true);
        tg_tensor *b = golden_tensor(ctx, fx, gc->name, "bias", true);
        tg_tensor *dout = golden_tensor(ctx, fx, gc->name, "dout", false);
        ck_assert(x && w && dout);
        tg_tensor *y = gc->is1d ? tg_conv1d(ctx, x, w, b, gc->opts)
                                : tg_conv2d(ctx, x, w, b, gc->opts);
        tg_expect_ok(gc->name);
        ck_assert_msg(tg_shape_equal(y->shape, dout->shape), "%s: output shape differs",
                      gc->name);
        expect_golden(fx, gc->name, "y", y->data, y->numel, 1e-5);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        expect_golden(fx, gc->name, "dx", x->grad, x->numel, 1e-4);
        expect_golden(fx, gc->name, "dweight", w->grad, w->numel, 1e-4);
        if (b) expect_golden(fx, gc->name, "dbias", b->grad, b->numel, 1e-4);
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}
END_TEST

/* ---------------------------------------------------------------- accumulation */

/* Gradients are ADDED: x, weight and bias live in a parameter store whose gradients are
 * pre-filled with 0.5; after one backward each holds 0.5 + the reference gradient. */
START_TEST(conv2d_accumulates) {
    const int cases[] = {0, 9, 11, 15, 17, 21}; /* dense, pointwise, depthwise (x2), grouped, 1d */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const path_case *pc = &PATH_CASES[cases[i]];
        const cfg *c = &pc->c;
        conv2d_geom g = cfg_geom(c);
        tg_params *ps = tg_params_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_params_add(ps, "x", x_shape(c));
        tg_tensor *w = tg_params_add(ps, "w", w_shape(c));
        tg_tensor *b = tg_params_add(ps, "b", tg_shape1(c->C_out));
        tg_rng rng;
        tg_rng_seed(&rng, 400 + i);
        tg_tensor *ts[3] = {x, w, b};
        for (int t = 0; t < 3; t++) {
            fill(&rng, ts[t]->data, ts[t]->numel);
            for (int64_t j = 0; j < ts[t]->numel; j++) ts[t]->grad[j] = 0.5f;
        }
        tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
        tg_tensor *y = conv(ctx, c, x, w, b);
        tg_expect_ok(pc->name);
        float *dout = malloc((size_t)y->numel * sizeof(float));
        int64_t n = x->numel + w->numel + b->numel;
        double *want = calloc((size_t)n, sizeof(double));
        ck_assert(dout && want);
        fill(&rng, dout, y->numel);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout), TG_OK);
        conv_ref_backward(want, want + x->numel, want + x->numel + w->numel, dout, x->data, w->data,
                     &g);
        for (int64_t j = 0; j < n; j++) want[j] += 0.5;
        tg_expect_close("accumulated dx", x->grad, want, x->numel, 1e-4, 1e-5);
        tg_expect_close("accumulated dweight", w->grad, want + x->numel, w->numel, 1e-4, 1e-5);
        tg_expect_close("accumulated dbias", b->grad, want + x->numel + w->numel, b->numel,
                        1e-4, 1e-5);
        free(dout);
        free(want);
        tg_ctx_free(ctx);
        tg_params_free(ps);
    }
}
END_TEST

/* ---------------------------------------------------------------- profile rows */

START_TEST(conv2d_profile_describes_path) {
    static const struct {
        int index;
        const char *detail;
    } rows[] = {{0, "dense 3x3"}, {1, "dense 3x2 s2"}, {9, "pointwise 1x1"},
                {11, "depthwise 3x3"}, {18, "grouped 3x3 s2 g3"}, {20, "dense k3"}};
    const int nrows = (int)(sizeof rows / sizeof rows[0]);
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU); /* AUTO would name its choice: "auto: ..." */
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    for (int i = 0; i < nrows; i++) {
        const cfg *c = &PATH_CASES[rows[i].index].c;
        tg_tensor *x = rand_tensor(ctx, &rng, x_shape(c), true);
        tg_tensor *w = rand_tensor(ctx, &rng, w_shape(c), true);
        tg_tensor *b = c->bias ? rand_tensor(ctx, &rng, tg_shape1(c->C_out), true) : NULL;
        ck_assert_ptr_nonnull(conv(ctx, c, x, w, b));
    }
    tg_op_profile prof[8];
    ck_assert_int_eq(tg_tape_profile(ctx, prof, 8), nrows);
    for (int i = 0; i < nrows; i++) {
        const cfg *c = &PATH_CASES[rows[i].index].c;
        conv2d_geom g = cfg_geom(c);
        ck_assert_str_eq(prof[i].op, c->is1d ? "conv1d" : "conv2d");
        ck_assert_str_eq(prof[i].detail, rows[i].detail);
        double flops = 2.0 * (double)(g.N * g.C_out * g.OH * g.OW * (g.C_in / g.groups) *
                                      g.KH * g.KW);
        if (c->bias) flops += (double)(g.N * g.C_out * g.OH * g.OW);
        ck_assert_double_eq_tol(prof[i].fwd_flops, flops, 0.5);
        ck_assert(prof[i].bwd_flops > 1.9 * flops && prof[i].fwd_bytes > 0 &&
                  prof[i].bwd_bytes > prof[i].fwd_bytes);
    }
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

START_TEST(conv2d_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape4(8, 4, 3, 3));
    tg_tensor *b = tg_params_add(ps, "b", tg_shape1(8));
    tg_tensor *b7 = tg_params_add(ps, "b7", tg_shape1(7));
    tg_tensor *b2d = tg_params_add(ps, "b2d", tg_shape2(1, 8));
    tg_tensor *w3 = tg_params_add(ps, "w3", tg_shape3(8, 4, 3));
    tg_tensor *w5 = tg_params_add(ps, "w5", tg_shape4(5, 2, 3, 3));
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_tensor *owned[] = {w, b, b7, b2d, w3, w5};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        fill(&rng, owned[i]->data, owned[i]->numel);
    int64_t np = tg_params_numel(ps);
    float *before = malloc((size_t)np * sizeof(float));
    ck_assert_ptr_nonnull(before);
    memcpy(before, tg_params_data(ps), (size_t)np * sizeof(float));
    tg_tensor *x = rand_tensor(ctx, &rng, tg_shape4(2, 4, 6, 6), true);
    tg_tensor *x3 = rand_tensor(ctx, &rng, tg_shape3(2, 4, 6), true);
    tg_tensor *x5 = rand_tensor(ctx, &rng, tg_shape4(2, 5, 6, 6), true);
    tg_tensor *tiny = rand_tensor(ctx, &rng, tg_shape4(1, 4, 2, 2), true);
    tg_conv2d_opts ok = tg_conv2d_opts_make(1, 1, 1, 1);
    tg_error_clear();

#define BAD(call, status, arg)                                                             \
    do {                                                                                   \
        ck_assert_ptr_null(call);                                                          \
        tg_expect_error(#call, status, "tg_conv2d", arg);                                  \
    } while (0)
    BAD(tg_conv2d(ctx, x3, w, b, ok), TG_ERR_SHAPE, "'x'");
    BAD(tg_conv2d(ctx, x, w3, b, ok), TG_ERR_SHAPE, "'weight'");
    BAD(tg_conv2d(ctx, x5, w, b, ok), TG_ERR_SHAPE, "(8, 5, 3, 3)");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, 1, 3)), TG_ERR_ARG, "groups");
    BAD(tg_conv2d(ctx, x, w5, NULL, tg_conv2d_opts_make(1, 1, 1, 2)), TG_ERR_ARG, "C_out");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, 1, 2)), TG_ERR_SHAPE,
        "(8, 2, 3, 3)");
    BAD(tg_conv2d(ctx, x, w, b7, ok), TG_ERR_SHAPE, "'bias'");
    BAD(tg_conv2d(ctx, x, w, b2d, ok), TG_ERR_SHAPE, "'bias'");
    BAD(tg_conv2d(ctx, tiny, w, b, tg_conv2d_opts_make(1, 0, 1, 1)), TG_ERR_SHAPE,
        "(1, 4, 2, 2)");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, 4, 1)), TG_ERR_SHAPE, "dilation");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(-1, 1, 1, 1)), TG_ERR_ARG, "stride");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, -1, 1, 1)), TG_ERR_ARG, "padding");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, -2, 1)), TG_ERR_ARG, "dilation");
    BAD(tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, 1, -4)), TG_ERR_ARG, "groups");
    BAD(tg_conv2d(ctx, NULL, w, b, ok), TG_ERR_ARG, "'x'");
    BAD(tg_conv2d(ctx, x, NULL, b, ok), TG_ERR_ARG, "'weight'");
    BAD(tg_conv2d(NULL, x, w, b, ok), TG_ERR_ARG, "ctx");
#undef BAD
    ck_assert_ptr_null(tg_conv1d(ctx, x, w, b, ok));
    tg_expect_error("conv1d 4-D x", TG_ERR_SHAPE, "tg_conv1d", "'x'");
    ck_assert_ptr_null(tg_conv1d(ctx, x3, w, b, ok));
    tg_expect_error("conv1d 4-D weight", TG_ERR_SHAPE, "tg_conv1d", "(C_out, C_in/groups, K)");
    ck_assert_ptr_null(tg_conv1d(ctx, x3, w3, b, tg_conv2d_opts_make(1, 0, 3, 1)));
    tg_expect_error("conv1d too small", TG_ERR_SHAPE, "tg_conv1d", "(2, 4, 6)");

    /* The first error stands: a later conv given its NULL result does not overwrite it. */
    tg_tensor *y = tg_conv2d(ctx, x3, w, b, ok);
    ck_assert_ptr_null(tg_conv2d(ctx, y, w, b, ok));
    tg_expect_error("chained NULL", TG_ERR_SHAPE, "has shape (2, 4, 6)", NULL);

    /* Nothing the caller owns changed, and nothing was recorded. */
    ck_assert_int_eq(tg_tape_length(ctx), 0);
    ck_assert_mem_eq(before, tg_params_data(ps), (size_t)np * sizeof(float));
    for (int64_t i = 0; i < np; i++) ck_assert_float_eq(tg_params_grad(ps)[i], 0.0f);
    free(before);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- depthwise fast path */

/* The depthwise kernels called directly (3x3, pad 1: the row-vectorised fast path, or any
 * other geometry: the generic one) against the reference: y is overwritten (pre-filled
 * with garbage), every gradient ADDED to a pre-filled value, and each subset of gradients
 * (all, dx only, dW and db only, db only) computed alone. */
static void check_depthwise_direct(const char *what, const cfg *c, uint64_t seed) {
    conv2d_geom g = cfg_geom(c);
    ck_assert_int_eq(conv2d_choose_path(&g), CONV2D_DEPTHWISE);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * g.KH * g.KW;
    int64_t ny = g.N * g.C_out * g.OH * g.OW, nb = g.C_out;
    float *buf = malloc((size_t)(2 * nx + 2 * nw + 2 * ny + 2 * nb) * sizeof(float));
    double *want = calloc((size_t)(ny + nx + nw + nb), sizeof(double));
    ck_assert(buf && want);
    float *x = buf, *w = x + nx, *b = w + nw, *y = b + nb, *dy = y + ny, *dx = dy + ny;
    float *dw = dx + nx, *db = dw + nw;
    fill(&rng, x, nx);
    fill(&rng, w, nw);
    fill(&rng, b, nb);
    fill(&rng, dy, ny);
    for (int64_t i = 0; i < ny; i++) y[i] = 1e30f;
    conv2d_depthwise_forward_cpu(y, x, w, c->bias ? b : NULL, &g);
    conv_ref_forward(want, x, w, c->bias ? b : NULL, &g);
    char msg[160];
    snprintf(msg, sizeof msg, "%s: forward", what);
    tg_expect_close(msg, y, want, ny, 1e-4, 1e-4);

    const float pre = 0.5f; /* gradients accumulate onto this */
    double *wx = want, *ww = want + nx, *wb = want + nx + nw;
    memset(want, 0, (size_t)(ny + nx + nw + nb) * sizeof(double));
    conv_ref_backward(wx, ww, wb, dy, x, w, &g);
    for (int64_t i = 0; i < nx + nw + nb; i++) want[i] += pre;
    static const char *subsets[] = {"dx+dW+db", "dx only", "dW+db only", "db only"};
    for (int s = 0; s < 4; s++) {
        for (int64_t i = 0; i < nx + nw + nb; i++) dx[i] = pre; /* dx, dw, db are adjacent */
        bool gx = s <= 1, gw = s == 0 || s == 2, gb = s != 1;
        conv2d_depthwise_backward_cpu(gx ? dx : NULL, gw ? dw : NULL, gb ? db : NULL, dy, x, w,
                                      &g, false);
        snprintf(msg, sizeof msg, "%s: %s dx", what, subsets[s]);
        if (gx) tg_expect_close(msg, dx, wx, nx, 1e-4, 1e-4);
        for (int64_t i = 0; !gx && i < nx; i++) ck_assert_float_eq(dx[i], pre);
        snprintf(msg, sizeof msg, "%s: %s dweight", what, subsets[s]);
        if (gw) tg_expect_close(msg, dw, ww, nw, 1e-3, 1e-4);
        for (int64_t i = 0; !gw && i < nw; i++) ck_assert_float_eq(dw[i], pre);
        snprintf(msg, sizeof msg, "%s: %s dbias", what, subsets[s]);
        if (gb) tg_expect_close(msg, db, wb, nb, 1e-3, 1e-4);
        for (int64_t i = 0; !gb && i < nb; i++) ck_assert_float_eq(db[i], pre);
    }
    free(buf);
    free(want);
}

/* Edges of the fast path: W below and around the vector width, H = 1, 2, 3 (no middle
 * rows, one middle row), odd sizes with stride 2, mixed strides, planes cut into several
 * flat row blocks (H > 128 rows) and rows too long for a block (W > 16384). */
START_TEST(conv2d_depthwise_fast_edges) {
    static const struct {
        const char *name;
        cfg c;
    } cases[] = {
        {"1x1 plane", {1, 2, 2, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"H 1 W 19", {1, 3, 3, 1, 19, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, false}},
        {"H 19 W 1", {1, 3, 3, 19, 1, 3, 3, 1, 1, 1, 1, 1, 1, 3, false, false}},
        {"2x2", {2, 2, 4, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"3x17 one middle row", {1, 2, 2, 3, 17, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"5x16", {2, 3, 3, 5, 16, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, false}},
        {"9x33", {1, 2, 2, 9, 33, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"s2 odd 15x31", {2, 3, 3, 15, 31, 3, 3, 2, 2, 1, 1, 1, 1, 3, true, false}},
        {"s2 even 14x32", {1, 2, 4, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, false}},
        {"s2 3x3", {1, 2, 2, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, false}},
        {"s2 1x2", {1, 2, 2, 1, 2, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, false}},
        {"s2 2x1", {1, 2, 2, 2, 1, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, false}},
        {"sh 1 sw 2", {1, 2, 2, 7, 21, 3, 3, 1, 2, 1, 1, 1, 1, 2, true, false}},
        {"sh 2 sw 1", {1, 2, 6, 8, 13, 3, 3, 2, 1, 1, 1, 1, 1, 2, true, false}},
        {"3 row blocks", {1, 2, 2, 300, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"rows over a block", {1, 2, 2, 4, 16390, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, false}},
        {"pad 0: generic", {1, 2, 2, 6, 9, 3, 3, 1, 1, 0, 0, 1, 1, 2, true, false}},
        {"pad 2 dilation 2: generic", {1, 2, 2, 7, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, true, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_depthwise_direct(cases[i].name, &cases[i].c, 900 + i);
}
END_TEST

/* Random depthwise shapes on the fast path: batch 1-2, 2-5 channels, multiplier 1-2,
 * H 1-24, W 1-40, strides 1/2 each way, with and without bias. */
START_TEST(conv2d_depthwise_fast_random) {
    tg_rng rng;
    tg_rng_seed(&rng, 4242);
    for (int t = 0; t < 60; t++) {
        int C = 2 + (int)tg_rng_below(&rng, 4), m = 1 + (int)tg_rng_below(&rng, 2);
        cfg c = {1 + (int)tg_rng_below(&rng, 2), C, C * m, 1 + (int)tg_rng_below(&rng, 24),
                 1 + (int)tg_rng_below(&rng, 40), 3, 3, 1 + (int)tg_rng_below(&rng, 2),
                 1 + (int)tg_rng_below(&rng, 2), 1, 1, 1, 1, C, tg_rng_below(&rng, 2) == 0,
                 false};
        char name[160];
        snprintf(name, sizeof name, "random %d: N %d C %d m %d %dx%d s %d,%d", t, c.N, C, m,
                 c.H, c.W, c.sh, c.sw);
        check_depthwise_direct(name, &c, 1000 + (uint64_t)t);
    }
}
END_TEST

Suite *conv2d_suite(void) {
    Suite *s = suite_create("conv2d");
    TCase *tc = tg_test_case("conv2d");
    tcase_add_test(tc, conv2d_matches_reference);
    tcase_add_test(tc, conv2d_null_grads_skipped);
    tcase_add_test(tc, conv2d_tiles_match_reference);
    tcase_add_test(tc, conv2d_tile_policy);
    tcase_add_test(tc, conv2d_threads_deterministic);
    tcase_add_test(tc, conv2d_gradcheck_grid);
    tcase_add_test(tc, conv2d_gradcheck_extra);
    tcase_add_test(tc, conv1d_gradcheck);
    tcase_add_test(tc, conv2d_golden);
    tcase_add_test(tc, conv2d_accumulates);
    tcase_add_test(tc, conv2d_profile_describes_path);
    tcase_add_test(tc, conv2d_bad_input);
    suite_add_tcase(s, tc);
    TCase *fast = tg_test_case("conv2d_depthwise_fast");
    tcase_add_test(fast, conv2d_depthwise_fast_edges);
    tcase_add_test(fast, conv2d_depthwise_fast_random);
    suite_add_tcase(s, fast);
    return s;
}
