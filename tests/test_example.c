/*
 * tests/test_example.c — the worked example at the top of include/tapegrad.h is
 * extracted verbatim at build time (tests/extract_example.awk), compiled, and run here:
 * it must exit 0 and its printed loss must fall.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TG_HEADER_EXAMPLE
#error "TG_HEADER_EXAMPLE must name the built example program"
#endif

START_TEST(header_example_loss_falls) {
    FILE *p = popen(TG_HEADER_EXAMPLE, "r");
    ck_assert_msg(p != NULL, "cannot run %s", TG_HEADER_EXAMPLE);
    char line[256];
    double losses[64];
    int n = 0, step;
    while (fgets(line, sizeof line, p)) {
        double loss;
        if (sscanf(line, "step %d loss %lf", &step, &loss) == 2 && n < 64) losses[n++] = loss;
    }
    int status = pclose(p);
    ck_assert_msg(status == 0, "the example exited with status %d", status);
    ck_assert_msg(n >= 3, "the example printed %d loss lines", n);
    ck_assert_msg(losses[n - 1] < 0.1 * losses[0], "loss did not fall: first %g last %g",
                  losses[0], losses[n - 1]);
    for (int i = 0; i < n; i++) ck_assert(losses[i] == losses[i]); /* no NaN */
}
END_TEST

Suite *example_suite(void) {
    Suite *s = suite_create("example");
    TCase *tc = tg_test_case("example");
    tcase_add_test(tc, header_example_loss_falls);
    suite_add_tcase(s, tc);
    return s;
}
