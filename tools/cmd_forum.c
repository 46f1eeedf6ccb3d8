/* tools/cmd_forum.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_forum(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad forum: in progress\n");
    return 1;
}
