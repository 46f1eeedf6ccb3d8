/*
 * io/safetensors.c — weights in the safetensors format (PyTorch, JAX, NumPy, model hubs).
 *
 * FORMAT (https://github.com/huggingface/safetensors, "Format"):
 *
 *   N          u64 little-endian   bytes of the header
 *   header     N bytes of JSON     {"__metadata__": {"key": "string", ...},
 *                                   "name": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                            "data_offsets": [begin, end]}, ...}
 *                                  may end with spaces (writers pad it to 8 bytes)
 *   data       the rest            raw little-endian, row-major tensors; offsets are
 *                                  relative to the start of this section
 *
 * The format's own rule is that the data section is indexed entirely and without holes
 * (so a file cannot smuggle a second payload). Taken in increasing order, the tensors'
 * [begin, end) ranges must therefore tile [0, data size) exactly.
 *
 * SAVING writes every entry of a parameter store (parameters and buffers, in store
 * order) as F32 with consecutive offsets, the header built with cJSON (names escaped
 * properly) and padded with spaces to a multiple of 8 so the data is aligned, then the
 * bytes go through tg_write_file_atomic (io/io.c) as checkpoints do.
 *
 * LOADING runs in three passes and changes nothing before the last one:
 *   1. index: the header length against the file size; the JSON; every tensor's dtype,
 *      shape and offsets, the byte size dtype x shape computed with overflow checks; the
 *      tiling of the data section; duplicate names.
 *   2. match: each file name, after the prefix strip and the name map, against the store
 *      (shape and a floating dtype required); BatchNorm's num_batches_tracked skipped;
 *      in strict mode nothing may be missing or unexpected.
 *   3. apply: convert F32/F16/BF16/F64 to float32 and copy into the store.
 * Reading a file reads its header alone first, so a huge file with a bad header is
 * refused before its data is touched; the data section is read (whole) only after
 * passes 1 and 2 have accepted the file, and converted only after it was read in full.
 */
#include "io.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_FORMAT_VERSION "1"
#define ST_MAX_HEADER ((uint64_t)100 << 20)  /* as the reference implementation */
#define ST_MAX_BYTES ((uint64_t)1 << 36)     /* 64 GiB, the checkpoints' limit */
#define ST_MAX_DIMS 16                       /* more is refused as malformed */
#define ST_MAX_INT 9007199254740992.0        /* 2^53: JSON numbers are doubles */

#define BAD(...) tg_fail(TG_ERR_FORMAT, __VA_ARGS__)

/* ---------------------------------------------------------------- dtypes, sizes */

typedef enum st_kind { ST_OTHER = 0, ST_F32, ST_F16, ST_BF16, ST_F64 } st_kind;

typedef struct st_dtype {
    const char *name;
    uint64_t size; /* bytes per element */
    st_kind kind;  /* ST_OTHER: a valid dtype tapegrad does not convert */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, ST_F32},  {"F16", 2, ST_F16},    {"BF16", 2, ST_BF16},   {"F64", 8, ST_F64},
    {"BOOL", 1, ST_OTHER}, {"U8", 1, ST_OTHER}, {"I8", 1, ST_OTHER},    {"F8_E4M3", 1, ST_OTHER},
    {"F8_E5M2", 1, ST_OTHER}, {"I16", 2, ST_OTHER}, {"U16", 2, ST_OTHER}, {"I32", 4, ST_OTHER},
    {"U32", 4, ST_OTHER}, {"I64", 8, ST_OTHER}, {"U64", 8, ST_OTHER},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

/* Products of sizes go through the project's checked arithmetic (core/size.c): entries
 * are at most 2^53 (json_uint), so they fit an int64_t; a product that does not is
 * refused, never wrapped. */
static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    int64_t r;
    if (a > (uint64_t)INT64_MAX || b > (uint64_t)INT64_MAX ||
        !tg_mul_i64((int64_t)a, (int64_t)b, &r))
        return false;
    *out = (uint64_t)r;
    return true;
}

