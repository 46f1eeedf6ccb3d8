/* tests/test_batchnorm.c: in progress (placeholder). */
#include "testutil.h"
Suite *batchnorm_suite(void) { return suite_create("batchnorm"); }
