/*
 * io/idx.c — the IDX format of the MNIST files (yann.lecun.com/exdb/mnist):
 *
 *   offset  size         field
 *   0       2            zero bytes
 *   2       1            element type: 0x08 unsigned byte (the only one accepted here;
 *                        0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64 are refused)
 *   3       1            number of dims, 1..4
 *   4       4 * ndim     each dim, big-endian u32, > 0
 *   ...     prod(dims)   the elements, row-major
 *
 * The whole file must be exactly that long: shorter is truncation, longer is trailing
 * garbage, both refused. A gzip file (magic 1f 8b) is inflated first, with the output
 * capped so a corrupted or malicious stream cannot exhaust memory.
 */
#include "io.h"

#include <stdlib.h>
#include <string.h>

/* The largest file we accept: the official MNIST train images are 47 MB. */
#define IDX_MAX_BYTES ((size_t)1 << 31)

static const char *idx_type_name(uint8_t type) {
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return NULL;
    }
}

static tg_idx *idx_parse_raw(const uint8_t *b, size_t size, const char *what) {
    if (size < 4) {
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' is %zu bytes, shorter than an IDX header "
                "(4 bytes + 4 per dim); hint: truncated download?", what, size);
        return NULL;
    }
    if (b[0] != 0 || b[1] != 0) {
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' does not start with an IDX magic "
                "(00 00 type ndim) but %02x %02x %02x %02x", what, b[0], b[1], b[2], b[3]);
        return NULL;
    }
    const char *type = idx_type_name(b[2]);
    if (b[2] != 0x08) {
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' holds elements of type 0x%02x (%s); only "
                "unsigned bytes (0x08) are supported", what, b[2], type ? type : "unknown");
        return NULL;
    }
    int ndim = b[3];
    if (ndim < 1 || ndim > TG_MAX_DIMS) {
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' has %d dims; 1 to %d are supported", what,
                ndim, TG_MAX_DIMS);
        return NULL;
    }
    size_t header = 4 + 4 * (size_t)ndim;
    if (size < header) {
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' is truncated inside its header (%zu of %zu "
                "bytes)", what, size, header);
        return NULL;
    }
    tg_idx *idx = calloc(1, sizeof *idx);
    if (!idx) {
        tg_fail(TG_ERR_NOMEM, "tg_idx_load: out of memory");
        return NULL;
    }
    idx->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *d = b + 4 + 4 * i;
        uint32_t v = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (v == 0) {
            tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' has dim %d equal to 0", what, i);
            free(idx);
            return NULL;
        }
        idx->dim[i] = v;
        numel *= v; /* v < 2^32 and the running product is capped below, no overflow */
        if (numel > IDX_MAX_BYTES) {
            tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' declares more than %zu elements; "
                    "hint: a corrupted header?", what, IDX_MAX_BYTES);
            free(idx);
            return NULL;
        }
    }
    size_t body = size - header;
    if (body != numel) {
        char dims[96];
        int len = 0;
        for (int i = 0; i < ndim && len < (int)sizeof dims; i++)
            len += snprintf(dims + len, sizeof dims - (size_t)len, "%s%lld", i ? " x " : "",
                            (long long)idx->dim[i]);
        tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' declares %s = %llu elements but holds %zu "
                "bytes of data; %s", what, dims, (unsigned long long)numel, body,
                body < numel ? "the file is truncated" : "trailing bytes after the data");
        free(idx);
        return NULL;
    }
    idx->numel = (int64_t)numel;
    idx->data = malloc(body);
    if (!idx->data) {
        tg_fail(TG_ERR_NOMEM, "tg_idx_load: out of memory for '%s' (%zu bytes)", what, body);
        free(idx);
        return NULL;
    }
    memcpy(idx->data, b + header, body);
    return idx;
}

/* header + elements as the header declares them; 0 when the header is incomplete or
 * invalid (idx_parse_raw then says why). */
