/*
 * tests/test_safetensors.c — io/safetensors.c: the byte-identical round trip, files that
 * PyTorch wrote (every dtype tapegrad reads, loaded with exact values; a PyTorch-
 * initialised CNN giving PyTorch's first loss), a tapegrad export that PyTorch ran (the
 * same logits within 1e-5, the same held-out accuracy), strict and partial loading with
 * prefix strip and name map, one bad file per validation rule (each refused with
 * TG_ERR_FORMAT naming file and tensor, the store untouched), the fuzzer's regression
 * inputs, and `tapegrad export` / `tapegrad train --init-from` end to end.
 *
 * The fixtures come from tests/golden/gen_safetensors.py and pytorch_parity.py.
 */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SOURCE_DIR TG_FIXTURE_DIR "/../.."
#define MINI_DIR SOURCE_DIR "/examples/data/mnist-mini"
#define CORPUS_DIR SOURCE_DIR "/tests/corpus/safetensors"

/* ---------------------------------------------------------------- helpers */

/* A safetensors file from a header text and `data` bytes of data (value i & 0xff). */
static void write_st(const char *path, const char *header, size_t data) {
    size_t h = strlen(header), n = 8 + h + data;
    uint8_t *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data; i++) b[8 + h + i] = (uint8_t)i;
    tg_test_write_bytes(path, b, n);
    free(b);
}

static bool same_bits(float a, float b) {
    if (isnan(a) && isnan(b)) return true;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* All values of a store, concatenated (a snapshot to compare). */
/* The small store most tests load into: w (2, 3), b (3), a buffer r (2). */
static tg_params *small_store(void) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(2, 3));
    tg_tensor *b = tg_params_add(ps, "b", tg_shape1(3));
    tg_tensor *r = tg_params_add_buffer(ps, "r", tg_shape1(2), 0.0f);
    ck_assert(w && b && r);
    for (int i = 0; i < 6; i++) w->data[i] = 0.5f * (float)i - 1.0f;
    for (int i = 0; i < 3; i++) b->data[i] = (float)i + 0.25f;
    r->data[0] = 7.0f;
    r->data[1] = -7.0f;
    return ps;
}

/* Logits of a model on n examples of a dataset (eval mode, no tape). */
static float *logits_of(tg_model *m, const tg_dataset *ds, int64_t n) {
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    tg_set_grad_enabled(ctx, false);
    tg_shape ex = tg_dataset_example_shape(ds);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape4(n, ex.dim[0], ex.dim[1], ex.dim[2]),
                                  tg_dataset_x(ds));
    tg_tensor *out = tg_model_forward(ctx, m, x, false);
    tg_expect_ok("forward");
    float *host = malloc((size_t)out->numel * sizeof *host);
    tg_tensor_to_host(out, host, false);
    tg_ctx_free(ctx);
    return host;
}

/* ---------------------------------------------------------------- round trip */

