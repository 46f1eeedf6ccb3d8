/* tools/cmd_mobilenet.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_mobilenet(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad mobilenet: in progress\n");
    return 1;
}
