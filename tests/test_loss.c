/* tests/test_loss.c: in progress (placeholder). */
#include "testutil.h"
Suite *loss_suite(void) { return suite_create("loss"); }
