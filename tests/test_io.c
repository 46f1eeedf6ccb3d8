/* tests/test_io.c: in progress (placeholder). */
#include "testutil.h"
Suite *io_suite(void) { return suite_create("io"); }