/* IEEE binary16 -> binary32, exact (every half is a float): sign, 5-bit exponent (bias
 * 15), 10-bit mantissa. Subnormals (exponent 0) are m * 2^-24 and get normalised. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, or NaN with its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* +-0 */
    } else {
        uint32_t shift = 0;
        while (!(man & 0x400u)) {
            man <<= 1;
            shift++;
        }
        /* m * 2^-24 with m's leading one moved to bit 10: exponent -14 - (shift - 1). */
        bits = sign | ((113 - shift) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* n elements of dtype dt at little-endian src -> float32 dst. */
static void convert(const st_dtype *dt, const uint8_t *src, float *dst, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *b = src + i * dt->size;
        uint32_t u32;
        uint64_t u64;
        double d;
        switch (dt->kind) {
        case ST_F32:
            u32 = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                  (uint32_t)b[3] << 24;
            memcpy(&dst[i], &u32, sizeof u32);
            break;
        case ST_F16:
            dst[i] = half_to_float((uint16_t)(b[0] | b[1] << 8));
            break;
        case ST_BF16: /* the top half of a float32 */
            u32 = ((uint32_t)b[0] | (uint32_t)b[1] << 8) << 16;
            memcpy(&dst[i], &u32, sizeof u32);
            break;
        case ST_F64:
            u64 = 0;
            for (int k = 7; k >= 0; k--) u64 = u64 << 8 | b[k];
            memcpy(&d, &u64, sizeof d);
            dst[i] = (float)d; /* round to nearest even, as torch's .float() */
            break;
        case ST_OTHER:
            break;
        }
    }
}

/* ---------------------------------------------------------------- pass 1: the index */

typedef struct st_entry {
    const char *name; /* as in the file (owned by the cJSON tree) */
    int dtype;        /* index into st_dtypes */
    int ndim;
    int64_t dim[ST_MAX_DIMS];
    uint64_t numel, begin, end;
    tg_tensor *target; /* pass 2: the store entry it loads into, or NULL */
    bool ignored;      /* pass 2: a num_batches_tracked counter */
} st_entry;

typedef struct st_index {
    cJSON *root;
    st_entry *e;
    int n;
    const char *model; /* __metadata__ "model", or NULL */
} st_index;

static void index_free(st_index *ix) {
    cJSON_Delete(ix->root);
    free(ix->e);
    memset(ix, 0, sizeof *ix);
}

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || (double)(uint64_t)d != d) return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int cmp_range(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* One tensor's description: {"dtype": ..., "shape": [...], "data_offsets": [b, e]}. */
static tg_status parse_entry(const char *op, const char *what, const cJSON *item,
                             uint64_t data_size, st_entry *e) {
    const char *nm = e->name;
    if (!cJSON_IsObject(item))
        return BAD("%s: '%s': tensor '%s' is not a JSON object", op, what, nm);
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *f = item->child; f; f = f->next) {
        const cJSON **slot = !strcmp(f->string, "dtype")   ? &dtype
                           : !strcmp(f->string, "shape")   ? &shape
                           : !strcmp(f->string, "data_offsets") ? &offsets : NULL;
        if (slot && *slot)
            return BAD("%s: '%s': tensor '%s' has two \"%s\" fields", op, what, nm, f->string);
        if (slot) *slot = f;
    }
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return BAD("%s: '%s': tensor '%s' needs \"dtype\" (a string), \"shape\" and "
                   "\"data_offsets\" (arrays)", op, what, nm);
    e->dtype = -1;
    for (int k = 0; k < ST_NDTYPES; k++)
        if (!strcmp(dtype->valuestring, st_dtypes[k].name)) e->dtype = k;
    if (e->dtype < 0)
        return BAD("%s: '%s': tensor '%s' has unknown dtype \"%.32s\"", op, what, nm,
                   dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return BAD("%s: '%s': tensor '%s' has %d dims; at most %d are accepted", op, what, nm,
                   ndim, ST_MAX_DIMS);
    e->ndim = 0;
    e->numel = 1;
    for (const cJSON *d = shape->child; d; d = d->next) {
        uint64_t v;
        if (!json_uint(d, &v))
            return BAD("%s: '%s': tensor '%s' has a shape entry that is not an integer in "
                       "[0, 2^53]", op, what, nm);
        if (!mul_u64(e->numel, v, &e->numel) || e->numel > (uint64_t)INT64_MAX)
            return BAD("%s: '%s': tensor '%s': the product of its shape overflows", op, what,
                       nm);
        e->dim[e->ndim++] = (int64_t)v;
    }
    if (cJSON_GetArraySize(offsets) != 2 || !json_uint(offsets->child, &e->begin) ||
        !json_uint(offsets->child->next, &e->end))
        return BAD("%s: '%s': tensor '%s': \"data_offsets\" must be two integers [begin, "
                   "end]", op, what, nm);
    uint64_t bytes;
    if (!mul_u64(e->numel, st_dtypes[e->dtype].size, &bytes))
        return BAD("%s: '%s': tensor '%s': %llu elements of %s overflow a 64-bit size", op,
                   what, nm, (unsigned long long)e->numel, st_dtypes[e->dtype].name);
    if (e->begin > e->end || e->end - e->begin != bytes)
        return BAD("%s: '%s': tensor '%s': data_offsets [%llu, %llu] do not hold the %llu "
                   "bytes its dtype %s and shape need", op, what, nm,
                   (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)bytes, st_dtypes[e->dtype].name);
    if (e->end > data_size)
        return BAD("%s: '%s': tensor '%s': data_offsets [%llu, %llu] run past the data "
                   "section (%llu bytes); hint: truncated file?", op, what, nm,
                   (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)data_size);
    return TG_OK;
}

/* "__metadata__": a map of strings; keeps "model". */
static tg_status parse_metadata(const char *op, const char *what, const cJSON *item,
                                st_index *ix) {
    if (!cJSON_IsObject(item))
        return BAD("%s: '%s': \"__metadata__\" is not a JSON object", op, what);
    for (const cJSON *f = item->child; f; f = f->next) {
        if (!cJSON_IsString(f))
            return BAD("%s: '%s': \"__metadata__\" entry '%s' is not a string", op, what,
                       f->string);
        if (!strcmp(f->string, "model")) ix->model = f->valuestring;
    }
    return TG_OK;
}

/* Pass 1 over the header bytes (hlen of them) of a file whose data section has
 * data_size bytes. */
static tg_status index_parse(const char *op, const char *what, const uint8_t *header,
                             size_t hlen, uint64_t data_size, st_index *ix) {
    memset(ix, 0, sizeof *ix);
    if (hlen < 2 || header[0] != '{')
        return BAD("%s: '%s' is not a safetensors file: its header does not start with '{'",
                   op, what);
    char *text = malloc(hlen + 1); /* cJSON reads a terminated copy */
    if (!text) return tg_fail(TG_ERR_NOMEM, "%s: out of memory reading '%s'", op, what);
    memcpy(text, header, hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    ix->root = cJSON_ParseWithLengthOpts(text, hlen, &end, false);
    size_t stop = end && end >= text && end <= text + hlen ? (size_t)(end - text) : hlen;
    tg_status st = TG_OK;
    if (!ix->root) {
        st = BAD("%s: '%s': the header is not valid JSON (at byte %zu of %zu)", op, what,
                 stop, hlen);
    } else {
        for (size_t i = stop; i < hlen && st == TG_OK; i++)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
                st = BAD("%s: '%s': the header has bytes after its JSON object (at byte %zu "
                         "of %zu)", op, what, i, hlen);
    }
    free(text);
    if (st) return st;
    if (!cJSON_IsObject(ix->root))
        return BAD("%s: '%s': the header is not a JSON object", op, what);
    int count = 0;
    bool seen_meta = false;
    for (const cJSON *c = ix->root->child; c; c = c->next) count++;
    ix->e = calloc((size_t)(count ? count : 1), sizeof *ix->e);
    st_entry **order = calloc((size_t)(count ? count : 1), sizeof *order);
    if (!ix->e || !order) {
        free(order);
        return tg_fail(TG_ERR_NOMEM, "%s: out of memory reading '%s'", op, what);
    }
    for (const cJSON *c = ix->root->child; c && st == TG_OK; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            st = seen_meta ? BAD("%s: '%s': \"__metadata__\" appears twice", op, what)
                           : parse_metadata(op, what, c, ix);
            seen_meta = true;
            continue;
        }
        st_entry *e = &ix->e[ix->n++];
        e->name = c->string;
        st = parse_entry(op, what, c, data_size, e);
    }
    for (int i = 0; i < ix->n; i++) order[i] = &ix->e[i];
    if (st == TG_OK && ix->n > 1) {
        qsort(order, (size_t)ix->n, sizeof *order, cmp_name);
        for (int i = 1; i < ix->n && st == TG_OK; i++)
            if (!strcmp(order[i]->name, order[i - 1]->name))
                st = BAD("%s: '%s': tensor '%s' appears twice in the header", op, what,
                         order[i]->name);
    }
    if (st == TG_OK) {
        /* The ranges, in increasing order, must tile [0, data_size) exactly. */
        qsort(order, (size_t)ix->n, sizeof *order, cmp_range);
        uint64_t at = 0;
        for (int i = 0; i < ix->n && st == TG_OK; i++) {
            const st_entry *e = order[i];
            if (e->begin < at)
                st = BAD("%s: '%s': tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' "
                         "(ending at %llu)", op, what, e->name, (unsigned long long)e->begin,
                         (unsigned long long)e->end, order[i - 1]->name,
                         (unsigned long long)at);
            else if (e->begin > at)
                st = BAD("%s: '%s': tensor '%s' starts at byte %llu of the data section, "
                         "leaving bytes %llu..%llu unindexed", op, what, e->name,
                         (unsigned long long)e->begin, (unsigned long long)at,
                         (unsigned long long)e->begin);
            else
                at = e->end;
        }
        if (st == TG_OK && at != data_size)
            st = BAD("%s: '%s': the data section has %llu bytes but its tensors index %llu; "
                     "the rest is unindexed", op, what, (unsigned long long)data_size,
                     (unsigned long long)at);
    }
    free(order);
    return st;
}

/* ---------------------------------------------------------------- pass 2: match */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Appends ", name" (or "name") to a list, ending it with "..." once full. */
static void list_add(char *list, size_t size, const char *name) {
    size_t used = strlen(list);
    if (used >= 3 && !strcmp(list + used - 3, "...")) return;
    size_t need = strlen(name) + (used ? 2 : 0);
    if (used + need + 4 > size) {
        if (used + 4 <= size) strcat(list, "...");
        return;
    }
    if (used) strcat(list, ", ");
    strcat(list, name);
}

/* The store name a file name loads into: the prefix stripped, then the name map. */
static const char *map_name(const char *name, const tg_safetensors_opts *o) {
    if (o->strip_prefix && *o->strip_prefix &&
        !strncmp(name, o->strip_prefix, strlen(o->strip_prefix)))
        name += strlen(o->strip_prefix);
    for (const char *const *m = o->name_map; m && m[0]; m += 2)
        if (!strcmp(name, m[0])) return m[1];
    return name;
}

static int store_index(const tg_params *ps, const tg_tensor *t) {
    for (int i = 0; i < tg_params_count(ps); i++)
        if (tg_params_at(ps, i) == t) return i;
    return -1;
}

static tg_status index_match(const char *op, const char *what, st_index *ix, tg_params *ps,
                             const tg_safetensors_opts *o, tg_safetensors_report *rep) {
    int count = tg_params_count(ps);
    int *owner = malloc((size_t)(count ? count : 1) * sizeof *owner);
    if (!owner) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
    for (int i = 0; i < count; i++) owner[i] = -1;
    tg_status st = TG_OK;
    char hint[160] = "";
    for (int k = 0; k < ix->n && st == TG_OK; k++) {
        st_entry *e = &ix->e[k];
        const char *key = map_name(e->name, o);
        e->target = tg_params_find(ps, key);
        if (!e->target) {
            e->ignored = ends_with(key, ".num_batches_tracked") ||
                         !strcmp(key, "num_batches_tracked");
            rep->ignored += e->ignored;
            if (!e->ignored) {
                rep->unexpected++;
                list_add(rep->unexpected_names, sizeof rep->unexpected_names, e->name);
                /* "model.fc1.weight" with a store holding "fc1.weight": suggest the strip. */
                const char *dot = strchr(key, '.');
                if (!hint[0] && dot && tg_params_find(ps, dot + 1))
                    snprintf(hint, sizeof hint, "; hint: strip_prefix \"%.*s\" maps '%s' to "
                             "'%s'", (int)(dot + 1 - key), key, e->name, dot + 1);
            }
            continue;
        }
        const tg_tensor *t = e->target;
        int at = store_index(ps, t);
        char want[80];
        if (owner[at] >= 0) {
            st = BAD("%s: '%s': tensors '%s' and '%s' both load into '%s'", op, what,
                     ix->e[owner[at]].name, e->name, t->name);
        } else if (st_dtypes[e->dtype].kind == ST_OTHER) {
            st = BAD("%s: '%s': tensor '%s' has dtype %s; tapegrad reads F32, F16, BF16 and "
                     "F64", op, what, e->name, st_dtypes[e->dtype].name);
        } else {
            bool same = e->ndim == t->shape.ndim;
            for (int d = 0; same && d < e->ndim; d++) same = e->dim[d] == t->shape.dim[d];
            if (!same) {
                char got[160] = "(";
                for (int d = 0; d < e->ndim; d++) {
                    size_t u = strlen(got);
                    snprintf(got + u, sizeof got - u, "%s%lld", d ? ", " : "",
                             (long long)e->dim[d]);
                }
                strncat(got, ")", sizeof got - strlen(got) - 1);
                st = BAD("%s: '%s': tensor '%s' has shape %s; store entry '%s' is %s", op,
                         what, e->name, got, t->name,
                         tg_shape_str(t->shape, want, sizeof want));
            }
        }
        owner[at] = k;
    }
    for (int i = 0; i < count && st == TG_OK; i++) {
        if (owner[i] >= 0) {
            rep->loaded++;
            continue;
        }
        rep->missing++;
        list_add(rep->missing_names, sizeof rep->missing_names, tg_params_at(ps, i)->name);
    }
    free(owner);
    if (st == TG_OK && !o->partial && rep->missing)
        st = BAD("%s: '%s' lacks %d of the store's %d tensors: %s; hint: a partial load "
                 "(opts.partial) loads the others", op, what, rep->missing, count,
                 rep->missing_names);
    if (st == TG_OK && !o->partial && rep->unexpected)
        st = BAD("%s: '%s' holds %d tensor%s the store does not have: %s%s", op, what,
                 rep->unexpected, rep->unexpected == 1 ? "" : "s", rep->unexpected_names,
                 hint[0] ? hint : "; hint: a partial load (opts.partial) skips them");
    return st;
}

/* ---------------------------------------------------------------- pass 3: apply */

static tg_status index_apply(const char *op, const st_index *ix, const uint8_t *data,
                             tg_params *ps) {
    tg_device device = tg_params_device(ps);
    for (int k = 0; k < ix->n; k++) {
        const st_entry *e = &ix->e[k];
        if (!e->target) continue;
        tg_tensor *t = e->target;
        if (device == TG_DEVICE_CPU) {
            convert(&st_dtypes[e->dtype], data + e->begin, t->data, e->numel);
            continue;
        }
        float *host = malloc((size_t)e->numel * sizeof *host);
        if (!host) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
        convert(&st_dtypes[e->dtype], data + e->begin, host, e->numel);
        tg_status st = tg_device_copy(device, t->data, TG_DEVICE_CPU, host,
                                      (size_t)e->numel * sizeof *host);
        free(host);
        if (st) return st;
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- loading */

static tg_status check_args(const char *op, tg_params *ps, const tg_safetensors_opts *o) {
    if (!ps) return tg_fail(TG_ERR_ARG, "%s: argument 'ps' (the parameter store) is NULL", op);
    int pairs = 0;
    for (const char *const *m = o->name_map; m && m[0]; m += 2, pairs++)
        if (!m[1])
            return tg_fail(TG_ERR_ARG, "%s: opts.name_map entry %d ('%s') has no store name; "
                           "the map is {\"file name\", \"store name\", ..., NULL}", op, pairs,
                           m[0]);
    return TG_OK;
}

/* The header length from the first 8 bytes of a file of `size` bytes, checked against
 * the size and the cap. */
static tg_status header_length(const char *op, const char *what, const uint8_t *first8,
                               uint64_t size, uint64_t *hlen) {
    if (size < 8)
        return BAD("%s: '%s' is %llu bytes, too short for a safetensors file", op, what,
                   (unsigned long long)size);
    *hlen = 0;
    for (int k = 7; k >= 0; k--) *hlen = *hlen << 8 | first8[k];
    if (*hlen > size - 8)
        return BAD("%s: '%s' declares a %llu-byte header but the file is shorter; hint: "
                   "truncated, or not safetensors", op, what, (unsigned long long)*hlen);
    if (*hlen > ST_MAX_HEADER)
        return BAD("%s: '%s' declares a %llu-byte header; at most 100 MiB are accepted", op,
                   what, (unsigned long long)*hlen);
    return TG_OK;
}

static void report_model(tg_safetensors_report *rep, const st_index *ix) {
    if (ix->model) snprintf(rep->model, sizeof rep->model, "%s", ix->model);
}

tg_status tg_safetensors_parse(const void *bytes, size_t size, const char *what, tg_params *ps,
                               const tg_safetensors_opts *opts,
                               tg_safetensors_report *report) {
    const char *op = "tg_safetensors_load";
    tg_safetensors_opts o = opts ? *opts : (tg_safetensors_opts){0};
    if (!what) what = "(memory)";
    if (check_args(op, ps, &o)) return tg_error();
    if (!bytes && size) return tg_fail(TG_ERR_ARG, "%s: argument 'bytes' is NULL", op);
    const uint8_t *b = bytes;
    uint64_t hlen;
    if (header_length(op, what, b, size, &hlen)) return tg_error();
    st_index ix;
    tg_safetensors_report rep = {0};
    tg_status st = index_parse(op, what, b + 8, (size_t)hlen, size - 8 - hlen, &ix);
    if (st == TG_OK) st = index_match(op, what, &ix, ps, &o, &rep);
    if (st == TG_OK) st = index_apply(op, &ix, b + 8 + hlen, ps);
    if (st == TG_OK) report_model(&rep, &ix);
    index_free(&ix);
    if (st == TG_OK && report) *report = rep;
    return st;
}

tg_status tg_safetensors_load(const char *path, tg_params *ps, const tg_safetensors_opts *opts,
                              tg_safetensors_report *report) {
    const char *op = "tg_safetensors_load";
    tg_safetensors_opts o = opts ? *opts : (tg_safetensors_opts){0};
    if (!path) return tg_fail(TG_ERR_ARG, "%s: argument 'path' is NULL", op);
    if (check_args(op, ps, &o)) return tg_error();
    int fd;
    uint64_t size;
    if (tg_open_regular(op, path, ST_MAX_BYTES, &fd, &size)) return tg_error();
    uint8_t head[8] = {0};
    uint8_t *header = NULL, *data = NULL;
    st_index ix = {0};
    tg_safetensors_report rep = {0};
    tg_status st = TG_OK;
    uint64_t hlen = 0;
    if (size >= 8 && (st = tg_read_at(op, path, fd, 0, head, 8))) goto done;
    if ((st = header_length(op, path, head, size, &hlen))) goto done;
    header = malloc((size_t)hlen + 1);
    if (!header) {
        st = tg_fail(TG_ERR_NOMEM, "%s: out of memory reading '%s'", op, path);
        goto done;
    }
    if ((st = tg_read_at(op, path, fd, 8, header, (size_t)hlen))) goto done;
    uint64_t data_size = size - 8 - hlen;
    if ((st = index_parse(op, path, header, (size_t)hlen, data_size, &ix))) goto done;
    if ((st = index_match(op, path, &ix, ps, &o, &rep))) goto done;
    data = malloc(data_size ? (size_t)data_size : 1);
    if (!data) {
        st = tg_fail(TG_ERR_NOMEM, "%s: out of memory reading '%s' (%llu bytes of data)", op,
                     path, (unsigned long long)data_size);
        goto done;
    }
    if ((st = tg_read_at(op, path, fd, 8 + hlen, data, (size_t)data_size))) goto done;
    if ((st = index_apply(op, &ix, data, ps))) goto done;
    report_model(&rep, &ix);
    if (report) *report = rep;
done:
    close(fd);
    index_free(&ix);
    free(header);
    free(data);
    return st;
}

/* ---------------------------------------------------------------- saving */

/* The header JSON (unpadded) of a store saved as F32 in store order. */
static char *header_json(tg_params *ps, const char *model_name) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    bool ok = meta && cJSON_AddStringToObject(meta, "format", "pt") &&
              cJSON_AddStringToObject(meta, "format_version", ST_FORMAT_VERSION) &&
              (!model_name || cJSON_AddStringToObject(meta, "model", model_name)) &&
              cJSON_AddStringToObject(meta, "producer", "tapegrad");
    uint64_t at = 0;
    for (int i = 0; ok && i < tg_params_count(ps); i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        cJSON *item = cJSON_AddObjectToObject(root, t->name), *shape, *offsets;
        ok = item && cJSON_AddStringToObject(item, "dtype", "F32") &&
             (shape = cJSON_AddArrayToObject(item, "shape")) &&
             (offsets = cJSON_AddArrayToObject(item, "data_offsets"));
        for (int d = 0; ok && d < t->shape.ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape.dim[d]));
        uint64_t bytes = 4 * (uint64_t)t->numel;
        ok = ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)at)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(at + bytes)));
        at += bytes;
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

