/* tests/test_pool.c: in progress (placeholder). */
#include "testutil.h"
Suite *pool_suite(void) { return suite_create("pool"); }
