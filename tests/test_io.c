/*
 * tests/test_io.c — data, models and checkpoints: the IDX loader (raw, gzip, every kind
 * of bad file), MNIST loading from the committed mini set, datasets and the seeded
 * minibatch iterator (each example once per epoch, resumable position), the MLP and CNN
 * (parameter counts, shapes, whole-model gradient checks, bad input), checkpoints
 * (round trip, deterministic bytes, refusal of truncated, corrupted and mismatched files
 * with the model untouched, bit-exact resume, SIGKILL during save), the fuzzers' regression
 * inputs, and the `tapegrad train | plot | tape` commands end to end.
 */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SOURCE_DIR TG_FIXTURE_DIR "/../.."
#define MINI_DIR SOURCE_DIR "/examples/data/mnist-mini"
#define CORPUS_DIR SOURCE_DIR "/tests/corpus"

/* ---------------------------------------------------------------- helpers */

/* An IDX file: 00 00 08 ndim, big-endian dims, then bytes i % 251. Returns its size. */
static size_t make_idx(uint8_t *out, int ndim, const uint32_t *dims) {
    size_t n = 4, numel = 1;
    out[0] = out[1] = 0;
    out[2] = 8;
    out[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++, n += 4) {
        out[n] = (uint8_t)(dims[i] >> 24);
        out[n + 1] = (uint8_t)(dims[i] >> 16);
        out[n + 2] = (uint8_t)(dims[i] >> 8);
        out[n + 3] = (uint8_t)dims[i];
        numel *= dims[i];
    }
    for (size_t i = 0; i < numel; i++) out[n + i] = (uint8_t)(i % 251);
    return n + numel;
}