tg_status tg_safetensors_save(const char *path, tg_params *ps, const char *model_name) {
    const char *op = "tg_safetensors_save";
    if (!path || !*path)
        return tg_fail(TG_ERR_ARG, "%s: argument 'path' is %s", op, path ? "empty" : "NULL");
    if (!ps) return tg_fail(TG_ERR_ARG, "%s: argument 'ps' (the parameter store) is NULL", op);
    if (tg_error() != TG_OK) return tg_error(); /* never save values an error may have hit */
    if (tg_params_find(ps, "__metadata__"))
        return tg_fail(TG_ERR_ARG, "%s: the store has an entry named '__metadata__', a name "
                       "the format reserves", op);
    char *json = header_json(ps, model_name);
    if (!json) return tg_fail(TG_ERR_NOMEM, "%s: out of memory building the header", op);
    size_t len = strlen(json), padded = (len + 7) & ~(size_t)7; /* align the data to 8 */
    tg_writer w = {0};
    tg_writer_u64(&w, padded);
    tg_writer_bytes(&w, json, len);
    for (size_t i = len; i < padded; i++) tg_writer_u8(&w, ' ');
    free(json);
    tg_device device = tg_params_device(ps);
    tg_status st = TG_OK;
    for (int i = 0; i < tg_params_count(ps) && st == TG_OK; i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        if (device == TG_DEVICE_CPU) {
            tg_writer_floats(&w, t->data, t->numel);
            continue;
        }
        float *host = malloc((size_t)t->numel * sizeof *host);
        if (!host) {
            st = tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
            break;
        }
        st = tg_device_copy(TG_DEVICE_CPU, host, device, t->data,
                            (size_t)t->numel * sizeof *host);
        if (st == TG_OK) tg_writer_floats(&w, host, t->numel);
        free(host);
    }
    if (st == TG_OK && w.failed) st = tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
    if (st == TG_OK) st = tg_write_file_atomic(op, path, w.p, w.size);
    tg_writer_free(&w);
    return st;
}
