/* tests/test_core.c: in progress (placeholder). */
#include "testutil.h"
Suite *core_suite(void) { return suite_create("core"); }