static size_t gzip_bytes(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
    z_stream zs = {0};
    ck_assert_int_eq(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t len = zs.total_out;
    deflateEnd(&zs);
    return len;
}

/* All parameter and buffer values of a store, copied. */
static void expect_unchanged(const char *what, tg_params *ps, const float *before) {
    int64_t n;
    float *now = tg_test_params_snapshot(ps, &n);
    ck_assert_msg(memcmp(now, before, (size_t)n * sizeof *now) == 0,
                  "%s: the model changed although the load was refused", what);
    free(now);
}

/* ---------------------------------------------------------------- IDX */

START_TEST(idx_raw_and_gzip) {
    static uint8_t raw[4096], gz[4096];
    uint32_t dims[3] = {3, 4, 5};
    size_t n = make_idx(raw, 3, dims);
    tg_test_tmpdir_make("tg_io_");
    tg_test_write_bytes(tg_test_tmp_path("a.idx"), raw, n);
    size_t gn = gzip_bytes(raw, n, gz, sizeof gz);
    tg_test_write_bytes(tg_test_tmp_path("a.idx.gz"), gz, gn);
    const char *names[2] = {"a.idx", "a.idx.gz"};
    for (int k = 0; k < 2; k++) {
        tg_idx *idx = tg_idx_load(tg_test_tmp_path(names[k]));
        ck_assert_msg(idx != NULL, "%s: %s", names[k], tg_error_message());
        ck_assert_int_eq(idx->ndim, 3);
        ck_assert_int_eq(idx->dim[0], 3);
        ck_assert_int_eq(idx->dim[2], 5);
        ck_assert_int_eq(idx->numel, 60);
        ck_assert(memcmp(idx->data, raw + 16, 60) == 0);
        tg_idx_free(idx);
    }
    tg_idx_free(NULL);
    tg_test_tmpdir_remove();
}
END_TEST

START_TEST(idx_rejects_bad_files) {
    static uint8_t raw[4096], bad[4096], gz[4096];
    uint32_t dims[2] = {4, 6};
    size_t n = make_idx(raw, 2, dims);
    struct {
        const char *what;
        size_t offset; /* byte to set, or SIZE_MAX */
        uint8_t value;
        size_t size;   /* bytes passed */
        const char *needle;
    } cases[] = {
        {"bad magic", 0, 1, 0, "magic"},
        {"float type", 2, 0x0D, 0, "float32"},
        {"0 dims", 3, 0, 0, "0 dims"},
        {"5 dims", 3, 5, 0, "5 dims"},
        {"zero dim", 7, 0, 0, "equal to 0"},
        {"short header", SIZE_MAX, 0, 3, "shorter than an IDX header"},
        {"truncated header", SIZE_MAX, 0, 9, "inside its header"},
        {"truncated data", SIZE_MAX, 0, 12 + 23, "truncated"},
        {"trailing bytes", SIZE_MAX, 0, 12 + 25, "trailing bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, raw, n + 1);
        bad[n] = 0x5a;
        if (cases[i].offset != SIZE_MAX) bad[cases[i].offset] = cases[i].value;
        size_t size = cases[i].size ? cases[i].size : n;
        ck_assert_ptr_null(tg_idx_parse(bad, size, "case.idx"));
        tg_expect_error(cases[i].what, TG_ERR_FORMAT, "case.idx", cases[i].needle);
    }
    /* gzip: truncated stream, corrupted stream, valid stream of a truncated file. */
    size_t gn = gzip_bytes(raw, n, gz, sizeof gz);
    ck_assert_ptr_null(tg_idx_parse(gz, gn - 6, "t.gz"));
    tg_expect_error("truncated gzip", TG_ERR_FORMAT, "t.gz", "truncated gzip");
    gz[gn / 2] ^= 0xff;
    ck_assert_ptr_null(tg_idx_parse(gz, gn, "c.gz"));
    tg_expect_error("corrupted gzip", TG_ERR_FORMAT, "c.gz", NULL);
    gn = gzip_bytes(raw, n - 1, gz, sizeof gz);
    ck_assert_ptr_null(tg_idx_parse(gz, gn, "short.gz"));
    tg_expect_error("gzip of a truncated file", TG_ERR_FORMAT, "short.gz", "truncated");
    gn = gzip_bytes(bad, n + 1, gz, sizeof gz); /* bad[] ends with one extra byte */
    memcpy(bad, raw, n);
    ck_assert_ptr_null(tg_idx_parse(gz, gn, "long.gz"));
    tg_expect_error("gzip with trailing data", TG_ERR_FORMAT, "long.gz", NULL);
    /* Files: missing, a directory. */
    ck_assert_ptr_null(tg_idx_load("/nonexistent/x.idx"));
    tg_expect_error("missing file", TG_ERR_IO, "/nonexistent/x.idx", "cannot open");
    ck_assert_ptr_null(tg_idx_load("/tmp"));
    tg_expect_error("directory", TG_ERR_IO, "not a regular file", NULL);
    ck_assert_ptr_null(tg_idx_load(NULL));
    tg_expect_error("NULL path", TG_ERR_ARG, "tg_idx_load", "path");
}
END_TEST

/* ---------------------------------------------------------------- datasets, loader */

START_TEST(mnist_mini_loads) {
    tg_dataset *tr = tg_mnist_load(MINI_DIR, true), *te = tg_mnist_load(MINI_DIR, false);
    ck_assert_msg(tr && te, "%s", tg_error_message());
    ck_assert_int_eq(tg_dataset_size(tr), 1000);
    ck_assert_int_eq(tg_dataset_size(te), 200);
    ck_assert(tg_shape_equal(tg_dataset_example_shape(tr), tg_shape3(1, 28, 28)));
    ck_assert_int_eq(tg_dataset_num_classes(tr), 10);
    int counts[10] = {0};
    for (int i = 0; i < 200; i++) counts[tg_dataset_y(te)[i]]++;
    for (int c = 0; c < 10; c++) ck_assert_int_eq(counts[c], 20); /* the split is balanced */
    /* Background pixels are 0 -> (0 - mean) / std; the brightest is 255 -> (1 - mean)/std. */
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < 784 * 10; i++) {
        lo = fminf(lo, tg_dataset_x(tr)[i]);
        hi = fmaxf(hi, tg_dataset_x(tr)[i]);
    }
    ck_assert_float_eq_tol(lo, -0.1307f / 0.3081f, 1e-6f);
    ck_assert_float_eq_tol(hi, (1.0f - 0.1307f) / 0.3081f, 1e-5f);
    tg_dataset_free(tr);
    tg_dataset_free(te);
    ck_assert_ptr_null(tg_mnist_load("/nonexistent", true));
    tg_expect_error("no data", TG_ERR_IO, "fetch_mnist", "train-images-idx3-ubyte");
}
END_TEST

START_TEST(dataset_bad_input) {
    float x[4] = {0};
    int32_t y[2] = {0, 3};
    ck_assert_ptr_null(tg_dataset_new(2, tg_shape1(2), x, y, 3));
    tg_expect_error("label out of range", TG_ERR_FORMAT, "tg_dataset_new", "label 1 is 3");
    ck_assert_ptr_null(tg_dataset_new(2, tg_shape1(2), NULL, y, 4));
    tg_expect_error("NULL x", TG_ERR_ARG, "tg_dataset_new", "'x'");
    ck_assert_ptr_null(tg_dataset_new(0, tg_shape1(2), x, y, 4));
    tg_expect_error("n = 0", TG_ERR_ARG, "tg_dataset_new", "'n'");
    ck_assert_ptr_null(tg_dataset_new(2, tg_shape4(1, 1, 1, 2), x, y, 4));
    tg_expect_error("4-D example", TG_ERR_SHAPE, "tg_dataset_new", "dims");
    tg_dataset *ds = tg_dataset_new(2, tg_shape1(2), x, y, 4);
    ck_assert_ptr_nonnull(ds);
    ck_assert_ptr_null(tg_loader_new(ds, 0, true, 1));
    tg_expect_error("batch 0", TG_ERR_ARG, "tg_loader_new", "'batch'");
    tg_loader *ld = tg_loader_new(ds, 1, true, 1);
    ck_assert_int_eq(tg_loader_seek(ld, (tg_loader_pos){.seed = 1, .cursor = 3}), TG_ERR_ARG);
    tg_expect_error("seek past the end", TG_ERR_ARG, "tg_loader_seek", "cursor 3");
    tg_loader_free(ld);
    tg_dataset_free(ds);
}
END_TEST

/* The loader's order for `epochs` epochs, as example indices (x holds the index). */
static void loader_order(tg_loader *ld, tg_ctx *ctx, int epochs, int64_t *order, int64_t n) {
    for (int e = 0; e < epochs; e++) {
        int64_t k = 0;
        tg_tensor *x;
        const int32_t *y;
        while (tg_loader_next(ld, ctx, &x, &y)) {
            for (int64_t i = 0; i < x->shape.dim[0]; i++) {
                order[e * n + k] = (int64_t)x->data[i * 2];
                ck_assert_int_eq(y[i], (int32_t)order[e * n + k] % 3);
                k++;
            }
            tg_step_end(ctx);
        }
        ck_assert_int_eq(k, n);
    }
}

START_TEST(loader_shuffles_and_resumes) {
    enum { N = 37 };
    float x[N * 2];
    int32_t y[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = (float)i;
        x[2 * i + 1] = -1;
        y[i] = i % 3;
    }
    tg_dataset *ds = tg_dataset_new(N, tg_shape1(2), x, y, 3);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_loader *a = tg_loader_new(ds, 8, true, 42), *b = tg_loader_new(ds, 8, true, 42);
    ck_assert_int_eq(tg_loader_batches(a), 5);
    int64_t oa[3 * N], ob[3 * N];
    loader_order(a, ctx, 3, oa, N);
    for (int e = 0; e < 3; e++) { /* each epoch a permutation */
        bool seen[N] = {false};
        for (int i = 0; i < N; i++) {
            ck_assert(!seen[oa[e * N + i]]);
            seen[oa[e * N + i]] = true;
        }
    }
    ck_assert(memcmp(oa, oa + N, N * sizeof *oa) != 0); /* reshuffled per epoch */
    loader_order(b, ctx, 3, ob, N);
    ck_assert(memcmp(oa, ob, sizeof oa) == 0); /* same seed, same order */
    /* Stop mid-epoch 1, save the position, continue in a fresh loader. */
    tg_loader *c = tg_loader_new(ds, 8, true, 42);
    int64_t oc[N];
    loader_order(c, ctx, 1, oc, N);
    tg_tensor *t;
    const int32_t *lab;
    ck_assert(tg_loader_next(c, ctx, &t, &lab) && tg_loader_next(c, ctx, &t, &lab));
    tg_step_end(ctx);
    tg_loader_pos pos = tg_loader_position(c);
    ck_assert_int_eq(pos.epoch, 1);
    ck_assert_int_eq(pos.cursor, 16);
    tg_loader *d = tg_loader_new(ds, 8, true, 7); /* another seed: seek adopts pos's */
    ck_assert_int_eq(tg_loader_seek(d, pos), TG_OK);
    ck_assert(tg_loader_next(d, ctx, &t, &lab));
    for (int i = 0; i < 8; i++) ck_assert_int_eq((int64_t)t->data[2 * i], oa[N + 16 + i]);
    tg_step_end(ctx);
    /* Without shuffling: the dataset's order, last batch short. */
    tg_loader *e = tg_loader_new(ds, 10, false, 0);
    int64_t oe[N];
    loader_order(e, ctx, 1, oe, N);
    for (int i = 0; i < N; i++) ck_assert_int_eq(oe[i], i);
    tg_loader_free(a);
    tg_loader_free(b);
    tg_loader_free(c);
    tg_loader_free(d);
    tg_loader_free(e);
    tg_loader_free(NULL);
    tg_ctx_free(ctx);
    tg_dataset_free(ds);
}
END_TEST

/* ---------------------------------------------------------------- models */

typedef struct model_case {
    tg_model *m;
    tg_shape input;
    int32_t target[4];
} model_case;

static tg_tensor *model_loss(tg_ctx *ctx, tg_tensor *const *inputs, void *user) {
    model_case *mc = user;
    (void)inputs;
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    float x[4 * 3 * 8 * 8];
    tg_rng_fill_uniform(&rng, x, tg_shape_numel(mc->input), -1, 1);
    tg_tensor *xt = tg_tensor_from(ctx, mc->input, x);
    return tg_cross_entropy(ctx, tg_model_forward(ctx, mc->m, xt, true), mc->target);
}

START_TEST(mlp_and_cnn_models) {
    tg_model *mlp = tg_mlp_new((tg_mlp_opts){0}, TG_DEVICE_CPU, 1);
    ck_assert_str_eq(tg_model_name(mlp), "mlp-784-128-10");
    ck_assert_int_eq(tg_params_numel(tg_model_params(mlp)), 784 * 128 + 128 + 128 * 10 + 10);
    ck_assert_ptr_nonnull(tg_params_find(tg_model_params(mlp), "fc2.bias"));
    tg_model *cnn = tg_cnn_new((tg_cnn_opts){0}, TG_DEVICE_CPU, 1);
    ck_assert_int_eq(tg_params_numel(tg_model_params(cnn)), 206922);
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape4(3, 1, 28, 28));
    tg_tensor *y1 = tg_model_forward(ctx, mlp, x, true), *y2 = tg_model_forward(ctx, cnn, x, true);
    ck_assert_msg(y1 && y2, "%s", tg_error_message());
    ck_assert(tg_shape_equal(y1->shape, tg_shape2(3, 10)));
    ck_assert(tg_shape_equal(y2->shape, tg_shape2(3, 10)));
    /* Bad input: wrong size for each model. */
    tg_tensor *bad = tg_tensor_zeros(ctx, tg_shape4(3, 1, 20, 28));
    ck_assert_ptr_null(tg_model_forward(ctx, mlp, bad, true));
    tg_expect_error("mlp input", TG_ERR_SHAPE, "mlp-784-128-10", "(3, 1, 20, 28)");
    ck_assert_ptr_null(tg_model_forward(ctx, cnn, bad, true));
    tg_expect_error("cnn input", TG_ERR_SHAPE, "cnn-", "(N, 1, 28, 28)");
    tg_step_end(ctx);
    ck_assert_ptr_null(tg_cnn_new((tg_cnn_opts){.height = 30}, TG_DEVICE_CPU, 1));
    tg_expect_error("cnn size", TG_ERR_ARG, "tg_cnn_new", "multiples of 4");
    ck_assert_ptr_null(tg_mlp_new((tg_mlp_opts){.hidden = {8, -1}}, TG_DEVICE_CPU, 1));
    tg_expect_error("mlp hidden", TG_ERR_ARG, "tg_mlp_new", "hidden[1]");
    /* Whole-model gradient checks along a random direction, on small variants. */
    model_case mc = {.input = tg_shape4(2, 1, 8, 8), .target = {1, 2}};
    mc.m = tg_cnn_new((tg_cnn_opts){.height = 8, .width = 8, .channels1 = 3, .channels2 = 4,
                                    .hidden = 6, .num_classes = 3},
                      TG_DEVICE_CPU, 5);
    double analytic, numeric;
    for (int k = 0; k < 2; k++) {
        if (k == 1) {
            tg_model_free(mc.m);
            mc.m = tg_mlp_new((tg_mlp_opts){.in_features = 64, .hidden = {7, 5},
                                            .num_classes = 3},
                              TG_DEVICE_CPU, 5);
        }
        ck_assert_int_eq(tg_gradcheck_direction(ctx, tg_model_params(mc.m), model_loss, &mc,
                                                1e-2, 9, &analytic, &numeric),
                         TG_OK);
        ck_assert_msg(fabs(analytic - numeric) <= 2e-3 + 2e-2 * fabs(numeric),
                      "%s: analytic %g numeric %g", tg_model_name(mc.m), analytic, numeric);
    }
    tg_model_free(mc.m);
    tg_model_free(mlp);
    tg_model_free(cnn);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- checkpoints */

/* A toy problem: 2-D points, class = quadrant parity. */
static tg_dataset *toy_dataset(int n) {
    float *x = malloc((size_t)n * 2 * sizeof *x);
    int32_t *y = malloc((size_t)n * sizeof *y);
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    tg_rng_fill_uniform(&rng, x, 2 * n, -1, 1);
    for (int i = 0; i < n; i++) y[i] = (x[2 * i] * x[2 * i + 1] > 0);
    tg_dataset *ds = tg_dataset_new(n, tg_shape1(2), x, y, 2);
    free(x);
    free(y);
    return ds;
}

typedef struct run {
    tg_model *m;
    tg_optim *opt;
    tg_loader *ld;
    tg_ctx *ctx;
    tg_train_state st;
} run;

static run run_new(const tg_dataset *ds, bool adam, uint64_t seed) {
    run r = {0};
    r.m = tg_mlp_new((tg_mlp_opts){.in_features = 2, .hidden = {16, 8}, .num_classes = 2},
                     TG_DEVICE_CPU, seed);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.01f;
    r.opt = adam ? tg_adam_new(tg_model_params(r.m), ao)
                 : tg_sgd_new(tg_model_params(r.m),
                              (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f, .nesterov = true});
    r.ld = tg_loader_new(ds, 16, true, seed + 100);
    r.ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_msg(r.m && r.opt && r.ld && r.ctx, "%s", tg_error_message());
    r.st.data = tg_loader_position(r.ld);
    tg_rng_seed(&r.st.rng, seed);
    return r;
}

static void run_free(run *r) {
    tg_ctx_free(r->ctx);
    tg_loader_free(r->ld);
    tg_optim_free(r->opt);
    tg_model_free(r->m);
}

/* Trains until r->st.epoch == epochs, as `tapegrad train` does. */
static void run_train(run *r, int epochs) {
    while (r->st.epoch < epochs) {
        tg_tensor *x;
        const int32_t *y;
        while (tg_loader_next(r->ld, r->ctx, &x, &y)) {
            tg_tensor *loss = tg_cross_entropy(r->ctx, tg_model_forward(r->ctx, r->m, x, true), y);
            tg_optim_zero_grad(r->opt);
            ck_assert_msg(tg_backward(r->ctx, loss) == TG_OK && tg_optim_step(r->opt) == TG_OK,
                          "%s", tg_error_message());
            tg_step_end(r->ctx);
            tg_rng_next(&r->st.rng); /* the loop's RNG moves, as augmentation would */
        }
        r->st.epoch++;
        r->st.step = tg_optim_steps(r->opt);
        r->st.data = tg_loader_position(r->ld);
    }
}

START_TEST(checkpoint_resume_is_bit_exact) {
    tg_test_tmpdir_make("tg_io_");
    tg_dataset *ds = toy_dataset(200);
    for (int adam = 0; adam < 2; adam++) {
        run straight = run_new(ds, adam, 1);
        run_train(&straight, 2);
        ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("straight.ckpt"), straight.m,
                                            straight.opt, &straight.st), TG_OK);
        run first = run_new(ds, adam, 1);
        run_train(&first, 1);
        ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("one.ckpt"), first.m, first.opt,
                                            &first.st), TG_OK);
        run resumed = run_new(ds, adam, 99); /* other init and shuffle seed: all restored */
        ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("one.ckpt"), resumed.m, resumed.opt,
                                            &resumed.st), TG_OK);
        ck_assert_int_eq(tg_loader_seek(resumed.ld, resumed.st.data), TG_OK);
        ck_assert_int_eq(resumed.st.epoch, 1);
        ck_assert_int_eq(tg_optim_steps(resumed.opt), 13);
        run_train(&resumed, 2);
        ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("resumed.ckpt"), resumed.m, resumed.opt,
                                            &resumed.st), TG_OK);
        size_t na, nb;
        uint8_t *a = tg_test_read_bytes(tg_test_tmp_path("straight.ckpt"), &na);
        uint8_t *b = tg_test_read_bytes(tg_test_tmp_path("resumed.ckpt"), &nb);
        ck_assert_uint_eq(na, nb);
        ck_assert_msg(memcmp(a, b, na) == 0, "%s: 2 epochs straight and 1 + resume differ",
                      adam ? "adam" : "sgd");
        /* Saving the same state again gives the same bytes (no timestamps). */
        ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("again.ckpt"), resumed.m, resumed.opt,
                                            &resumed.st), TG_OK);
        free(b);
        b = tg_test_read_bytes(tg_test_tmp_path("again.ckpt"), &nb);
        ck_assert(nb == na && memcmp(a, b, na) == 0);
        free(a);
        free(b);
        run_free(&straight);
        run_free(&first);
        run_free(&resumed);
    }
    tg_dataset_free(ds);
    tg_test_tmpdir_remove();
}
END_TEST

