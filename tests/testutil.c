/*
 * tests/testutil.c — see testutil.h.
 */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TG_FIXTURE_DIR
#error "TG_FIXTURE_DIR must point at tests/golden"
#endif

TCase *tg_test_case(const char *name) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 600);
    return tc;
}

static void expect_close(const char *what, const float *got, const void *want, bool wd,
                         int64_t n, double atol, double rtol) {
    int64_t bad = -1, nbad = 0;
    double max_err = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = wd ? ((const double *)want)[i] : ((const float *)want)[i];
        double err = fabs((double)got[i] - w);
        /* Equal (infinities too), or a NaN where PyTorch gave NaN. */
        if ((double)got[i] == w || (isnan(w) && isnan(got[i]))) continue;
        if (!(err <= atol + rtol * fabs(w))) {   /* any other NaN fails */
            if (bad < 0) bad = i;
            nbad++;
        }
        if (err > max_err || isnan(err)) max_err = err;
    }
    if (bad >= 0) {
        double w = wd ? ((const double *)want)[bad] : ((const float *)want)[bad];
        ck_abort_msg("%s: %lld of %lld elements differ; first at %lld: got %.8g want %.8g "
                     "(max abs err %.3g, atol %.1g rtol %.1g)", what, (long long)nbad,
                     (long long)n, (long long)bad, got[bad], w, max_err, atol, rtol);
    }
}

void tg_expect_close(const char *what, const float *got, const double *want, int64_t n,
                     double atol, double rtol) {
    expect_close(what, got, want, true, n, atol, rtol);
}

void tg_expect_close_f(const char *what, const float *got, const float *want, int64_t n,
                       double atol, double rtol) {
    expect_close(what, got, want, false, n, atol, rtol);
}

void tg_expect_gradcheck_tol(const char *what, tg_ctx *ctx, tg_graph_fn fn, void *user,
                             tg_tensor *const *inputs, int ninputs, double eps, double atol,
                             double rtol, int64_t max_per_input) {
    tg_gradcheck_result r;
    tg_status st = tg_gradcheck(ctx, fn, user, inputs, ninputs, eps, atol, rtol,
                                max_per_input, 1234, &r);
    ck_assert_msg(st == TG_OK, "%s: gradcheck could not run: %s", what, tg_error_message());
    ck_assert_msg(r.checked > 0, "%s: gradcheck compared no element", what);
    ck_assert_msg(r.failed == 0, "%s: %lld of %lld gradient elements off (max abs %.3g, max "
                  "rel %.3g); worst: %s", what, (long long)r.failed, (long long)r.checked,
                  r.max_abs_err, r.max_rel_err, r.worst);
}

void tg_expect_gradcheck(const char *what, tg_ctx *ctx, tg_graph_fn fn, void *user,
                         tg_tensor *const *inputs, int ninputs) {
    tg_expect_gradcheck_tol(what, ctx, fn, user, inputs, ninputs, 1e-2, 2e-3, 1e-2, 0);
}

void tg_expect_ok(const char *what) {
    ck_assert_msg(tg_error() == TG_OK, "%s: unexpected error: %s", what, tg_error_message());
}

void tg_expect_error(const char *what, tg_status status, const char *needle1,
                     const char *needle2) {
    const char *msg = tg_error_message();
    ck_assert_msg(tg_error() == status, "%s: expected status '%s', got '%s' (%s)", what,
                  tg_status_name(status), tg_status_name(tg_error()), msg);
    ck_assert_msg(!needle1 || strstr(msg, needle1), "%s: message lacks '%s': %s", what,
                  needle1, msg);
    ck_assert_msg(!needle2 || strstr(msg, needle2), "%s: message lacks '%s': %s", what,
                  needle2, msg);
    tg_error_clear();
}

/* ---------------------------------------------------------------- fixtures */

typedef struct fixture_entry {
    char *name;
    tg_shape shape;
    int64_t numel;
    double *data;
} fixture_entry;

struct tg_fixture {
    fixture_entry *entries;
    uint32_t count;
};

