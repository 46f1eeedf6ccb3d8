/* tests/test_adam.c: in progress (placeholder). */
#include "testutil.h"
Suite *adam_suite(void) { return suite_create("adam"); }