START_TEST(checkpoint_refuses_bad_files) {
    tg_test_tmpdir_make("tg_io_");
    tg_dataset *ds = toy_dataset(64);
    run r = run_new(ds, true, 1);
    run_train(&r, 1);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", tg_test_tmp_path("good.ckpt"));
    ck_assert_int_eq(tg_checkpoint_save(path, r.m, r.opt, &r.st), TG_OK);
    size_t n;
    uint8_t *good = tg_test_read_bytes(path, &n);
    uint8_t *bad = malloc(n + 8);
    run fresh = run_new(ds, true, 5);
    int64_t total;
    float *before = tg_test_params_snapshot(tg_model_params(fresh.m), &total);
    tg_train_state st_before = fresh.st;
    /* Truncated at every length class: empty, in the header, in the entries, in the data. */
    size_t cuts[] = {0, 7, 20, 40, 120, n / 2, n - 5, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ck_assert_int_eq(tg_checkpoint_parse(good, cuts[i], "cut.ckpt", fresh.m, fresh.opt,
                                             &fresh.st), TG_ERR_FORMAT);
        tg_expect_error("truncated", TG_ERR_FORMAT, "cut.ckpt", NULL);
    }
    /* One flipped bit anywhere is caught (by the checksum, or before it). */
    for (size_t off = 0; off < n; off += 7) {
        memcpy(bad, good, n);
        bad[off] ^= 0x10;
        ck_assert_int_eq(tg_checkpoint_parse(bad, n, "flip.ckpt", fresh.m, fresh.opt,
                                             &fresh.st), TG_ERR_FORMAT);
        tg_error_clear();
    }
    memcpy(bad, good, n);
    bad[n - 20] ^= 1;
    ck_assert_int_eq(tg_checkpoint_parse(bad, n, "c.ckpt", fresh.m, fresh.opt, NULL),
                     TG_ERR_FORMAT);
    tg_expect_error("corrupted", TG_ERR_FORMAT, "c.ckpt", "corrupted: checksum");
    memcpy(bad, good, n);
    bad[n] = 0;
    ck_assert_int_eq(tg_checkpoint_parse(bad, n + 1, "x.ckpt", fresh.m, NULL, NULL),
                     TG_ERR_FORMAT);
    tg_expect_error("extra bytes", TG_ERR_FORMAT, "x.ckpt", "extra bytes");
    memcpy(bad, good, n);
    bad[8] = 2; /* version 2, checksum fixed up: refused for the version */
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), bad, (uInt)(n - 4));
    for (int i = 0; i < 4; i++) bad[n - 4 + i] = (uint8_t)(crc >> (8 * i));
    ck_assert_int_eq(tg_checkpoint_parse(bad, n, "v2.ckpt", fresh.m, NULL, NULL),
                     TG_ERR_FORMAT);
    tg_expect_error("version", TG_ERR_FORMAT, "v2.ckpt", "format version 2");
    ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("missing.ckpt"), fresh.m, NULL, NULL),
                     TG_ERR_IO);
    tg_expect_error("missing", TG_ERR_IO, "missing.ckpt", NULL);
    /* Another model, another optimizer, no optimizer section. */
    tg_model *other = tg_mlp_new((tg_mlp_opts){.in_features = 2, .hidden = {16, 9},
                                               .num_classes = 2}, TG_DEVICE_CPU, 1);
    ck_assert_int_eq(tg_checkpoint_load(path, other, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("other model", TG_ERR_FORMAT, "mlp-2-16-8-2", "mlp-2-16-9-2");
    tg_model *sgd_m = tg_mlp_new((tg_mlp_opts){.in_features = 2, .hidden = {16, 8},
                                               .num_classes = 2}, TG_DEVICE_CPU, 1);
    tg_optim *sgd = tg_sgd_new(tg_model_params(sgd_m), (tg_sgd_opts){.lr = 0.1f});
    ck_assert_int_eq(tg_checkpoint_load(path, sgd_m, sgd, NULL), TG_ERR_FORMAT);
    tg_expect_error("other optimizer", TG_ERR_FORMAT, "adam optimizer state", "is sgd");
    ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("bare.ckpt"), r.m, NULL, NULL), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("bare.ckpt"), fresh.m, fresh.opt, NULL),
                     TG_ERR_FORMAT);
    tg_expect_error("no optimizer", TG_ERR_FORMAT, "no optimizer state", NULL);
    ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("bare.ckpt"), fresh.m, NULL, &fresh.st),
                     TG_ERR_FORMAT);
    tg_expect_error("no train state", TG_ERR_FORMAT, "no train state", NULL);
    /* Nothing of `fresh` changed through all of that. */
    expect_unchanged("refused loads", tg_model_params(fresh.m), before);
    ck_assert(memcmp(&fresh.st, &st_before, sizeof st_before) == 0);
    ck_assert_int_eq(tg_optim_steps(fresh.opt), 0);
    /* Bad arguments. */
    ck_assert_int_eq(tg_checkpoint_save(NULL, r.m, NULL, NULL), TG_ERR_ARG);
    tg_expect_error("NULL path", TG_ERR_ARG, "tg_checkpoint_save", "'path'");
    ck_assert_int_eq(tg_checkpoint_save(path, fresh.m, r.opt, NULL), TG_ERR_ARG);
    tg_expect_error("foreign optimizer", TG_ERR_ARG, "tg_checkpoint_save", "'opt'");
    ck_assert_int_eq(tg_checkpoint_save("/nonexistent/dir/x.ckpt", r.m, NULL, NULL), TG_ERR_IO);
    tg_expect_error("unwritable", TG_ERR_IO, "temporary file", NULL);
    /* The good file still loads, and then fully restores. */
    ck_assert_int_eq(tg_checkpoint_load(path, fresh.m, fresh.opt, &fresh.st), TG_OK);
    ck_assert_int_eq(tg_optim_steps(fresh.opt), tg_optim_steps(r.opt));
    ck_assert(memcmp(&fresh.st, &r.st, sizeof r.st) == 0);
    float *after = tg_test_params_snapshot(tg_model_params(fresh.m), &total);
    expect_unchanged("restored", tg_model_params(r.m), after);
    free(after);
    free(before);
    free(good);
    free(bad);
    tg_optim_free(sgd);
    tg_model_free(sgd_m);
    tg_model_free(other);
    run_free(&fresh);
    run_free(&r);
    tg_dataset_free(ds);
    tg_test_tmpdir_remove();
}
END_TEST

