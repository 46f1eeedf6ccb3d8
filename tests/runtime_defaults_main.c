/*
 * tests/runtime_defaults_main.c — the program tests/runtime_defaults.sh starts: it calls
 * tg_runtime_defaults first thing, as a user's main() should, and prints one line per
 * start of its image ("start", buffered, so a re-execution that lost or doubled buffered
 * output shows) and then what is in force:
 *   ret=<0|1> policy=<OMP_WAIT_POLICY> spin=<GOMP_SPINCOUNT> marker=<TAPEGRAD_OMP_DEFAULTS>
 *   better=<tg_blas_core_better() or -> blas=<tg_blas_core()>
 * ("-" for an unset variable). libgomp's own view comes from OMP_DISPLAY_ENV on stderr.
 */
#include <tapegrad.h>

#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "-";
}

int main(int argc, char **argv) {
    (void)argc;
    printf("start\n"); /* stays in the stdio buffer when stdout is a pipe */
    bool ok = tg_runtime_defaults(argv);
    const char *better = tg_blas_core_better();
    printf("ret=%d policy=%s spin=%s marker=%s better=%s blas=%s\n", ok ? 1 : 0,
           env("OMP_WAIT_POLICY"), env("GOMP_SPINCOUNT"), env("TAPEGRAD_OMP_DEFAULTS"),
           better ? better : "-", tg_blas_core());
    return 0;
}
