/* tests/test_sgd.c: in progress (placeholder). */
#include "testutil.h"
Suite *sgd_suite(void) { return suite_create("sgd"); }