START_TEST(checkpoint_keeps_buffers) {
    /* forum50 with batchnorm has buffers (running statistics): they round-trip too. */
    tg_test_tmpdir_make("tg_io_");
    tg_forum50_opts o = {.channels = 4, .layers = 3, .bn = true, .relu = true};
    tg_model *a = tg_forum50_new(o, TG_DEVICE_CPU, 1), *b = tg_forum50_new(o, TG_DEVICE_CPU, 2);
    ck_assert_msg(a && b, "%s", tg_error_message());
    tg_params *pa = tg_model_params(a);
    ck_assert(tg_params_buffer_numel(pa) > 0);
    for (int i = 0; i < tg_params_count(pa); i++) {
        tg_tensor *t = tg_params_at(pa, i);
        for (int64_t k = 0; k < t->numel; k++) t->data[k] = (float)(i * 1000 + k) * 0.5f;
    }
    ck_assert_int_eq(tg_checkpoint_save(tg_test_tmp_path("bn.ckpt"), a, NULL, NULL), TG_OK);
    ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("bn.ckpt"), b, NULL, NULL), TG_OK);
    int64_t n;
    float *sa = tg_test_params_snapshot(pa, &n);
    expect_unchanged("buffers round trip", tg_model_params(b), sa);
    free(sa);
    tg_model_free(a);
    tg_model_free(b);
    tg_test_tmpdir_remove();
}
END_TEST

