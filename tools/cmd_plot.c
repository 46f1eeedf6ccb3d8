/* tools/cmd_plot.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_plot(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad plot: in progress\n");
    return 1;
}
