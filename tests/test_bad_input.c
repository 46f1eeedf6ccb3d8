/* tests/test_bad_input.c: in progress (placeholder). */
#include "testutil.h"
Suite *bad_input_suite(void) { return suite_create("bad_input"); }