/* Child: fill every parameter with k = 1, 2, ... and save, forever; after the first
 * save, one byte on `ready`. */
static _Noreturn void save_forever(tg_model *m, const char *path, int ready) {
    tg_params *ps = tg_model_params(m);
    for (int k = 1;; k++) {
        for (int i = 0; i < tg_params_count(ps); i++) {
            tg_tensor *t = tg_params_at(ps, i);
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = (float)k;
        }
        if (tg_checkpoint_save(path, m, NULL, NULL) != TG_OK) _exit(3);
        if (k == 1 && write(ready, "s", 1) != 1) _exit(4);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

START_TEST(checkpoint_survives_kill_during_save) {
    tg_test_tmpdir_make("tg_io_");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", tg_test_tmp_path("kill.ckpt"));
    tg_model *m = tg_mlp_new((tg_mlp_opts){.hidden = {256}}, TG_DEVICE_CPU, 1); /* ~800 KB */
    tg_params *ps = tg_model_params(m);
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        for (int64_t j = 0; j < t->numel; j++) t->data[j] = 0;
    }
    double t0 = now_s();
    ck_assert_int_eq(tg_checkpoint_save(path, m, NULL, NULL), TG_OK);
    long save_us = (long)(1e6 * (now_s() - t0)) + 100; /* this build's time for one save */
    srand((unsigned)time(NULL));
    int loaded_new = 0;
    for (int round = 0; round < 40; round++) {
        int ready[2];
        ck_assert_int_eq(pipe(ready), 0);
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) save_forever(m, path, ready[1]);
        /* Odd rounds kill anywhere, even from the first save on; even rounds once one
         * save has completed. Then a random instant within the next few saves. */
        char c;
        if (round % 2 == 0) ck_assert_int_eq(read(ready[0], &c, 1), 1);
        long us = rand() % (3 * save_us);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        close(ready[0]);
        close(ready[1]);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "the saving child exited by itself (%d)", status);
        ck_assert_msg(tg_checkpoint_load(path, m, NULL, NULL) == TG_OK,
                      "round %d: the checkpoint does not load after SIGKILL: %s", round,
                      tg_error_message());
        /* The file is one whole save: every value is the same k. */
        float k0 = tg_params_at(ps, 0)->data[0];
        int64_t mixed = 0; /* counted first: one Check assertion per element is slow */
        for (int i = 0; i < tg_params_count(ps); i++) {
            tg_tensor *t = tg_params_at(ps, i);
            for (int64_t j = 0; j < t->numel; j++) mixed += t->data[j] != k0;
        }
        ck_assert_msg(mixed == 0, "round %d: %lld values differ from %g", round,
                      (long long)mixed, (double)k0);
        loaded_new += k0 > 0;
    }
    ck_assert_msg(loaded_new > 0, "no save ever completed before the kill");
    tg_model_free(m);
    tg_test_tmpdir_remove(); /* also the temporary files killed saves left behind */
}
END_TEST