START_TEST(round_trip_is_byte_identical) {
    tg_test_tmpdir_make("tg_st_");
    tg_model *m = tg_mobilenet_new((tg_mobilenet_opts){.width = 0.25f, .num_classes = 7},
                                   TG_DEVICE_CPU, 3);
    tg_params *ps = tg_model_params(m);
    /* Buffers with values other than their defaults, so they visibly travel. */
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        if (!t->requires_grad)
            for (int64_t k = 0; k < t->numel; k++) t->data[k] = 0.5f + (float)k / 64;
    }
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("a.safetensors"), ps, tg_model_name(m)),
                     TG_OK);
    tg_model *m2 = tg_mobilenet_new((tg_mobilenet_opts){.width = 0.25f, .num_classes = 7},
                                    TG_DEVICE_CPU, 99);
    tg_params *ps2 = tg_model_params(m2);
    tg_safetensors_report rep;
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmp_path("a.safetensors"), ps2, NULL, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, tg_params_count(ps));
    ck_assert_int_eq(rep.missing + rep.unexpected + rep.ignored, 0);
    ck_assert_str_eq(rep.model, tg_model_name(m));
    int64_t n1, n2;
    float *v1 = tg_test_params_snapshot(ps, &n1), *v2 = tg_test_params_snapshot(ps2, &n2);
    ck_assert_int_eq(n1, n2);
    ck_assert(memcmp(v1, v2, (size_t)n1 * sizeof *v1) == 0);
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("b.safetensors"), ps2, tg_model_name(m2)),
                     TG_OK);
    size_t na, nb;
    uint8_t *a = tg_test_read_bytes(tg_test_tmp_path("a.safetensors"), &na);
    uint8_t *b = tg_test_read_bytes(tg_test_tmp_path("b.safetensors"), &nb);
    ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "the second save differs from the first");
    /* The layout: header length a multiple of 8, JSON, metadata, data right after. */
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | a[i];
    ck_assert_int_eq(h % 8, 0);
    ck_assert_int_eq(na, 8 + h + 4 * (uint64_t)n1);
    a[8 + h - 1] = '\0';
    ck_assert_ptr_nonnull(strstr((char *)a + 8, "\"__metadata__\":{\"format\":\"pt\","
                                                "\"format_version\":\"1\",\"model\":\""));
    ck_assert_ptr_nonnull(strstr((char *)a + 8, "\"conv1_bn.running_var\":{\"dtype\":\"F32\""));
    free(a);
    free(b);
    free(v1);
    free(v2);
    /* No metadata model: fine; a store entry named __metadata__: refused. */
    tg_params *odd = tg_params_new(TG_DEVICE_CPU);
    tg_params_add(odd, "__metadata__", tg_shape1(1));
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("c.safetensors"), odd, NULL), TG_ERR_ARG);
    tg_expect_error("reserved name", TG_ERR_ARG, "__metadata__", "reserves");
    tg_params_free(odd);
    tg_params *empty = tg_params_new(TG_DEVICE_CPU);
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("c.safetensors"), empty, NULL), TG_OK);
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmp_path("c.safetensors"), empty, NULL, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 0);
    ck_assert_str_eq(rep.model, "");
    tg_params_free(empty);
    /* Saving is refused while an error is pending, and into a missing directory. */
    ck_assert_ptr_null(tg_params_add(NULL, "x", tg_shape1(1))); /* an earlier failure */
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("d.safetensors"), ps, NULL), TG_ERR_ARG);
    ck_assert_int_eq(access(tg_test_tmp_path("d.safetensors"), F_OK), -1);
    tg_error_clear();
    ck_assert_int_eq(tg_safetensors_save("/nonexistent/dir/w.safetensors", ps, NULL),
                     TG_ERR_IO);
    tg_expect_error("bad dir", TG_ERR_IO, "tg_safetensors_save", "/nonexistent/dir");
    tg_model_free(m);
    tg_model_free(m2);
    tg_test_tmpdir_remove();
}
END_TEST

/* ---------------------------------------------------------------- files PyTorch wrote */

