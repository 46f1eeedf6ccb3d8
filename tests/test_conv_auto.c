/*
 * tests/test_conv_auto.c — TG_CONV_ALGO_AUTO as the library's default, and its choices
 * carried by checkpoints: a new context reports AUTO and records a choice per Winograd
 * geometry (another batch size of it takes the closest one's choice untimed);
 * tg_ctx_set_conv_choices seeds a table (a seeded choice is followed bit for bit,
 * bad tables are refused and change nothing); a CNN trained under AUTO with one layer
 * forced to Winograd, checkpointed and resumed in a fresh context (the choices restored
 * from the file) ends byte-identical to the uninterrupted run, and is not without them;
 * files without choices are the format they were (an older committed file loads and saves
 * to the same bytes), a committed file with choices reads back; malformed choice sections
 * are refused before anything changes.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SOURCE_DIR TG_FIXTURE_DIR "/../.."
#define OLD_CKPT SOURCE_DIR "/tests/corpus/checkpoint/full.ckpt"
#define CONV_CKPT SOURCE_DIR "/tests/corpus/checkpoint/conv-choices.ckpt"

static void fill(tg_rng *rng, float *p, int64_t n) { tg_rng_fill_uniform(rng, p, n, -1, 1); }

/* One 3x3 stride-1 conv (a Winograd geometry: AUTO decides it) forward on ctx with the
 * operands drawn from seed 3; y receives the output, detail the profile's variant. */
static void one_conv(tg_ctx *ctx, float *y, char *detail, size_t detail_size) {
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape4(2, 3, 10, 9));
    tg_tensor *w = tg_tensor_new(ctx, tg_shape4(4, 3, 3, 3));
    tg_tensor *b = tg_tensor_new(ctx, tg_shape1(4));
    ck_assert(x && w && b);
    fill(&rng, x->data, x->numel);
    fill(&rng, w->data, w->numel);
    fill(&rng, b->data, b->numel);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor_set_requires_grad(b, true);
    tg_tensor *out = tg_conv2d(ctx, x, w, b, tg_conv2d_opts_make(1, 1, 1, 1));
    ck_assert_msg(out != NULL, "%s", tg_error_message());
    memcpy(y, out->data, (size_t)out->numel * sizeof(float));
    tg_op_profile rows[2];
    ck_assert_int_eq(tg_tape_profile(ctx, rows, 2), 1);
    snprintf(detail, detail_size, "%s", rows[0].detail);
    tg_step_end(ctx);
}
#define ONE_CONV_OUT (2 * 4 * 10 * 9)
static const tg_conv_choice one_conv_geom = {.n = 2, .c_in = 3, .h = 10, .w = 9, .c_out = 4,
                                             .pad_h = 1, .pad_w = 1, .bias = true};

/* The default: a new context (and NULL) says AUTO; the first Winograd geometry is timed
 * and recorded, the record says which path ran, and the output is bit for bit that path's
 * (run pinned in another context). A stride-2 conv is not timed. */
START_TEST(new_context_is_auto) {
    ck_assert_int_eq(tg_ctx_conv_algo(NULL), TG_CONV_ALGO_AUTO);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), TG_CONV_ALGO_AUTO);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 0);
    float y[ONE_CONV_OUT], y_pinned[ONE_CONV_OUT];
    char detail[64], detail_pinned[64];
    one_conv(ctx, y, detail, sizeof detail);
    tg_conv_choice row;
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, &row, 1), 1);
    ck_assert(row.n == 2 && row.c_in == 3 && row.h == 10 && row.w == 9 && row.c_out == 4 &&
              row.pad_h == 1 && row.pad_w == 1 && row.bias);
    ck_assert_msg(row.gemm_seconds >= 0 && row.winograd_seconds >= 0 &&
                  row.gemm_seconds + row.winograd_seconds > 0, "untimed: %g %g",
                  row.gemm_seconds, row.winograd_seconds);
    ck_assert_str_eq(detail, row.winograd ? "auto: winograd 3x3" : "auto: dense 3x3");
    /* the same geometry again: no second timing, the same path */
    one_conv(ctx, y_pinned, detail_pinned, sizeof detail_pinned);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 1);
    ck_assert_str_eq(detail_pinned, detail);
    ck_assert(!memcmp(y, y_pinned, sizeof y));
    tg_ctx *pinned = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_int_eq(tg_ctx_set_conv_algo(pinned, row.winograd ? TG_CONV_ALGO_WINOGRAD
                                                               : TG_CONV_ALGO_GEMM), TG_OK);
    one_conv(pinned, y_pinned, detail_pinned, sizeof detail_pinned);
    ck_assert_str_eq(detail_pinned, row.winograd ? "winograd 3x3" : "dense 3x3");
    ck_assert_msg(!memcmp(y, y_pinned, sizeof y), "auto's output is not its path's");
    tg_ctx_free(pinned);
    /* stride 2: not a Winograd geometry, nothing timed */
    tg_tensor *x = tg_tensor_new(ctx, tg_shape4(1, 2, 7, 7));
    tg_tensor *w = tg_tensor_new(ctx, tg_shape4(2, 2, 3, 3));
    ck_assert(x && w);
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    fill(&rng, x->data, x->numel);
    fill(&rng, w->data, w->numel);
    ck_assert_ptr_nonnull(tg_conv2d(ctx, x, w, NULL, tg_conv2d_opts_make(2, 1, 1, 1)));
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 1);
    tg_ctx_free(ctx);
}
END_TEST