/* ---------------------------------------------------------------- fuzz regression inputs */

START_TEST(fuzz_corpus_is_refused_cleanly) {
    const char *kinds[2] = {"idx", "checkpoint"};
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2},
                             TG_DEVICE_CPU, 7);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.01f;
    tg_optim *opt = tg_adam_new(tg_model_params(m), ao);
    int files = 0;
    for (int k = 0; k < 2; k++) {
        char dirpath[PATH_MAX], path[2 * PATH_MAX];
        snprintf(dirpath, sizeof dirpath, "%s/%s", CORPUS_DIR, kinds[k]);
        DIR *d = opendir(dirpath);
        ck_assert_msg(d != NULL, "no corpus at %s", dirpath);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", dirpath, e->d_name);
            files++;
            if (k == 0) {
                tg_idx *idx = tg_idx_load(path);
                ck_assert_msg(idx || tg_error() == TG_ERR_FORMAT, "%s: %s", path,
                              tg_error_message());
                tg_idx_free(idx);
            } else {
                tg_train_state st;
                tg_status s = tg_checkpoint_load(path, m, opt, &st);
                ck_assert_msg(s == TG_OK || s == TG_ERR_FORMAT, "%s: %s", path,
                              tg_error_message());
            }
            tg_error_clear();
        }
        closedir(d);
    }
    ck_assert_int_gt(files, 4);
    tg_optim_free(opt);
    tg_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- the tapegrad commands */