START_TEST(pytorch_dtypes_load_exactly) {
    tg_fixture *fx = tg_fixture_load("st_dtypes.bin");
    const char *names[5] = {"a_f32", "b_f16", "c_bf16", "d_f64", "e_scalar"};
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    for (int i = 0; i < 5; i++) {
        tg_shape shape;
        tg_fixture_get(fx, names[i], &shape);
        ck_assert_ptr_nonnull(tg_params_add(ps, names[i], shape));
    }
    const char *path = TG_FIXTURE_DIR "/st_dtypes.safetensors";
    /* Under "model." in the file: strict loading without the strip names the fix. */
    ck_assert_int_eq(tg_safetensors_load(path, ps, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("no strip", TG_ERR_FORMAT, "lacks 5", NULL);
    tg_safetensors_opts o = {.strip_prefix = "model."};
    tg_params *one = tg_params_new(TG_DEVICE_CPU);
    tg_params_add(one, "a_f32", tg_shape2(3, 4));
    tg_safetensors_opts part = {.partial = true};
    ck_assert_int_eq(tg_safetensors_load(path, one, &part, NULL), TG_OK); /* nothing matched */
    ck_assert_int_eq(tg_safetensors_load(path, one, &(tg_safetensors_opts){0}, NULL),
                     TG_ERR_FORMAT);
    tg_params_free(one);
    tg_error_clear();
    tg_safetensors_report rep;
    ck_assert_int_eq(tg_safetensors_load(path, ps, &o, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 5);
    ck_assert_int_eq(rep.ignored, 1); /* model.bn.num_batches_tracked, an I64 */
    ck_assert_int_eq(rep.missing + rep.unexpected, 0);
    int64_t checked = 0;
    for (int i = 0; i < 5; i++) {
        tg_shape shape;
        const double *want = tg_fixture_get(fx, names[i], &shape);
        const tg_tensor *t = tg_params_find(ps, names[i]);
        for (int64_t k = 0; k < t->numel; k++, checked++)
            ck_assert_msg(same_bits(t->data[k], (float)want[k]), "%s[%lld] = %a, PyTorch %a",
                          names[i], (long long)k, (double)t->data[k], want[k]);
    }
    ck_assert_int_eq(checked, 12 + 24 + 12 + 16 + 1);
    /* Name map after the strip: the file's a_f32 into a store entry named otherwise. */
    tg_params *mapped = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *renamed = tg_params_add(mapped, "layer.weight", tg_shape2(3, 4));
    const char *map[] = {"a_f32", "layer.weight", NULL};
    o = (tg_safetensors_opts){.partial = true, .strip_prefix = "model.", .name_map = map};
    ck_assert_int_eq(tg_safetensors_load(path, mapped, &o, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 1);
    ck_assert_int_eq(rep.unexpected, 4);
    ck_assert_str_eq(rep.unexpected_names, "model.b_f16, model.c_bf16, model.d_f64, "
                                           "model.e_scalar");
    ck_assert(same_bits(renamed->data[2], 1.0f) && same_bits(renamed->data[1], -0.0f));
    const char *odd_map[] = {"a_f32", NULL};
    o.name_map = odd_map;
    ck_assert_int_eq(tg_safetensors_load(path, mapped, &o, NULL), TG_ERR_ARG);
    tg_expect_error("odd map", TG_ERR_ARG, "name_map", "a_f32");
    tg_params_free(mapped);
    tg_params_free(ps);
    tg_fixture_free(fx);
}
END_TEST

START_TEST(pytorch_initialised_cnn_gives_pytorchs_first_loss) {
    tg_fixture *fx = tg_fixture_load("st_torch_cnn.bin");
    tg_model *m = tg_cnn_new((tg_cnn_opts){.channels1 = 4, .channels2 = 8, .hidden = 16},
                             TG_DEVICE_CPU, 1);
    tg_safetensors_report rep;
    ck_assert_int_eq(tg_safetensors_load(TG_FIXTURE_DIR "/st_torch_cnn.safetensors",
                                         tg_model_params(m), NULL, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 8);
    tg_dataset *test = tg_mnist_load(MINI_DIR, false), *train = tg_mnist_load(MINI_DIR, true);
    ck_assert(test && train);
    float *logits = logits_of(m, test, 16);
    tg_shape shape;
    const double *want = tg_fixture_get(fx, "logits", &shape);
    tg_expect_close("logits of the PyTorch-initialised CNN", logits, want, 16 * 10, 1e-5, 0);
    free(logits);
    /* The first loss: cross entropy over the first 64 training images. */
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape4(64, 1, 28, 28), tg_dataset_x(train));
    tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, x, true),
                                       tg_dataset_y(train));
    tg_expect_ok("first loss");
    tg_expect_close("first loss", loss->data, tg_fixture_get(fx, "loss", &shape), 1, 1e-6,
                    1e-6);
    tg_ctx_free(ctx);
    tg_dataset_free(test);
    tg_dataset_free(train);
    tg_model_free(m);
    tg_fixture_free(fx);
}
END_TEST

/* The CNN trained and exported by `tapegrad train mnist` + `tapegrad export`, run by
 * PyTorch (tests/golden/pytorch_parity.py): the same logits, the same accuracy. */
START_TEST(tapegrad_export_runs_the_same_in_pytorch) {
    tg_test_tmpdir_make("tg_st_");
    const char *path = TG_FIXTURE_DIR "/st_cnn_trained.safetensors";
    tg_fixture *fx = tg_fixture_load("st_cnn_trained.bin");
    tg_model *m = tg_cnn_new((tg_cnn_opts){0}, TG_DEVICE_CPU, 1);
    tg_safetensors_report rep;
    ck_assert_int_eq(tg_safetensors_load(path, tg_model_params(m), NULL, &rep), TG_OK);
    ck_assert_str_eq(rep.model, tg_model_name(m));
    tg_dataset *test = tg_mnist_load(MINI_DIR, false);
    ck_assert_ptr_nonnull(test);
    int64_t n = tg_dataset_size(test);
    float *logits = logits_of(m, test, n);
    tg_shape shape;
    const double *want = tg_fixture_get(fx, "logits", &shape);
    ck_assert_int_eq(shape.dim[0], n);
    tg_expect_close("held-out logits, tapegrad vs PyTorch", logits, want, n * 10, 1e-5, 0);
    double worst = 0;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int c = 0; c < 10; c++) {
            worst = fmax(worst, fabs(logits[i * 10 + c] - want[i * 10 + c]));
            if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
        }
        correct += best == tg_dataset_y(test)[i];
    }
    double acc = (double)correct / (double)n;
    ck_assert_msg(acc == tg_fixture_get(fx, "accuracy", &shape)[0],
                  "held-out accuracy %g, PyTorch %g", acc,
                  tg_fixture_get(fx, "accuracy", &shape)[0]);
    fprintf(stderr, "tapegrad_export_runs_the_same_in_pytorch: %lld held-out images, "
            "accuracy %.4f (PyTorch the same), max |logit difference| %.2e\n", (long long)n,
            acc, worst);
    /* Saved again from tapegrad: the very bytes PyTorch read. */
    ck_assert_int_eq(tg_safetensors_save(tg_test_tmp_path("again.safetensors"), tg_model_params(m),
                                         tg_model_name(m)), TG_OK);
    size_t na, nb;
    uint8_t *a = tg_test_read_bytes(path, &na), *b = tg_test_read_bytes(tg_test_tmp_path("again.safetensors"), &nb);
    ck_assert_msg(na == nb && memcmp(a, b, na) == 0, "re-export differs from the fixture");
    free(a);
    free(b);
    free(logits);
    tg_dataset_free(test);
    tg_model_free(m);
    tg_fixture_free(fx);
    tg_test_tmpdir_remove();
}
END_TEST

