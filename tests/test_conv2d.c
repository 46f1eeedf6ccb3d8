/* tests/test_conv2d.c: in progress (placeholder). */
#include "testutil.h"
Suite *conv2d_suite(void) { return suite_create("conv2d"); }
