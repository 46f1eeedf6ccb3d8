/*
 * tests/main_one.c — runs one suite (TG_SUITE names its constructor). Each source file's
 * suite is its own meson test; tests/run_all.c gathers them all.
 */
#include <check.h>
#include <stdlib.h>

Suite *TG_SUITE(void);

int main(void) {
    SRunner *sr = srunner_create(TG_SUITE());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
