/* tests/test_gradcheck.c: in progress (placeholder). */
#include "testutil.h"
Suite *gradcheck_suite(void) { return suite_create("gradcheck"); }
