/* tools/cmd_train.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad train: in progress\n");
    return 1;
}
