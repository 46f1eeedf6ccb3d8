/*
 * core/shape.c — shapes: construction, numel, equality, printing.
 */
#include "core.h"

#include <stdio.h>
#include <string.h>

tg_shape tg_shape0(void) { return (tg_shape){.ndim = 0}; }
tg_shape tg_shape1(int64_t d0) { return (tg_shape){.ndim = 1, .dim = {d0}}; }
tg_shape tg_shape2(int64_t d0, int64_t d1) { return (tg_shape){.ndim = 2, .dim = {d0, d1}}; }
tg_shape tg_shape3(int64_t d0, int64_t d1, int64_t d2) {
    return (tg_shape){.ndim = 3, .dim = {d0, d1, d2}};
}
tg_shape tg_shape4(int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    return (tg_shape){.ndim = 4, .dim = {d0, d1, d2, d3}};
}

bool tg_shape_equal(tg_shape a, tg_shape b) {
    if (a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.dim[i] != b.dim[i]) return false;
    return true;
}

char *tg_shape_str(tg_shape shape, char *buf, size_t size) {
    if (!buf || size == 0) return buf;
    size_t pos = 0;
    int n = snprintf(buf, size, "(");
    pos = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < shape.ndim && pos < size; i++) {
        n = snprintf(buf + pos, size - pos, i ? ", %lld" : "%lld", (long long)shape.dim[i]);
        if (n > 0) pos += (size_t)n;
    }
    if (pos < size) snprintf(buf + pos, size - pos, ")");
    return buf;
}