/* A seeded choice is followed without timing, whichever it names; listing gives the rows
 * back with zero timings; 0 rows empties the table. */
START_TEST(seeded_choice_is_followed) {
    float y[ONE_CONV_OUT], want[ONE_CONV_OUT];
    char detail[64], want_detail[64];
    for (int wino = 0; wino < 2; wino++) {
        tg_ctx *pinned = tg_ctx_new(TG_DEVICE_CPU), *ctx = tg_ctx_new(TG_DEVICE_CPU);
        ck_assert(pinned && ctx);
        ck_assert_int_eq(tg_ctx_set_conv_algo(pinned, wino ? TG_CONV_ALGO_WINOGRAD
                                                            : TG_CONV_ALGO_GEMM), TG_OK);
        one_conv(pinned, want, want_detail, sizeof want_detail);
        tg_conv_choice rows[2] = {one_conv_geom, one_conv_geom};
        rows[0].winograd = wino;
        rows[0].gemm_seconds = 5; /* ignored: a seeded row was not timed here */
        rows[1].c_out = 8;        /* another geometry, never used */
        rows[1].winograd = !wino;
        ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 2), TG_OK);
        tg_conv_choice got[3];
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, got, 3), 2);
        ck_assert(got[0].winograd == (wino == 1) && got[1].c_out == 8 &&
                  got[1].winograd == (wino == 0));
        ck_assert(got[0].gemm_seconds == 0 && got[0].winograd_seconds == 0);
        one_conv(ctx, y, detail, sizeof detail);
        ck_assert_str_eq(detail, wino ? "auto: winograd 3x3" : "auto: dense 3x3");
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 2); /* nothing timed */
        ck_assert_msg(!memcmp(y, want, sizeof y), "seeded %s: output differs",
                      wino ? "winograd" : "gemm");
        ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, NULL, 0), TG_OK);
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 0);
        tg_ctx_free(ctx);
        tg_ctx_free(pinned);
    }
    /* A full table keeps its order; the next new geometry replaces the oldest. */
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_conv_choice full[TG_CONV_CHOICES_MAX], got[TG_CONV_CHOICES_MAX];
    for (int i = 0; i < TG_CONV_CHOICES_MAX; i++) {
        full[i] = one_conv_geom;
        full[i].n = 100 + i;
    }
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, full, TG_CONV_CHOICES_MAX), TG_OK);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, got, TG_CONV_CHOICES_MAX), TG_CONV_CHOICES_MAX);
    for (int i = 0; i < TG_CONV_CHOICES_MAX; i++) ck_assert_int_eq(got[i].n, 100 + i);
    one_conv(ctx, y, detail, sizeof detail);
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, got, TG_CONV_CHOICES_MAX), TG_CONV_CHOICES_MAX);
    ck_assert_int_eq(got[0].n, 101);
    ck_assert_int_eq(got[TG_CONV_CHOICES_MAX - 1].n, 2);
    tg_ctx_free(ctx);
}
END_TEST

/* A geometry met again with another batch size takes the choice of the recorded one with
 * the closest batch size, recorded untimed (no second timing for a last, shorter batch or
 * an evaluation batch). */
