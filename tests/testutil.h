/*
 * tests/testutil.h — helpers shared by the Check suites: test cases with a generous
 * timeout (sanitizer and valgrind runs are slow), closeness assertions that name the
 * first mismatch, golden-fixture loading, and a gradcheck assertion.
 */
#ifndef TG_TESTUTIL_H
#define TG_TESTUTIL_H

#include <check.h>
#include <tapegrad.h>

/* A TCase with a 600 s timeout (Check's default 4 s is too short under sanitizers). */
TCase *tg_test_case(const char *name);

/* Asserts |got[i] - want[i]| <= atol + rtol * |want[i]| for all i (equal infinities pass;
 * a NaN passes only where want is NaN); the failure message names `what`, the first bad
 * index, both values and the max error. */
void tg_expect_close(const char *what, const float *got, const double *want, int64_t n,
                     double atol, double rtol);
void tg_expect_close_f(const char *what, const float *got, const float *want, int64_t n,
                       double atol, double rtol);

/* Asserts tg_gradcheck passes on every input that requires grad (eps 1e-2 by default
 * through tg_expect_gradcheck; _tol sets all). Prints the worst element on failure. */
void tg_expect_gradcheck(const char *what, tg_ctx *ctx, tg_graph_fn fn, void *user,
                         tg_tensor *const *inputs, int ninputs);
void tg_expect_gradcheck_tol(const char *what, tg_ctx *ctx, tg_graph_fn fn, void *user,
                             tg_tensor *const *inputs, int ninputs, double eps, double atol,
                             double rtol, int64_t max_per_input);

/* Asserts no error is pending; prints it if one is. */
void tg_expect_ok(const char *what);
/* Asserts the pending error has `status` and its message contains every non-NULL needle;
 * then clears it. */
void tg_expect_error(const char *what, tg_status status, const char *needle1,
                     const char *needle2);

/* ---------------------------------------------------------------- golden fixtures
 * Files written by tests/golden/make_fixtures.py (PyTorch, double precision) in the
 * format of tests/golden/fixture.py: named float64 arrays with shapes. */
typedef struct tg_fixture tg_fixture;
/* Loads TG_FIXTURE_DIR/<file>; fails the test when missing or malformed. */
tg_fixture *tg_fixture_load(const char *file);
void tg_fixture_free(tg_fixture *fx);
/* The named array (fails the test when absent); *shape receives its shape. */
const double *tg_fixture_get(const tg_fixture *fx, const char *name, tg_shape *shape);
bool tg_fixture_has(const tg_fixture *fx, const char *name);
/* The named array as floats in a new step tensor (requires_grad as asked). */
tg_tensor *tg_fixture_tensor(tg_ctx *ctx, const tg_fixture *fx, const char *name,
                             bool requires_grad);
/* Copies the named array into an existing tensor (a parameter, say); shapes must match. */
void tg_fixture_copy_into(const tg_fixture *fx, const char *name, tg_tensor *t);

/* ---------------------------------------------------------------- files for tests
 * One scratch directory at a time: tg_test_tmpdir_make("tg_io_") makes /tmp/tg_io_XXXXXX,
 * tg_test_tmp_path(name) names a file in it (the last 4 results stay valid),
 * tg_test_tmpdir() is its path, tg_test_tmpdir_remove() deletes it and what it holds. */
void tg_test_tmpdir_make(const char *prefix);
const char *tg_test_tmpdir(void);
const char *tg_test_tmp_path(const char *name);
void tg_test_tmpdir_remove(void);
/* Whole files (fail the test on error); read_bytes returns malloc'ed bytes. */
uint8_t *tg_test_read_bytes(const char *path, size_t *n);
void tg_test_write_bytes(const char *path, const void *bytes, size_t n);
/* Every parameter's and buffer's values of a store, in store order (malloc'ed). */
float *tg_test_params_snapshot(const tg_params *ps, int64_t *n);

/* ---------------------------------------------------------------- contexts
 * A new context on `device` pinned to TG_CONV_ALGO_GEMM (NULL when tg_ctx_new fails, the
 * error pending). A new context's default, AUTO, picks im2col + SGEMM or Winograd per conv
 * geometry by a timing; checks against PyTorch fixtures, gradient checks at GEMM-level
 * tolerances and bit-for-bit comparisons between contexts use this one, so that no timing
 * decides what they compute. */
tg_ctx *tg_test_ctx_gemm(tg_device device);

#endif