/* ---------------------------------------------------------------- strict, partial */

START_TEST(strict_and_partial_loading) {
    tg_test_tmpdir_make("tg_st_");
    const char *path = tg_test_tmp_path("p.safetensors");
    /* w and an extra tensor x; no b, no r; a num_batches_tracked counter. */
    write_st(path, "{\"model.w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                   "\"x\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[24,26]},"
                   "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],"
                   "\"data_offsets\":[26,34]}}", 34);
    tg_params *ps = small_store();
    int64_t n;
    float *before = tg_test_params_snapshot(ps, &n);
    tg_safetensors_opts o = {.strip_prefix = "model."};
    ck_assert_int_eq(tg_safetensors_load(path, ps, &o, NULL), TG_ERR_FORMAT);
    tg_expect_error("strict", TG_ERR_FORMAT, "lacks 2 of the store's 3 tensors: b, r",
                    "opts.partial");
    float *after = tg_test_params_snapshot(ps, &n);
    ck_assert(memcmp(before, after, (size_t)n * sizeof *after) == 0);
    free(after);
    o.partial = true;
    tg_safetensors_report rep;
    ck_assert_int_eq(tg_safetensors_load(path, ps, &o, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 1);
    ck_assert_int_eq(rep.missing, 2);
    ck_assert_int_eq(rep.unexpected, 1);
    ck_assert_int_eq(rep.ignored, 1);
    ck_assert_str_eq(rep.missing_names, "b, r");
    ck_assert_str_eq(rep.unexpected_names, "x");
    const tg_tensor *w = tg_params_find(ps, "w"), *b = tg_params_find(ps, "b");
    float w0;
    uint32_t bits = 0x03020100u; /* the data bytes are 0, 1, 2, ... */
    memcpy(&w0, &bits, sizeof w0);
    ck_assert(same_bits(w->data[0], w0));
    ck_assert(b->data[2] == 2.25f); /* untouched */
    /* Extra tensors only: strict refuses, with the prefix hint when it would help. */
    write_st(path, "{\"net.w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                   "\"net.b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},"
                   "\"net.r\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[36,44]}}", 44);
    ck_assert_int_eq(tg_safetensors_load(path, ps, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("prefix hint", TG_ERR_FORMAT, "lacks 3", NULL);
    o = (tg_safetensors_opts){.strip_prefix = "net."};
    ck_assert_int_eq(tg_safetensors_load(path, ps, &o, &rep), TG_OK);
    ck_assert_int_eq(rep.loaded, 3);
    free(before);
    tg_params_free(ps);
    tg_test_tmpdir_remove();
}
END_TEST

/* ---------------------------------------------------------------- bad files */

typedef struct bad_case {
    const char *why;
    const char *header; /* NULL: raw bytes below */
    size_t data;
    const char *needle1, *needle2;
    const char *strip;
} bad_case;

#define T(name, rest) "\"" name "\":{" rest "}"
#define W "\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]"
#define B(b, e) "\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[" #b "," #e "]"
#define R(b, e) "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" #b "," #e "]"

static const bad_case bad_cases[] = {
    {"not JSON at the start", "[1,2]", 0, "does not start with '{'", NULL, NULL},
    {"invalid JSON", "{\"w\":{\"dtype\":\"F32\",", 0, "not valid JSON", NULL, NULL},
    {"bytes after the JSON", "{}  x", 0, "after its JSON object", NULL, NULL},
    {"tensor not an object", "{\"w\":[1,2]}", 0, "tensor 'w' is not a JSON object", NULL,
     NULL},
    {"no dtype", "{" T("w", "\"shape\":[2,3],\"data_offsets\":[0,24]") "}", 24, "tensor 'w'",
     "needs \"dtype\"", NULL},
    {"unknown dtype", "{" T("w", "\"dtype\":\"F33\",\"shape\":[2,3],\"data_offsets\":[0,24]")
     "}", 24, "tensor 'w'", "unknown dtype \"F33\"", NULL},
    {"two dtype fields", "{" T("w", "\"dtype\":\"F32\"," W) "}", 24, "tensor 'w'",
     "two \"dtype\" fields", NULL},
    {"negative dim", "{" T("w", "\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]")
     "}", 24, "tensor 'w'", "not an integer", NULL},
    {"fractional dim", "{" T("w", "\"dtype\":\"F32\",\"shape\":[2.5,3],\"data_offsets\":[0,24]")
     "}", 24, "tensor 'w'", "not an integer", NULL},
    {"too many dims", "{" T("w", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
     "1,1],\"data_offsets\":[0,4]") "}", 4, "tensor 'w'", "17 dims", NULL},
    {"shape product overflows", "{" T("w", "\"dtype\":\"F32\",\"shape\":[4294967296,"
     "4294967296,4],\"data_offsets\":[0,4]") "}", 4, "tensor 'w'", "product of its shape",
     NULL},
    {"byte size overflows", "{" T("w", "\"dtype\":\"F64\",\"shape\":[4294967296,536870912],"
     "\"data_offsets\":[0,4]") "}", 4, "tensor 'w'", "overflow a 64-bit size", NULL},
    {"offsets do not match the size", "{" T("w", "\"dtype\":\"F32\",\"shape\":[2,3],"
     "\"data_offsets\":[0,20]") "}", 20, "tensor 'w'", "do not hold the 24 bytes", NULL},
    {"offsets reversed", "{" T("w", "\"dtype\":\"F32\",\"shape\":[2,3],"
     "\"data_offsets\":[24,0]") "}", 24, "tensor 'w'", "[24, 0]", NULL},
    {"one offset", "{" T("w", "\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24]") "}",
     24, "tensor 'w'", "two integers", NULL},
    {"offsets past the data", "{" T("w", W) "}", 20, "tensor 'w'", "run past the data", NULL},
    {"overlap", "{" T("w", W) "," T("b", B(20, 32)) "," T("r", R(32, 40)) "}", 40,
     "tensor 'b'", "overlaps tensor 'w'", NULL},
    {"hole", "{" T("w", W) "," T("b", B(28, 40)) "," T("r", R(40, 48)) "}", 48, "tensor 'b'",
     "bytes 24..28 unindexed", NULL},
    {"hole at the start", "{" T("w", "\"dtype\":\"F32\",\"shape\":[2,3],"
     "\"data_offsets\":[4,28]") "}", 28, "tensor 'w'", "bytes 0..4 unindexed", NULL},
    {"unindexed tail", "{" T("w", W) "," T("b", B(24, 36)) "," T("r", R(36, 44)) "}", 50,
     "50 bytes", "index 44", NULL},
    {"duplicate name", "{" T("w", W) "," T("b", B(24, 36)) "," T("w", R(36, 44)) "}", 44,
     "tensor 'w' appears twice", NULL, NULL},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice", NULL,
     NULL},
    {"metadata not strings", "{\"__metadata__\":{\"epoch\":3}}", 0, "'epoch' is not a string",
     NULL, NULL},
    {"integer dtype into a parameter", "{" T("w", "\"dtype\":\"I32\",\"shape\":[2,3],"
     "\"data_offsets\":[0,24]") "," T("b", B(24, 36)) "," T("r", R(36, 44)) "}", 44,
     "tensor 'w'", "dtype I32", NULL},
    {"shape against the store", "{" T("w", "\"dtype\":\"F32\",\"shape\":[3,2],"
     "\"data_offsets\":[0,24]") "," T("b", B(24, 36)) "," T("r", R(36, 44)) "}", 44,
     "tensor 'w' has shape (3, 2)", "'w' is (2, 3)", NULL},
    {"two names for one entry", "{" T("w", W) "," T("m.w", "\"dtype\":\"F32\",\"shape\":[2,3],"
     "\"data_offsets\":[24,48]") "," T("b", B(48, 60)) "," T("r", R(60, 68)) "}", 68,
     "'w' and 'm.w' both load into 'w'", NULL, "m."},
};

START_TEST(bad_files_are_refused_and_change_nothing) {
    tg_test_tmpdir_make("tg_st_");
    tg_params *ps = small_store();
    int64_t n;
    float *before = tg_test_params_snapshot(ps, &n);
    const char *path = tg_test_tmp_path("bad.safetensors");
    /* A valid file first: the cases below differ from it in one rule each. */
    write_st(path, "{" T("w", W) "," T("b", B(24, 36)) "," T("r", R(36, 44)) "}", 44);
    tg_params *ok = small_store();
    ck_assert_int_eq(tg_safetensors_load(path, ok, NULL, NULL), TG_OK);
    tg_params_free(ok);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        write_st(path, c->header, c->data);
        tg_safetensors_opts o = {.strip_prefix = c->strip};
        tg_safetensors_report rep = {.loaded = -5};
        tg_status st = tg_safetensors_load(path, ps, &o, &rep);
        ck_assert_msg(st == TG_ERR_FORMAT, "%s: status %s (%s)", c->why, tg_status_name(st),
                      tg_error_message());
        const char *msg = tg_error_message();
        ck_assert_msg(strstr(msg, "tg_safetensors_load") && strstr(msg, path) &&
                      strstr(msg, c->needle1) && (!c->needle2 || strstr(msg, c->needle2)),
                      "%s: message '%s'", c->why, msg);
        ck_assert_int_eq(rep.loaded, -5); /* the report is written on success only */
        /* The same bytes from memory give the same verdict. */
        tg_error_clear();
        size_t size;
        uint8_t *bytes = tg_test_read_bytes(path, &size);
        ck_assert_int_eq(tg_safetensors_parse(bytes, size, "mem", ps, &o, NULL),
                         TG_ERR_FORMAT);
        ck_assert_msg(strstr(tg_error_message(), c->needle1), "%s (memory): '%s'", c->why,
                      tg_error_message());
        free(bytes);
        tg_error_clear();
        float *after = tg_test_params_snapshot(ps, &n);
        ck_assert_msg(memcmp(before, after, (size_t)n * sizeof *after) == 0,
                      "%s: the store changed", c->why);
        free(after);
    }
    /* Header length against the file size, and files too short for one. */
    uint8_t raw[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    tg_test_write_bytes(path, raw, 10);
    ck_assert_int_eq(tg_safetensors_load(path, ps, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("header length", TG_ERR_FORMAT, "-byte header but the file is shorter",
                    path);
    raw[0] = 3;
    memset(raw + 1, 0, 7);
    tg_test_write_bytes(path, raw, 10);
    ck_assert_int_eq(tg_safetensors_load(path, ps, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("header length", TG_ERR_FORMAT, "3-byte header", "shorter");
    tg_test_write_bytes(path, raw, 5);
    ck_assert_int_eq(tg_safetensors_load(path, ps, NULL, NULL), TG_ERR_FORMAT);
    tg_expect_error("short", TG_ERR_FORMAT, "5 bytes, too short", NULL);
    /* Not a regular file: a directory, a FIFO (which must not hang the open), nothing. */
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmpdir(), ps, NULL, NULL), TG_ERR_IO);
    tg_expect_error("directory", TG_ERR_IO, "not a regular file", NULL);
    ck_assert_int_eq(mkfifo(tg_test_tmp_path("fifo"), 0600), 0);
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmp_path("fifo"), ps, NULL, NULL), TG_ERR_IO);
    tg_expect_error("fifo", TG_ERR_IO, "not a regular file", "fifo");
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmp_path("none"), ps, NULL, NULL), TG_ERR_IO);
    tg_expect_error("missing", TG_ERR_IO, "cannot open", NULL);
    ck_assert_int_eq(tg_safetensors_load(path, NULL, NULL, NULL), TG_ERR_ARG);
    tg_expect_error("no store", TG_ERR_ARG, "'ps'", NULL);
    float *after = tg_test_params_snapshot(ps, &n);
    ck_assert(memcmp(before, after, (size_t)n * sizeof *after) == 0);
    free(after);
    free(before);
    tg_params_free(ps);
    tg_test_tmpdir_remove();
}
END_TEST