static size_t idx_declared_size(const uint8_t *b, size_t size) {
    if (size < 4 || b[0] || b[1] || b[3] < 1 || b[3] > TG_MAX_DIMS) return 0;
    size_t header = 4 + 4 * (size_t)b[3];
    if (size < header) return 0;
    uint64_t numel = 1;
    for (int i = 0; i < b[3]; i++) {
        const uint8_t *d = b + 4 + 4 * i;
        numel *= (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        if (numel == 0 || numel > IDX_MAX_BYTES) return 0;
    }
    return header + (size_t)numel;
}

tg_idx *tg_idx_parse(const void *bytes, size_t size, const char *what) {
    if (!what) what = "(memory)";
    if (!bytes && size) {
        tg_fail(TG_ERR_ARG, "tg_idx_load: argument 'bytes' is NULL");
        return NULL;
    }
    if (!tg_is_gzip(bytes, size)) return idx_parse_raw(bytes, size, what);
    /* Inflate the header first, so the output cap is the declared size (+1 byte to
     * notice trailing data), never more than the file promises. */
    uint8_t *raw;
    size_t raw_size;
    if (tg_gunzip("tg_idx_load", what, bytes, size, 4 + 4 * TG_MAX_DIMS, true, &raw,
                  &raw_size))
        return NULL;
    size_t limit = idx_declared_size(raw, raw_size);
    free(raw);
    if (limit == 0) limit = raw_size; /* a bad header: its own message comes below */
    /* Inflation is bounded by what the header declares; check that much memory (plus
     * the copy idx_parse_raw keeps) is there before inflating a byte of it. */
    char why[160];
    snprintf(why, sizeof why, "tg_idx_load: '%.100s' (declaring %zu bytes)", what, limit);
    if (limit >= TG_MEM_CHECK_MIN && tg_mem_check(why, 2 * limit) != TG_OK) return NULL;
    if (tg_gunzip("tg_idx_load", what, bytes, size, limit + 1, true, &raw, &raw_size))
        return NULL;
    tg_idx *idx = idx_parse_raw(raw, raw_size, what);
    free(raw);
    return idx;
}

/* A raw (not gzipped) IDX file must be exactly as long as its header declares: checked
 * before the payload is read. Gzip files are bounded while inflating (tg_idx_parse). */
static tg_status idx_file_header(const uint8_t *head, size_t head_size, uint64_t file_size,
                                 const char *path, void *user) {
    (void)user;
    if (tg_is_gzip(head, head_size) || head_size < 4 || head[0] || head[1] || head[3] < 1 ||
        head[3] > TG_MAX_DIMS || head_size < 4 + 4 * (size_t)head[3])
        return TG_OK; /* gzip, or a bad header that idx_parse_raw explains */
    size_t declared = idx_declared_size(head, head_size);
    if (declared != 0 && declared != file_size)
        return tg_fail(TG_ERR_FORMAT, "tg_idx_load: '%s' declares %zu bytes (header and "
                       "elements) but is %llu bytes; %s", path, declared,
                       (unsigned long long)file_size,
                       file_size < declared ? "the file is truncated"
                                            : "trailing bytes after the data");
    return TG_OK;
}

tg_idx *tg_idx_load(const char *path) {
    if (!path) {
        tg_fail(TG_ERR_ARG, "tg_idx_load: argument 'path' is NULL");
        return NULL;
    }
    uint8_t *bytes;
    size_t size;
    if (tg_read_file_ex("tg_idx_load", path, IDX_MAX_BYTES + 64, 4 + 4 * TG_MAX_DIMS,
                        idx_file_header, NULL, &bytes, &size))
        return NULL;
    tg_idx *idx = tg_idx_parse(bytes, size, path);
    free(bytes);
    return idx;
}

void tg_idx_free(tg_idx *idx) {
    if (!idx) return;
    free(idx->data);
    free(idx);
}
