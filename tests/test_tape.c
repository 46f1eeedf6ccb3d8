/* tests/test_tape.c: in progress (placeholder). */
#include "testutil.h"
Suite *tape_suite(void) { return suite_create("tape"); }
