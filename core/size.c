/*
 * core/size.c — the one checked size arithmetic (DESIGN §13).
 *
 * THE RULE. Every element count, byte count, output geometry and file payload size in
 * tapegrad is computed with these helpers: tg_mul_i64 / tg_add_i64 (int64_t),
 * tg_mul_size / tg_add_size (size_t), tg_shape_check (a whole shape -> numel and bytes)
 * and tg_size_bytes (count x element size). Each reports overflow instead of wrapping, and
 * tg_shape_check / tg_size_bytes record a TG_ERR_SHAPE / TG_ERR_NOMEM message naming the
 * op, the argument and the shape. No tensor holds more than TG_MAX_NUMEL elements
 * (2^40: 4 TiB of float32), so any product of a valid tensor's dims, times 16 bytes,
 * still fits an int64_t. `grep -n "tg_mul_\|tg_add_\|tg_shape_check\|tg_size_bytes"`
 * lists every place a size is formed.
 *
 * Memory is also estimated before it is touched: tg_mem_available() reads the kernel's
 * estimate of memory that can be allocated without swapping (MemAvailable), and
 * tg_mem_check() refuses a request above it with a message naming what asked for it.
 * The CPU allocator calls tg_mem_check for every block of 64 MiB or more, so a huge
 * arena block or parameter store is refused before it is faulted in.
 */
#include "core.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool tg_mul_i64(int64_t a, int64_t b, int64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return !__builtin_mul_overflow(a, b, out);
#else
    if (a != 0 && b != 0) {
        if ((a > 0) == (b > 0) ? (a > 0 ? a > INT64_MAX / b : a < INT64_MAX / b)
                               : (a > 0 ? b < INT64_MIN / a : a < INT64_MIN / b))
            return false;
    }
    *out = a * b;
    return true;
#endif
}

bool tg_add_i64(int64_t a, int64_t b, int64_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return !__builtin_add_overflow(a, b, out);
#else
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) return false;
    *out = a + b;
    return true;
#endif
}

bool tg_mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return false;
    *out = a * b;
    return true;
}

bool tg_add_size(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return false;
    *out = a + b;
    return true;
}

int64_t tg_shape_numel(tg_shape shape) {
    if (shape.ndim < 0 || shape.ndim > TG_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.dim[i] < 0 || !tg_mul_i64(n, shape.dim[i], &n) || n > TG_MAX_NUMEL)
            return -1;
    }
    return n;
}

bool tg_shape_check(const char *op, const char *what, tg_shape shape, int64_t *numel,
                    size_t *bytes) {
    char s[96];
    if (shape.ndim < 0 || shape.ndim > TG_MAX_DIMS) {
        tg_fail(TG_ERR_SHAPE, "%s: %s has %d dims; tensors have 0 to %d", op, what, shape.ndim,
                TG_MAX_DIMS);
        return false;
    }
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.dim[i] <= 0) {
            tg_fail(TG_ERR_SHAPE, "%s: %s shape %s has dim %d = %lld; dims must be >= 1", op,
                    what, tg_shape_str(shape, s, sizeof s), i, (long long)shape.dim[i]);
            return false;
        }
        if (!tg_mul_i64(n, shape.dim[i], &n) || n > TG_MAX_NUMEL) {
            tg_fail(TG_ERR_SHAPE, "%s: %s shape %s has more than TG_MAX_NUMEL = 2^40 elements "
                    "(the product of its dims overflows the size limit); hint: check the "
                    "sizes, padding and kernel options that produced it", op, what,
                    tg_shape_str(shape, s, sizeof s));
            return false;
        }
    }
    /* n <= 2^40, so n * sizeof(float) fits an int64_t; on a 32-bit size_t it may not. */
    size_t b;
    if ((uint64_t)n > SIZE_MAX / sizeof(float)) {
        tg_fail(TG_ERR_SHAPE, "%s: %s shape %s needs %lld bytes, more than this machine can "
                "address", op, what, tg_shape_str(shape, s, sizeof s),
                (long long)(n * (int64_t)sizeof(float)));
        return false;
    }
    b = (size_t)n * sizeof(float);
    if (numel) *numel = n;
    if (bytes) *bytes = b;
    return true;
}

bool tg_size_bytes(const char *op, const char *what, int64_t count, size_t elem_size,
                   size_t *bytes) {
    if (count < 0 || (uint64_t)count > SIZE_MAX || !tg_mul_size((size_t)count, elem_size, bytes)) {
        tg_fail(TG_ERR_NOMEM, "%s: %s: %lld elements of %zu bytes do not fit in memory "
                "(size overflow)", op, what, (long long)count, elem_size);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- available memory */

size_t tg_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        unsigned long long kib = 0;
        bool found = false;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
                found = true;
                break;
            }
        }
        fclose(f);
        if (found) return kib > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kib * 1024;
    }
#ifdef _SC_AVPHYS_PAGES
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        size_t b;
        return tg_mul_size((size_t)pages, (size_t)page, &b) ? b : SIZE_MAX;
    }
#endif
    return SIZE_MAX; /* unknown: do not refuse */
}

tg_status tg_mem_check(const char *what, size_t bytes) {
    size_t avail = tg_mem_available();
    if (bytes <= avail) return TG_OK;
    return tg_fail(TG_ERR_NOMEM, "%s needs %.2f GiB but only %.2f GiB of memory is available "
                   "(MemAvailable); hint: use a smaller size or batch", what,
                   (double)bytes / (1 << 30), (double)avail / (1 << 30));
}