static bool read_exact(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

tg_fixture *tg_fixture_load(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", TG_FIXTURE_DIR, file);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "fixture %s missing (regenerate with tests/golden/make_fixtures.py)",
                  path);
    char magic[4];
    uint32_t version = 0, count = 0;
    ck_assert_msg(read_exact(f, magic, 4) && memcmp(magic, "TGFX", 4) == 0 &&
                      read_exact(f, &version, 4) && version == 1 && read_exact(f, &count, 4),
                  "fixture %s: bad header", path);
    tg_fixture *fx = calloc(1, sizeof *fx);
    fx->entries = calloc(count ? count : 1, sizeof *fx->entries);
    fx->count = count;
    for (uint32_t e = 0; e < count; e++) {
        fixture_entry *en = &fx->entries[e];
        uint32_t len = 0, ndim = 0;
        ck_assert_msg(read_exact(f, &len, 4) && len < 256, "fixture %s: bad name", path);
        en->name = calloc(len + 1, 1);
        ck_assert_msg(read_exact(f, en->name, len) && read_exact(f, &ndim, 4) &&
                          ndim <= TG_MAX_DIMS, "fixture %s: bad entry %u", path, e);
        en->shape.ndim = (int)ndim;
        for (uint32_t d = 0; d < ndim; d++) {
            int64_t v;
            ck_assert_msg(read_exact(f, &v, 8), "fixture %s: truncated", path);
            en->shape.dim[d] = v;
        }
        en->numel = tg_shape_numel(en->shape);
        en->data = malloc((size_t)(en->numel ? en->numel : 1) * sizeof(double));
        ck_assert_msg(read_exact(f, en->data, (size_t)en->numel * sizeof(double)),
                      "fixture %s: truncated data of '%s'", path, en->name);
    }
    fclose(f);
    return fx;
}

void tg_fixture_free(tg_fixture *fx) {
    if (!fx) return;
    for (uint32_t e = 0; e < fx->count; e++) {
        free(fx->entries[e].name);
        free(fx->entries[e].data);
    }
    free(fx->entries);
    free(fx);
}

static const fixture_entry *find(const tg_fixture *fx, const char *name) {
    for (uint32_t e = 0; e < fx->count; e++)
        if (strcmp(fx->entries[e].name, name) == 0) return &fx->entries[e];
    return NULL;
}

bool tg_fixture_has(const tg_fixture *fx, const char *name) { return find(fx, name) != NULL; }

const double *tg_fixture_get(const tg_fixture *fx, const char *name, tg_shape *shape) {
    const fixture_entry *en = find(fx, name);
    ck_assert_msg(en != NULL, "fixture has no array '%s'", name);
    if (shape) *shape = en->shape;
    return en->data;
}

tg_tensor *tg_fixture_tensor(tg_ctx *ctx, const tg_fixture *fx, const char *name,
                             bool requires_grad) {
    tg_shape shape;
    const double *d = tg_fixture_get(fx, name, &shape);
    int64_t n = tg_shape_numel(shape);
    float *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    for (int64_t i = 0; i < n; i++) tmp[i] = (float)d[i];
    tg_tensor *t = tg_tensor_from(ctx, shape, tmp);
    free(tmp);
    ck_assert_msg(t != NULL, "fixture '%s': %s", name, tg_error_message());
    tg_tensor_set_requires_grad(t, requires_grad);
    return t;
}

void tg_fixture_copy_into(const tg_fixture *fx, const char *name, tg_tensor *t) {
    tg_shape shape;
    const double *d = tg_fixture_get(fx, name, &shape);
    char s1[80], s2[80];
    ck_assert_msg(tg_shape_equal(shape, t->shape), "fixture '%s' has shape %s, tensor %s",
                  name, tg_shape_str(shape, s1, sizeof s1), tg_shape_str(t->shape, s2, sizeof s2));
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)d[i];
}

/* ---------------------------------------------------------------- files for tests */

static char test_tmpdir[64];

void tg_test_tmpdir_make(const char *prefix) {
    snprintf(test_tmpdir, sizeof test_tmpdir, "/tmp/%sXXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(test_tmpdir));
}

const char *tg_test_tmpdir(void) { return test_tmpdir; }

void tg_test_tmpdir_remove(void) {
    DIR *d = opendir(test_tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", test_tmpdir, e->d_name);
        if (unlink(path) != 0) rmdir(path);
    }
    closedir(d);
    rmdir(test_tmpdir);
}

const char *tg_test_tmp_path(const char *name) {
    static char path[4][PATH_MAX];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", test_tmpdir, name);
    return p;
}

uint8_t *tg_test_read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

void tg_test_write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

float *tg_test_params_snapshot(const tg_params *ps, int64_t *n) {
    *n = tg_params_numel(ps) + tg_params_buffer_numel(ps);
    float *v = malloc((size_t)(*n ? *n : 1) * sizeof *v), *p = v;
    ck_assert_ptr_nonnull(v);
    for (int i = 0; i < tg_params_count(ps); i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        memcpy(p, t->data, (size_t)t->numel * sizeof *p);
        p += t->numel;
    }
    return v;
}

tg_ctx *tg_test_ctx_gemm(tg_device device) {
    tg_ctx *ctx = tg_ctx_new(device);
    if (ctx) ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM), TG_OK);
    return ctx;
}