/* ---------------------------------------------------------------- fuzz regression inputs */

START_TEST(fuzz_corpus_is_handled) {
    tg_params *ps = small_store();
    DIR *d = opendir(CORPUS_DIR);
    ck_assert_msg(d != NULL, "no corpus at %s", CORPUS_DIR);
    struct dirent *e;
    int files = 0, accepted = 0;
    char path[2 * PATH_MAX];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        for (int partial = 0; partial < 2; partial++) {
            tg_safetensors_opts o = {.partial = partial, .strip_prefix = "model."};
            tg_status st = tg_safetensors_load(path, ps, &o, NULL);
            ck_assert_msg(st == TG_OK || st == TG_ERR_FORMAT, "%s: %s", path,
                          tg_error_message());
            accepted += st == TG_OK;
            tg_error_clear();
        }
        files++;
    }
    closedir(d);
    ck_assert_int_gt(files, 4);
    ck_assert_int_gt(accepted, 0);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- the commands */

static void tapegrad_path(char *out, size_t size) {
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(out, size, "%s/../tools/tapegrad", self);
    ck_assert_msg(access(out, X_OK) == 0, "tapegrad not built at %s", out);
}

static int tapegrad(const char *args) {
    char exe[PATH_MAX], cmd[6 * PATH_MAX];
    tapegrad_path(exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", exe, args, tg_test_tmp_path("out.txt"));
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool output_has(const char *needle) {
    size_t n;
    uint8_t *b = tg_test_read_bytes(tg_test_tmp_path("out.txt"), &n);
    b[n] = '\0';
    bool has = strstr((char *)b, needle) != NULL;
    if (!has) fprintf(stderr, "output lacks '%s':\n%s\n", needle, (char *)b);
    free(b);
    return has;
}

START_TEST(commands_export_and_init_from) {
    tg_test_tmpdir_make("tg_st_");
    char args[4 * PATH_MAX];
    snprintf(args, sizeof args, "train mnist --model mlp --epochs 1 --data '%s' --quiet "
             "--threads 1 --checkpoint '%s'", MINI_DIR, tg_test_tmp_path("mlp.ckpt"));
    ck_assert_int_eq(tapegrad(args), 0);
    snprintf(args, sizeof args, "export '%s' -o '%s'", tg_test_tmp_path("mlp.ckpt"),
             tg_test_tmp_path("mlp.safetensors"));
    ck_assert_int_eq(tapegrad(args), 0);
    ck_assert(output_has("model mlp-784-128-10, 4 tensors, 101770 parameters"));
    /* The export holds exactly the checkpoint's values. */
    tg_model *a = tg_mlp_new((tg_mlp_opts){0}, TG_DEVICE_CPU, 5);
    tg_model *b = tg_mlp_new((tg_mlp_opts){0}, TG_DEVICE_CPU, 6);
    ck_assert_int_eq(tg_checkpoint_load(tg_test_tmp_path("mlp.ckpt"), a, NULL, NULL), TG_OK);
    ck_assert_int_eq(tg_safetensors_load(tg_test_tmp_path("mlp.safetensors"), tg_model_params(b),
                                         NULL, NULL), TG_OK);
    int64_t na, nb;
    float *va = tg_test_params_snapshot(tg_model_params(a), &na), *vb = tg_test_params_snapshot(tg_model_params(b), &nb);
    ck_assert(na == nb && memcmp(va, vb, (size_t)na * sizeof *va) == 0);
    free(va);
    free(vb);
    tg_model_free(a);
    tg_model_free(b);
    /* Training from it. */
    snprintf(args, sizeof args, "train mnist --model mlp --epochs 1 --data '%s' --threads 1 "
             "--init-from '%s'", MINI_DIR, tg_test_tmp_path("mlp.safetensors"));
    ck_assert_int_eq(tapegrad(args), 0);
    ck_assert(output_has("initialised from") && output_has("saved from model mlp-784-128-10"));
    /* The wrong model's weights: refused with the shapes named. */
    snprintf(args, sizeof args, "train mnist --model cnn --epochs 1 --data '%s' --init-from "
             "'%s'", MINI_DIR, tg_test_tmp_path("mlp.safetensors"));
    ck_assert_int_eq(tapegrad(args), 1);
    ck_assert(output_has("tg_safetensors_load") && output_has("mlp.safetensors"));
    snprintf(args, sizeof args, "train mnist --init-from '%s' --resume '%s'",
             tg_test_tmp_path("mlp.safetensors"), tg_test_tmp_path("mlp.ckpt"));
    ck_assert_int_eq(tapegrad(args), 2);
    ck_assert(output_has("give one"));
    /* Bad arguments and bad inputs. */
    ck_assert_int_eq(tapegrad("export"), 2);
    ck_assert_int_eq(tapegrad("export a b -o c"), 2);
    snprintf(args, sizeof args, "export '%s'", tg_test_tmp_path("mlp.ckpt"));
    ck_assert_int_eq(tapegrad(args), 2);
    snprintf(args, sizeof args, "export '%s' -o '%s'", tg_test_tmp_path("mlp.safetensors"),
             tg_test_tmp_path("x.safetensors"));
    ck_assert_int_eq(tapegrad(args), 1);
    ck_assert(output_has("not a tapegrad checkpoint"));
    ck_assert_int_eq(tapegrad("export --help"), 0);
    ck_assert(output_has("usage: tapegrad export"));
    tg_test_tmpdir_remove();
}
END_TEST

Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tg_test_case("format");
    tcase_add_test(tc, round_trip_is_byte_identical);
    tcase_add_test(tc, strict_and_partial_loading);
    tcase_add_test(tc, bad_files_are_refused_and_change_nothing);
    tcase_add_test(tc, fuzz_corpus_is_handled);
    suite_add_tcase(s, tc);
    tc = tg_test_case("pytorch");
    tcase_add_test(tc, pytorch_dtypes_load_exactly);
    tcase_add_test(tc, pytorch_initialised_cnn_gives_pytorchs_first_loss);
    tcase_add_test(tc, tapegrad_export_runs_the_same_in_pytorch);
    suite_add_tcase(s, tc);
    tc = tg_test_case("commands");
    tcase_add_test(tc, commands_export_and_init_from);
    suite_add_tcase(s, tc);
    return s;
}
