/* tests/test_linear.c: in progress (placeholder). */
#include "testutil.h"
Suite *linear_suite(void) { return suite_create("linear"); }