START_TEST(batch_sizes_share_a_choice) {
    float y[ONE_CONV_OUT];
    char detail[64];
    for (int closest_wino = 0; closest_wino < 2; closest_wino++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        ck_assert_ptr_nonnull(ctx);
        tg_conv_choice rows[2] = {one_conv_geom, one_conv_geom};
        rows[0].n = 1; /* one_conv's batch is 2: gap 1 */
        rows[0].winograd = closest_wino;
        rows[1].n = 5; /* gap 3 */
        rows[1].winograd = !closest_wino;
        ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 2), TG_OK);
        one_conv(ctx, y, detail, sizeof detail);
        ck_assert_str_eq(detail, closest_wino ? "auto: winograd 3x3" : "auto: dense 3x3");
        tg_conv_choice got[3];
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, got, 3), 3);
        ck_assert_int_eq(got[2].n, 2);
        ck_assert(got[2].winograd == (closest_wino == 1));
        ck_assert(got[2].gemm_seconds == 0 && got[2].winograd_seconds == 0); /* untimed */
        one_conv(ctx, y, detail, sizeof detail); /* now an exact match: nothing added */
        ck_assert_int_eq(tg_ctx_conv_choices(ctx, NULL, 0), 3);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* Bad tables are refused with the reason, and the table stays as it was. */
START_TEST(seeding_refuses_bad_tables) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_conv_choice good = one_conv_geom;
    good.winograd = true;
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, &good, 1), TG_OK);
    tg_conv_choice rows[TG_CONV_CHOICES_MAX + 1];
    for (int i = 0; i <= TG_CONV_CHOICES_MAX; i++) {
        rows[i] = one_conv_geom;
        rows[i].n = 1 + i;
    }
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, TG_CONV_CHOICES_MAX + 1), TG_ERR_ARG);
    tg_expect_error("too many", TG_ERR_ARG, "tg_ctx_set_conv_choices", "65 rows");
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, -1), TG_ERR_ARG);
    tg_expect_error("negative", TG_ERR_ARG, "tg_ctx_set_conv_choices", "-1 rows");
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, NULL, 2), TG_ERR_ARG);
    tg_expect_error("NULL rows", TG_ERR_ARG, "tg_ctx_set_conv_choices", "'rows' is NULL");
    ck_assert_int_eq(tg_ctx_set_conv_choices(NULL, rows, 1), TG_ERR_ARG);
    tg_expect_error("NULL ctx", TG_ERR_ARG, "tg_ctx_set_conv_choices", "'ctx'");
    rows[1].h = 0;
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 3), TG_ERR_ARG);
    tg_expect_error("zero size", TG_ERR_ARG, "row 1 has h = 0", NULL);
    rows[1].h = (int64_t)1 << 31;
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 3), TG_ERR_ARG);
    tg_expect_error("huge size", TG_ERR_ARG, "row 1 has h = 2147483648", NULL);
    rows[1].h = 10;
    rows[2].pad_w = -1;
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 3), TG_ERR_ARG);
    tg_expect_error("negative padding", TG_ERR_ARG, "row 2 has padding (1, -1)", NULL);
    rows[2] = rows[0];
    rows[2].winograd = !rows[0].winograd; /* the choice is not part of the key */
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, rows, 3), TG_ERR_ARG);
    tg_expect_error("duplicate", TG_ERR_ARG, "rows 0 and 2 have the same geometry", NULL);
    tg_conv_choice got[2];
    ck_assert_int_eq(tg_ctx_conv_choices(ctx, got, 2), 1);
    ck_assert(got[0].n == good.n && got[0].winograd);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- checkpoint resume */

#define CNN_N 4
#define CNN_HW 8
#define CNN_STEPS 3

typedef struct run {
    tg_model *m;
    tg_optim *opt;
    tg_ctx *ctx;
    tg_train_state st;
} run;

static run run_new(void) {
    run r = {0};
    r.m = tg_cnn_new((tg_cnn_opts){.height = CNN_HW, .width = CNN_HW, .channels1 = 4,
                                   .channels2 = 6, .hidden = 8, .num_classes = 3},
                     TG_DEVICE_CPU, 11);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.01f;
    r.opt = r.m ? tg_adam_new(tg_model_params(r.m), ao) : NULL;
    r.ctx = tg_ctx_new(TG_DEVICE_CPU); /* the library's default: AUTO */
    ck_assert_msg(r.m && r.opt && r.ctx, "%s", tg_error_message());
    return r;
}

static void run_free(run *r) {
    tg_ctx_free(r->ctx);
    tg_optim_free(r->opt);
    tg_model_free(r->m);
}

