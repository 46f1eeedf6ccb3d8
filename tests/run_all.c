/*
 * tests/run_all.c — every CPU suite in one runner. Its last line is Check's own summary
 * ("100%: Checks: N, Failures: 0, Errors: 0"), which .ci/run prints last.
 */
#include <check.h>
#include <stdlib.h>

#define SUITES(X)                                                                         \
    X(core) X(tape) X(gradcheck) X(activation) X(conv2d) X(batchnorm) X(elementwise)     \
    X(shape) X(linear) X(pool) X(loss) X(sgd) X(adam) X(example) X(bad_input) X(models) X(io) \
    X(winograd) X(user) X(matmul) X(layout) X(reduce) X(safetensors) X(softmax)       \
    X(layernorm) X(dropout) X(embedding) X(nll) X(clip) X(schedule) X(limits)         \
    X(fastdiv) X(unary) X(gpt) X(conv_auto) X(fresh_grads) X(gemm) X(parallel_range) \
    X(same_bits)

#define DECLARE(name) Suite *name##_suite(void);
SUITES(DECLARE)

int main(void) {
    SRunner *sr = srunner_create(NULL);
#define ADD(name) srunner_add_suite(sr, name##_suite());
    SUITES(ADD)
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
