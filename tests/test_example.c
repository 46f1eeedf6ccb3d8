/* tests/test_example.c: in progress (placeholder). */
#include "testutil.h"
Suite *example_suite(void) { return suite_create("example"); }