/* Training steps [first, first + count) on data drawn from (step); the step's index is
 * all that decides its batch, as a loader's position would. */
static void train_steps(run *r, int first, int count) {
    float x[CNN_N * CNN_HW * CNN_HW];
    int32_t y[CNN_N];
    for (int s = first; s < first + count; s++) {
        tg_rng rng;
        tg_rng_seed(&rng, 500 + (uint64_t)s);
        tg_rng_fill_uniform(&rng, x, CNN_N * CNN_HW * CNN_HW, 0, 1);
        for (int i = 0; i < CNN_N; i++) y[i] = (int32_t)tg_rng_below(&rng, 3);
        tg_tensor *xt = tg_tensor_from(r->ctx, tg_shape4(CNN_N, 1, CNN_HW, CNN_HW), x);
        tg_tensor *loss = tg_cross_entropy(r->ctx, tg_model_forward(r->ctx, r->m, xt, true), y);
        ck_assert_msg(loss != NULL, "%s", tg_error_message());
        tg_optim_zero_grad(r->opt);
        ck_assert_int_eq(tg_backward(r->ctx, loss), TG_OK);
        ck_assert_int_eq(tg_optim_step(r->opt), TG_OK);
        tg_step_end(r->ctx);
    }
    r->st.step = tg_optim_steps(r->opt);
}

/* Saves r's state, its context's conv choices included, as a loop does. */
static void save(run *r, const char *path) {
    r->st.nconv_choices = tg_ctx_conv_choices(r->ctx, r->st.conv_choices, TG_CONV_CHOICES_MAX);
    ck_assert_int_eq(tg_checkpoint_save(path, r->m, r->opt, &r->st), TG_OK);
}

/* A run under AUTO with the first conv (x (4, 1, 8, 8) -> 4 channels) forced to Winograd
 * and the second (4 -> 6 at 4x4) left to the timing saves after CNN_STEPS steps and
 * again after 2 CNN_STEPS. A fresh context that loads the first file and seeds its
 * choices ends in the same bytes as the second; one that loads it but runs GEMM does not
 * (the test can tell a lost choice). */
START_TEST(resume_keeps_auto_choices) {
    tg_test_tmpdir_make("tg_conv_auto_");
    const char *mid = tg_test_tmp_path("mid.ckpt"), *full = tg_test_tmp_path("full.ckpt");
    const char *resumed = tg_test_tmp_path("resumed.ckpt");
    const char *lost = tg_test_tmp_path("lost.ckpt");
    run a = run_new();
    ck_assert_int_eq(tg_ctx_conv_algo(a.ctx), TG_CONV_ALGO_AUTO);
    tg_conv_choice first = {.n = CNN_N, .c_in = 1, .h = CNN_HW, .w = CNN_HW, .c_out = 4,
                            .pad_h = 1, .pad_w = 1, .bias = true, .winograd = true};
    ck_assert_int_eq(tg_ctx_set_conv_choices(a.ctx, &first, 1), TG_OK);
    train_steps(&a, 0, CNN_STEPS);
    tg_conv_choice rows[4];
    ck_assert_int_eq(tg_ctx_conv_choices(a.ctx, rows, 4), 2); /* the second was timed */
    ck_assert(rows[0].winograd && rows[1].c_in == 4 && rows[1].c_out == 6 && rows[1].h == 4);
    save(&a, mid);
    train_steps(&a, CNN_STEPS, CNN_STEPS);
    save(&a, full);

    /* The file holds both choices, geometry and decision, no timings. */
    run b = run_new();
    ck_assert_int_eq(tg_checkpoint_load(mid, b.m, b.opt, &b.st), TG_OK);
    ck_assert_int_eq(b.st.nconv_choices, 2);
    ck_assert(b.st.conv_choices[0].winograd && b.st.conv_choices[0].n == CNN_N &&
              b.st.conv_choices[1].winograd == rows[1].winograd &&
              b.st.conv_choices[1].gemm_seconds == 0);
    ck_assert_int_eq(tg_ctx_set_conv_choices(b.ctx, b.st.conv_choices, b.st.nconv_choices),
                     TG_OK);
    train_steps(&b, CNN_STEPS, CNN_STEPS);
    save(&b, resumed);
    size_t n_full, n_resumed;
    uint8_t *bytes_full = tg_test_read_bytes(full, &n_full);
    uint8_t *bytes_resumed = tg_test_read_bytes(resumed, &n_resumed);
    ck_assert_msg(n_full == n_resumed && !memcmp(bytes_full, bytes_resumed, n_full),
                  "the resumed run's checkpoint differs from the uninterrupted run's");

    /* Without the choices (GEMM everywhere) the same resume computes other bits. */
    run c = run_new();
    ck_assert_int_eq(tg_checkpoint_load(mid, c.m, c.opt, &c.st), TG_OK);
    ck_assert_int_eq(tg_ctx_set_conv_algo(c.ctx, TG_CONV_ALGO_GEMM), TG_OK);
    train_steps(&c, CNN_STEPS, CNN_STEPS);
    c.st.nconv_choices = 0;
    ck_assert_int_eq(tg_checkpoint_save(lost, c.m, c.opt, &c.st), TG_OK);
    int64_t na, nc;
    float *pa = tg_test_params_snapshot(tg_model_params(a.m), &na);
    float *pc = tg_test_params_snapshot(tg_model_params(c.m), &nc);
    ck_assert_int_eq(na, nc);
    ck_assert_msg(memcmp(pa, pc, (size_t)na * sizeof(float)) != 0,
                  "GEMM in place of the Winograd choice gave the same parameters: the test "
                  "could not tell a lost choice");
    free(pa), free(pc);
    free(bytes_full), free(bytes_resumed);
    run_free(&a), run_free(&b), run_free(&c);
    tg_test_tmpdir_remove();
}
END_TEST

