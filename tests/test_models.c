/* tests/test_models.c: in progress (placeholder). */
#include "testutil.h"
Suite *models_suite(void) { return suite_create("models"); }