/* build/tests/test_io -> build/tools/tapegrad */
static void tapegrad_path(char *out, size_t size) {
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, size, "%s/../tools/tapegrad", self);
    ck_assert_msg(access(out, X_OK) == 0, "tapegrad not built at %s", out);
}

/* Runs `tapegrad ARGS` (a shell line) with output in tmp/out.txt; returns its exit code. */
static int tapegrad(const char *env, const char *args) {
    char exe[PATH_MAX], cmd[6 * PATH_MAX];
    tapegrad_path(exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "%s '%s' %s > '%s' 2>&1", env ? env : "", exe, args,
             tg_test_tmp_path("out.txt"));
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool output_has(const char *needle) {
    size_t n;
    uint8_t *b = tg_test_read_bytes(tg_test_tmp_path("out.txt"), &n);
    b[n] = '\0';
    bool has = strstr((char *)b, needle) != NULL;
    free(b);
    return has;
}

static bool have_gnuplot(void) { return system("command -v gnuplot > /dev/null 2>&1") == 0; }

START_TEST(commands_train_plot_tape) {
    tg_test_tmpdir_make("tg_io_");
    char args[3 * PATH_MAX];
    snprintf(args, sizeof args, "train mnist --model mlp --epochs 1 --data '%s' --log '%s' "
             "--checkpoint '%s' --json --threads 1", MINI_DIR, tg_test_tmp_path("run.csv"),
             tg_test_tmp_path("run.ckpt"));
    ck_assert_int_eq(tapegrad(NULL, args), 0);
    ck_assert(output_has("{\"epoch\": 1,") && output_has("\"test_acc\": "));
    snprintf(args, sizeof args, "train mnist --model mlp --epochs 2 --data '%s' --log '%s' "
             "--resume '%s' --checkpoint '%s' --threads 1", MINI_DIR, tg_test_tmp_path("run.csv"),
             tg_test_tmp_path("run.ckpt"), tg_test_tmp_path("run.ckpt"));
    ck_assert_int_eq(tapegrad(NULL, args), 0);
    ck_assert(output_has("resumed from") && output_has("epoch 2/2"));
    snprintf(args, sizeof args, "train mnist --model cnn --data '%s' --resume '%s'", MINI_DIR,
             tg_test_tmp_path("run.ckpt"));
    ck_assert_int_eq(tapegrad(NULL, args), 1);
    ck_assert(output_has("holds model 'mlp-784-128-10' but this model is 'cnn"));
    /* Through the command too: 2 epochs straight = 1 epoch + resume to 2, byte for byte. */
    snprintf(args, sizeof args, "train mnist --model mlp --epochs 2 --data '%s' --quiet "
             "--threads 1 --checkpoint '%s'", MINI_DIR, tg_test_tmp_path("straight.ckpt"));
    ck_assert_int_eq(tapegrad(NULL, args), 0);
    size_t na, nb;
    uint8_t *ca = tg_test_read_bytes(tg_test_tmp_path("straight.ckpt"), &na);
    uint8_t *cb = tg_test_read_bytes(tg_test_tmp_path("run.ckpt"), &nb);
    ck_assert_msg(na == nb && memcmp(ca, cb, na) == 0, "tapegrad train: resumed run differs");
    free(ca);
    free(cb);
    ck_assert_int_eq(tapegrad(NULL, "train mnist --data /nonexistent"), 1);
    ck_assert(output_has("fetch_mnist"));
    ck_assert_int_eq(tapegrad(NULL, "train mnist --batch 0"), 2);
    /* The plot: a real PNG of some size, or a clear message without gnuplot. */
    snprintf(args, sizeof args, "plot '%s' -o '%s'", tg_test_tmp_path("run.csv"), tg_test_tmp_path("run.png"));
    if (have_gnuplot()) {
        ck_assert_int_eq(tapegrad(NULL, args), 0);
        size_t n;
        uint8_t *png = tg_test_read_bytes(tg_test_tmp_path("run.png"), &n);
        ck_assert_msg(n > 10000, "run.png is only %zu bytes", n);
        ck_assert(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
        free(png);
    } else {
        fprintf(stderr, "commands_train_plot_tape: gnuplot not installed, PNG check "
                "skipped\n");
    }
    ck_assert_int_eq(tapegrad("TAPEGRAD_GNUPLOT=/nonexistent/gnuplot", args), 1);
    ck_assert(output_has("gnuplot not found") && output_has("gnuplot-nox"));
    /* The tape: table, Graphviz, explain. */
    snprintf(args, sizeof args, "tape cnn --explain --dot '%s'", tg_test_tmp_path("cnn.dot"));
    ck_assert_int_eq(tapegrad(NULL, args), 0);
    ck_assert(output_has("conv2d") && output_has("max_pool2d") && output_has("backward #"));
    size_t n;
    uint8_t *dot = tg_test_read_bytes(tg_test_tmp_path("cnn.dot"), &n);
    ck_assert(n > 200 && memcmp(dot, "digraph", 7) == 0);
    free(dot);
    const char *models[] = {"mlp", "forum50", "forum50-separable", "mobilenet"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "tape %s", models[i]);
        ck_assert_msg(tapegrad(NULL, args) == 0, "tape %s failed", models[i]);
        ck_assert(output_has("ops on the tape"));
    }
    ck_assert_int_eq(tapegrad(NULL, "tape resnet"), 2);
    ck_assert(output_has("unknown model 'resnet'"));
    tg_test_tmpdir_remove();
}
END_TEST

Suite *io_suite(void) {
    Suite *s = suite_create("io");
    TCase *tc = tg_test_case("idx");
    tcase_add_test(tc, idx_raw_and_gzip);
    tcase_add_test(tc, idx_rejects_bad_files);
    suite_add_tcase(s, tc);
    tc = tg_test_case("data");
    tcase_add_test(tc, mnist_mini_loads);
    tcase_add_test(tc, dataset_bad_input);
    tcase_add_test(tc, loader_shuffles_and_resumes);
    suite_add_tcase(s, tc);
    tc = tg_test_case("models");
    tcase_add_test(tc, mlp_and_cnn_models);
    suite_add_tcase(s, tc);
    tc = tg_test_case("checkpoint");
    tcase_add_test(tc, checkpoint_resume_is_bit_exact);
    tcase_add_test(tc, checkpoint_refuses_bad_files);
    tcase_add_test(tc, checkpoint_keeps_buffers);
    tcase_add_test(tc, checkpoint_survives_kill_during_save);
    tcase_add_test(tc, fuzz_corpus_is_refused_cleanly);
    suite_add_tcase(s, tc);
    tc = tg_test_case("commands");
    tcase_add_test(tc, commands_train_plot_tape);
    suite_add_tcase(s, tc);
    return s;
}
