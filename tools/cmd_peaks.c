/* tools/cmd_peaks.c: in progress (placeholder). */
#include "commands.h"

#include <stdio.h>

int cmd_peaks(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tapegrad peaks: in progress\n");
    return 1;
}
