/*
 * core/error.c — the error model (DESIGN §8). One thread-local record: the first error
 * since the last clear. Library code never exits; bad input returns a status/NULL.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local tg_status current_status = TG_OK;
static _Thread_local char current_message[1024];

tg_status tg_error(void) { return current_status; }

const char *tg_error_message(void) { return current_message; }

void tg_error_clear(void) {
    current_status = TG_OK;
    current_message[0] = '\0';
}

const char *tg_status_name(tg_status status) {
    switch (status) {
    case TG_OK: return "ok";
    case TG_ERR_ARG: return "invalid argument";
    case TG_ERR_SHAPE: return "shape mismatch";
    case TG_ERR_STATE: return "invalid state";
    case TG_ERR_NOMEM: return "out of memory";
    case TG_ERR_IO: return "i/o error";
    case TG_ERR_FORMAT: return "bad file format";
    case TG_ERR_DEVICE: return "device error";
    case TG_ERR_UNSUPPORTED: return "unsupported";
    case TG_ERR_NONFINITE: return "non-finite value";
    }
    return "unknown status";
}

tg_status tg_fail(tg_status status, const char *fmt, ...) {
    if (current_status != TG_OK) return status; /* keep the first message */
    current_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(current_message, sizeof current_message, fmt, ap);
    va_end(ap);
    return status;
}

bool tg_check_not_null(const char *op, const char *arg, const void *ptr) {
    if (ptr) return false;
    /* A NULL tensor usually means an earlier op failed: its message stays. */
    tg_fail(TG_ERR_ARG, "%s: argument '%s' is NULL (an earlier op failed, or it was never "
                        "created)", op, arg);
    return true;
}

void tg_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "tapegrad: internal error at %s:%d: %s\n", file, line, cond);
    abort();
}