/* ---------------------------------------------------------------- the file format */

static void fix_crc(uint8_t *b, size_t n) {
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) b[n - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static tg_model *fuzz_mlp(tg_optim **opt) {
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2},
                             TG_DEVICE_CPU, 7);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.01f;
    *opt = m ? tg_adam_new(tg_model_params(m), ao) : NULL;
    ck_assert(m && *opt);
    return m;
}

/* A file written before the choices existed (tests/corpus/checkpoint/full.ckpt, the
 * checkpoint fuzzer's seed) loads with no choices and saves back to the same bytes: files
 * without choices are unchanged. With choices, the flag and the section appear; a section
 * that is malformed, holds a duplicate or an impossible size, or comes without the train
 * state is refused, and the model and the state stay as they were. */
START_TEST(checkpoint_format_compatible) {
    tg_test_tmpdir_make("tg_conv_auto_");
    tg_optim *opt;
    tg_model *m = fuzz_mlp(&opt);
    tg_train_state st;
    memset(&st, 0x5A, sizeof st);
    st.world_size = st.batch = 0;
    ck_assert_msg(tg_checkpoint_load(OLD_CKPT, m, opt, &st) == TG_OK, "%s", tg_error_message());
    ck_assert_int_eq(st.nconv_choices, 0);
    const char *again = tg_test_tmp_path("again.ckpt");
    ck_assert_int_eq(tg_checkpoint_save(again, m, opt, &st), TG_OK);
    size_t n_old, n_again;
    uint8_t *old = tg_test_read_bytes(OLD_CKPT, &n_old);
    uint8_t *b = tg_test_read_bytes(again, &n_again);
    ck_assert_msg(n_old == n_again && !memcmp(old, b, n_old),
                  "a file without conv choices no longer saves to its old bytes");
    ck_assert_int_eq(old[12] & 8, 0);
    free(b);

    /* With two choices: flag bit 3, 2 x 50 bytes + the count more. */
    st.nconv_choices = 2;
    st.conv_choices[0] = one_conv_geom;
    st.conv_choices[0].winograd = true;
    st.conv_choices[0].winograd_seconds = 1.5; /* not stored */
    st.conv_choices[1] = one_conv_geom;
    st.conv_choices[1].n = 7;
    const char *with = tg_test_tmp_path("with.ckpt");
    ck_assert_int_eq(tg_checkpoint_save(with, m, opt, &st), TG_OK);
    size_t n;
    b = tg_test_read_bytes(with, &n);
    ck_assert_uint_eq(n, n_old + 4 + 2 * 50);
    ck_assert_int_eq(b[12] & 8, 8);
    tg_train_state got;
    memset(&got, 0, sizeof got);
    ck_assert_int_eq(tg_checkpoint_parse(b, n, "with", m, opt, &got), TG_OK);
    ck_assert_int_eq(got.nconv_choices, 2);
    ck_assert(got.conv_choices[0].winograd && got.conv_choices[0].winograd_seconds == 0 &&
              got.conv_choices[1].n == 7 && !got.conv_choices[1].winograd &&
              got.conv_choices[1].pad_w == 1 && got.conv_choices[1].bias);
    /* parameters only: the section is skipped */
    ck_assert_int_eq(tg_checkpoint_parse(b, n, "with", m, NULL, NULL), TG_OK);
    /* the committed file with a conv section (fuzz/seed_checkpoint.c) still reads so */
    memset(&got, 0, sizeof got);
    ck_assert_msg(tg_checkpoint_load(CONV_CKPT, m, opt, &got) == TG_OK, "%s",
                  tg_error_message());
    ck_assert_int_eq(got.nconv_choices, 2);
    ck_assert(got.conv_choices[0].winograd && got.conv_choices[0].c_out == 16 &&
              got.conv_choices[0].pad_h == 1 && got.conv_choices[0].bias &&
              !got.conv_choices[1].winograd && got.conv_choices[1].c_in == 16 &&
              got.conv_choices[1].c_out == 32 && got.conv_choices[1].pad_w == 0 &&
              !got.conv_choices[1].bias);

    /* The section sits just before the values; find it from the end. */
    int64_t values = tg_params_numel(tg_model_params(m)) +
                     tg_params_buffer_numel(tg_model_params(m));
    size_t section = n - 4 - 4 * (size_t)(values + 2 * tg_params_numel(tg_model_params(m))) -
                     (4 + 2 * 50);
    ck_assert_int_eq(b[section], 2); /* the count */
    int64_t before_n;
    float *before = tg_test_params_snapshot(tg_model_params(m), &before_n);
    struct {
        const char *what, *needle;
        size_t off;
        uint8_t value;
    } bad[] = {
        {"count 0", "bad count", section, 0},
        {"count 65", "bad count", section, 65},
        {"choice byte 2", "row 0", section + 4 + 49, 2},
        {"bias byte 2", "row 1", section + 4 + 50 + 48, 2},
        {"a zero size", "row 1 has n = 0", section + 4 + 50, 0},
        {"a duplicate", "same geometry", section + 4 + 50, 2},
        {"no train state flag", "unknown flags", 12, (uint8_t)(b[12] & ~2)},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *mod = malloc(n);
        memcpy(mod, b, n);
        mod[bad[i].off] = bad[i].value;
        fix_crc(mod, n);
        memset(&got, 0x33, sizeof got);
        got.world_size = got.batch = 0;
        tg_train_state got_before = got;
        ck_assert_int_eq(tg_checkpoint_parse(mod, n, bad[i].what, m, opt, &got), TG_ERR_FORMAT);
        tg_expect_error(bad[i].what, TG_ERR_FORMAT, bad[i].what, bad[i].needle);
        ck_assert_msg(!memcmp(&got, &got_before, sizeof got), "%s: the state changed",
                      bad[i].what);
        int64_t after_n;
        float *after = tg_test_params_snapshot(tg_model_params(m), &after_n);
        ck_assert(after_n == before_n && !memcmp(after, before, (size_t)after_n * 4));
        free(after);
        free(mod);
    }
    free(before);

    /* Saving refuses a state whose choices could not seed a context. */
    st.conv_choices[1] = st.conv_choices[0];
    ck_assert_int_eq(tg_checkpoint_save(with, m, opt, &st), TG_ERR_ARG);
    tg_expect_error("duplicate on save", TG_ERR_ARG, "tg_checkpoint_save", "same geometry");
    st.nconv_choices = TG_CONV_CHOICES_MAX + 1;
    ck_assert_int_eq(tg_checkpoint_save(with, m, opt, &st), TG_ERR_ARG);
    tg_expect_error("too many on save", TG_ERR_ARG, "tg_checkpoint_save", "65 rows");
    free(b);
    free(old);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_test_tmpdir_remove();
}
END_TEST

Suite *conv_auto_suite(void) {
    Suite *s = suite_create("conv_auto");
    TCase *tc = tg_test_case("conv_auto");
    tcase_add_test(tc, new_context_is_auto);
    tcase_add_test(tc, seeded_choice_is_followed);
    tcase_add_test(tc, batch_sizes_share_a_choice);
    tcase_add_test(tc, seeding_refuses_bad_tables);
    tcase_add_test(tc, resume_keeps_auto_choices);
    tcase_add_test(tc, checkpoint_format_compatible);
    suite_add_tcase(s, tc);
    return s;
}
