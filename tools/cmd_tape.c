/* tools/cmd_tape.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_tape(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad tape: in progress\n");
    return 1;
}
