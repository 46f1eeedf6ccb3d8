/*
 * io/checkpoint.c — checkpoints you can trust.
 *
 * FORMAT (version 1). Integers and floats little-endian; a string is a u32 length
 * (1..255) and its bytes, no terminator.
 *
 *   magic      8 bytes  89 'T' 'G' 'C' 'K' 'P' 'T' 0a  (the 0x89 and the newline catch
 *                       7-bit and text-mode transfers, as PNG's magic does)
 *   version    u32      1
 *   flags      u32      bit 0: optimizer section present, bit 1: train state present,
 *                       bit 2: distributed section present, bit 3: conv choices present
 *   payload    u64      bytes from here to the checksum
 *   model      string   tg_model_name, e.g. "mlp-784-128-10"
 *   count      u32      parameters + buffers, in the store's order
 *   entries    count x  { name string, trainable u8, ndim u8, dims i64[ndim] }
 *   optimizer  (flag 0) { kind string, slots u32, steps i64, lr f64, momentum f64,
 *                         dampening f64, nesterov u8, beta1 f64, beta2 f64, eps f64,
 *                         weight_decay f64 }
 *   train      (flag 1) { epoch i64, step i64, rng u64[4], data seed u64, data epoch i64,
 *                         data cursor i64 }
 *   dist       (flag 2) { world size u32, global batch u32 }: written only by distributed
 *                         runs (world > 1), so one-process files are unchanged; a build
 *                         without this section refuses such files (unknown flag)
 *   conv       (flag 3) { count u32 (1..64), count x { n i64, c_in i64, h i64, w i64,
 *                         c_out i64, pad_h u32, pad_w u32, bias u8, winograd u8 } }:
 *                         TG_CONV_ALGO_AUTO's choices (tg_train_state.conv_choices, oldest
 *                         first), so a resume computes with the same convolution
 *                         algorithms; written only when there are some (files of pinned
 *                         algorithms are unchanged; older builds refuse it: unknown flag).
 *                         No timings: the same choices give the same bytes
 *   values     every entry's elements (f32), in entry order, no padding
 *   state      (flag 0) for each state slot, every trainable entry's elements (f32)
 *   crc32      u32      zlib's CRC-32 of every byte before it
 *
 * Nothing in it depends on time, pointers or padding, so the same state gives the same
 * bytes: the resume test compares whole files. The optimizer's hyperparameters are
 * recorded for inspection; loading restores steps, lr and state, and checks the kind and
 * the number of state arrays (SGD without momentum keeps none, with momentum one).
 *
 * SAVING writes the bytes with tg_write_file_atomic (io/io.c): a fresh temporary file
 * next to the target (mkstemp), fsynced, renamed over the target, then the directory
 * fsynced. rename is atomic, so a crash or SIGKILL at any instant leaves the old file or
 * the new one, never a mixture (a killed save can leave its "<path>.tmp.XXXXXX" behind;
 * it is never read).
 *
 * LOADING reads the whole file, checks magic, version, length and checksum, then parses
 * every field against the model (name, every entry's name, kind and shape) and the
 * optimizer (kind, state slots) before writing anything, so a refused file leaves the
 * model, the optimizer and the train state exactly as they were.
 */
#include "io.h"

#include "../models/model.h"
#include "../optim/optim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CKPT_VERSION 1u
#define CKPT_HAS_OPTIM 1u
#define CKPT_HAS_TRAIN 2u
#define CKPT_HAS_DIST 4u
#define CKPT_HAS_CONV 8u
#define CKPT_HEADER 24      /* magic + version + flags + payload */
#define CKPT_MAX_NAME 255
#define CKPT_MAX_BYTES ((size_t)1 << 36) /* 64 GiB: far above any model we build */

static const uint8_t ckpt_magic[8] = {0x89, 'T', 'G', 'C', 'K', 'P', 'T', '\n'};

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

static void write_string(tg_writer *w, const char *s) {
    size_t n = strlen(s);
    tg_writer_u32(w, (uint32_t)n);
    tg_writer_bytes(w, s, n);
}

static void write_f64(tg_writer *w, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    tg_writer_u64(w, u);
}

/* n floats of a tensor or state slice on `device`, appended little-endian. */
static tg_status write_device_floats(tg_writer *w, tg_device device, const float *p,
                                     int64_t n) {
    if (device == TG_DEVICE_CPU) {
        tg_writer_floats(w, p, n);
        return TG_OK;
    }
    float *host = malloc((size_t)(n ? n : 1) * sizeof *host);
    if (!host) return tg_fail(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory");
    tg_status st = tg_device_copy(TG_DEVICE_CPU, host, device, p, (size_t)n * sizeof *host);
    if (st == TG_OK) tg_writer_floats(w, host, n);
    free(host);
    return st;
}

/* The bytes of a checkpoint, checksum included. */
static tg_status ckpt_encode(tg_model *m, const tg_optim *opt, const tg_train_state *state,
                             tg_writer *w) {
    tg_params *ps = m->params;
    tg_device device = tg_params_device(ps);
    bool dist = state && state->world_size > 1;
    bool conv = state && state->nconv_choices > 0;
    uint32_t flags = (opt ? CKPT_HAS_OPTIM : 0) | (state ? CKPT_HAS_TRAIN : 0) |
                     (dist ? CKPT_HAS_DIST : 0) | (conv ? CKPT_HAS_CONV : 0);
    tg_writer_bytes(w, ckpt_magic, sizeof ckpt_magic);
    tg_writer_u32(w, CKPT_VERSION);
    tg_writer_u32(w, flags);
    tg_writer_u64(w, 0); /* payload size, patched below */
    write_string(w, m->name);
    int count = tg_params_count(ps);
    tg_writer_u32(w, (uint32_t)count);
    for (int i = 0; i < count; i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        write_string(w, t->name);
        tg_writer_u8(w, t->requires_grad ? 1 : 0);
        tg_writer_u8(w, (uint8_t)t->shape.ndim);
        for (int d = 0; d < t->shape.ndim; d++) tg_writer_i64(w, t->shape.dim[d]);
    }
    if (opt) {
        write_string(w, opt->kind->name);
        tg_writer_u32(w, (uint32_t)opt->slots);
        tg_writer_i64(w, opt->steps);
        write_f64(w, opt->lr);
        write_f64(w, opt->hyper.momentum);
        write_f64(w, opt->hyper.dampening);
        tg_writer_u8(w, opt->hyper.nesterov ? 1 : 0);
        write_f64(w, opt->hyper.beta1);
        write_f64(w, opt->hyper.beta2);
        write_f64(w, opt->hyper.eps);
        write_f64(w, opt->hyper.weight_decay);
    }
    if (state) {
        tg_writer_i64(w, state->epoch);
        tg_writer_i64(w, state->step);
        for (int i = 0; i < 4; i++) tg_writer_u64(w, state->rng.s[i]);
        tg_writer_u64(w, state->data.seed);
        tg_writer_i64(w, state->data.epoch);
        tg_writer_i64(w, state->data.cursor);
    }
    if (dist) {
        tg_writer_u32(w, (uint32_t)state->world_size);
        tg_writer_u32(w, (uint32_t)state->batch);
    }
    if (conv) {
        tg_writer_u32(w, (uint32_t)state->nconv_choices);
        for (int i = 0; i < state->nconv_choices; i++) {
            const tg_conv_choice *c = &state->conv_choices[i];
            tg_writer_i64(w, c->n);
            tg_writer_i64(w, c->c_in);
            tg_writer_i64(w, c->h);
            tg_writer_i64(w, c->w);
            tg_writer_i64(w, c->c_out);
            tg_writer_u32(w, (uint32_t)c->pad_h);
            tg_writer_u32(w, (uint32_t)c->pad_w);
            tg_writer_u8(w, c->bias ? 1 : 0);
            tg_writer_u8(w, c->winograd ? 1 : 0);
        }
    }
    for (int i = 0; i < count; i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        if (write_device_floats(w, device, t->data, t->numel)) return tg_error();
    }
    if (opt) {
        const float *base = tg_params_data(ps);
        int64_t flat = tg_params_flat_numel(ps);
        for (int s = 0; s < opt->slots; s++) {
            for (int i = 0; i < count; i++) {
                const tg_tensor *t = tg_params_at(ps, i);
                if (!t->requires_grad) continue;
                const float *slice = opt->state + (int64_t)s * flat + (t->data - base);
                if (write_device_floats(w, device, slice, t->numel)) return tg_error();
            }
        }
    }
    if (w->failed) return tg_fail(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory");
    uint64_t payload = w->size - CKPT_HEADER;
    for (int i = 0; i < 8; i++) w->p[16 + i] = (uint8_t)(payload >> (8 * i));
    tg_writer_u32(w, crc32_of(w->p, w->size));
    if (w->failed) return tg_fail(TG_ERR_NOMEM, "tg_checkpoint_save: out of memory");
    return TG_OK;
}

tg_status tg_checkpoint_check_writable(const char *path) {
    const char *op = "tg_checkpoint_check_writable";
    if (!path || !*path)
        return tg_fail(TG_ERR_ARG, "%s: argument 'path' is %s", op, path ? "empty" : "NULL");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return tg_fail(TG_ERR_IO, "%s: '%s' is a directory; give a file name for the "
                       "checkpoint", op, path);
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        char *dir = tg_dir_of(path);
        tg_status st2 = tg_fail(TG_ERR_IO, "checkpoint directory '%s' is not writable (%s); "
                                "hint: create it or choose another --checkpoint",
                                dir ? dir : path, strerror(errno));
        free(dir);
        free(tmp);
        return st2;
    }
    close(fd);
    unlink(tmp);
    free(tmp);
    return TG_OK;
}

/* TG_OK when every parameter, buffer and optimizer state value is finite. */
static tg_status check_finite_state(tg_model *m, const tg_optim *opt) {
    tg_params *ps = m->params;
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        char what[320];
        snprintf(what, sizeof what, "tg_checkpoint_save: model '%s' %s '%s'", m->name,
                 t->requires_grad ? "parameter" : "buffer", t->name);
        if (tg_tensor_check_finite(t, false, what) != TG_OK) {
            tg_error_clear();
            tg_fail(TG_ERR_NONFINITE, "%s holds a non-finite value; nothing was written (the "
                    "previous checkpoint is kept); hint: training diverged — lower the "
                    "learning rate, or run with anomaly mode (--check-finite) to find the "
                    "first op; tg_checkpoint_save_opts with allow_nonfinite saves anyway",
                    what);
            return TG_ERR_NONFINITE;
        }
    }
    if (opt && opt->state) {
        tg_tensor flat = {.shape = tg_shape1(tg_params_flat_numel(ps)),
                          .numel = tg_params_flat_numel(ps) * opt->slots,
                          .device = tg_params_device(ps), .data = opt->state};
        char what[160];
        snprintf(what, sizeof what, "tg_checkpoint_save: the %s optimizer state", opt->kind->name);
        if (tg_tensor_check_finite(&flat, false, what) != TG_OK) {
            tg_error_clear();
            return tg_fail(TG_ERR_NONFINITE, "%s holds a non-finite value; nothing was "
                           "written; hint: tg_checkpoint_save_opts with allow_nonfinite saves "
                           "anyway", what);
        }
    }
    return TG_OK;
}

tg_status tg_checkpoint_save(const char *path, tg_model *m, const tg_optim *opt,
                             const tg_train_state *state) {
    return tg_checkpoint_save_opts(path, m, opt, state, (tg_checkpoint_opts){0});
}

tg_status tg_checkpoint_save_opts(const char *path, tg_model *m, const tg_optim *opt,
                                  const tg_train_state *state, tg_checkpoint_opts opts) {
    if (!path || !*path) return tg_fail(TG_ERR_ARG, "tg_checkpoint_save: argument 'path' is "
                                        "%s", path ? "empty" : "NULL");
    if (!m) return tg_fail(TG_ERR_ARG, "tg_checkpoint_save: argument 'm' (the model) is NULL");
    if (tg_error() != TG_OK) return tg_error(); /* never save state an error may have hit */
    if (opt && opt->ps != m->params)
        return tg_fail(TG_ERR_ARG, "tg_checkpoint_save: argument 'opt' updates another "
                       "parameter store than model '%s''s", m->name);
    char why[200];
    if (state && tg_conv_choices_invalid(state->conv_choices, state->nconv_choices, why,
                                         sizeof why))
        return tg_fail(TG_ERR_ARG, "tg_checkpoint_save: argument 'state' conv_choices: %s; "
                       "hint: fill them with tg_ctx_conv_choices", why);
    if (!opts.allow_nonfinite && check_finite_state(m, opt) != TG_OK) return tg_error();
    tg_writer w = {0};
    tg_status st = ckpt_encode(m, opt, state, &w);
    if (st) {
        tg_writer_free(&w);
        return st;
    }
    st = tg_write_file_atomic("tg_checkpoint_save", path, w.p, w.size);
    tg_writer_free(&w);
    return st;
}

/* ---------------------------------------------------------------- loading */

#define BAD(...) tg_fail(TG_ERR_FORMAT, __VA_ARGS__)

static bool read_string(tg_reader *r, char *out) {
    uint32_t n;
    const uint8_t *b;
    if (!tg_reader_u32(r, &n) || n == 0 || n > CKPT_MAX_NAME || !tg_reader_take(r, n, &b))
        return false;
    memcpy(out, b, n);
    out[n] = '\0';
    return memchr(out, '\0', n) == NULL;
}

static bool read_f64(tg_reader *r, double *v) {
    uint64_t u;
    if (!tg_reader_u64(r, &u)) return false;
    memcpy(v, &u, sizeof u);
    return true;
}

typedef struct ckpt_optim {
    char kind[CKPT_MAX_NAME + 1];
    uint32_t slots;
    int64_t steps;
    double lr;
    tg_optim_hyper hyper;
} ckpt_optim;

/* Device copy of n little-endian floats into dst. */
static tg_status load_floats(tg_device device, float *dst, const uint8_t *src, int64_t n) {
    if (device == TG_DEVICE_CPU) {
        tg_floats_from_le(dst, src, n);
        return TG_OK;
    }
    float *host = malloc((size_t)(n ? n : 1) * sizeof *host);
    if (!host) return tg_fail(TG_ERR_NOMEM, "tg_checkpoint_load: out of memory");
    tg_floats_from_le(host, src, n);
    tg_status st = tg_device_copy(device, dst, TG_DEVICE_CPU, host, (size_t)n * sizeof *host);
    free(host);
    return st;
}

/* The conv section (flag 3) into ts->conv_choices; false (message recorded) when it is
 * malformed or could not seed a context (tg_conv_choices_invalid). */
static bool read_conv_choices(tg_reader *r, tg_train_state *ts, const char *what) {
    const char *op = "tg_checkpoint_load";
    uint32_t count;
    if (!tg_reader_u32(r, &count) || count == 0 || count > TG_CONV_CHOICES_MAX) {
        BAD("%s: '%s': the conv choices section is malformed (bad count)", op, what);
        return false;
    }
    for (uint32_t i = 0; i < count; i++) {
        tg_conv_choice *c = &ts->conv_choices[i];
        uint32_t pad_h, pad_w;
        uint8_t bias, winograd;
        if (!tg_reader_i64(r, &c->n) || !tg_reader_i64(r, &c->c_in) ||
            !tg_reader_i64(r, &c->h) || !tg_reader_i64(r, &c->w) ||
            !tg_reader_i64(r, &c->c_out) || !tg_reader_u32(r, &pad_h) ||
            !tg_reader_u32(r, &pad_w) || !tg_reader_u8(r, &bias) ||
            !tg_reader_u8(r, &winograd) || pad_h > INT32_MAX || pad_w > INT32_MAX ||
            bias > 1 || winograd > 1) {
            BAD("%s: '%s': the conv choices section is malformed (row %u)", op, what, i);
            return false;
        }
        c->pad_h = (int)pad_h;
        c->pad_w = (int)pad_w;
        c->bias = bias;
        c->winograd = winograd;
        c->gemm_seconds = c->winograd_seconds = 0;
    }
    char why[200];
    if (tg_conv_choices_invalid(ts->conv_choices, (int)count, why, sizeof why)) {
        BAD("%s: '%s': the conv choices section is malformed: %s", op, what, why);
        return false;
    }
    ts->nconv_choices = (int32_t)count;
    return true;
}

/* Magic, version, flags and the promised length against the file's size: everything
 * that can be refused from the first CKPT_HEADER bytes (`avail` of them are in b), so a
 * huge or foreign file is refused before its payload is read. */
static tg_status ckpt_check_header(const uint8_t *b, size_t avail, uint64_t size,
                                   const char *what) {
    const char *op = "tg_checkpoint_load";
    if (size < CKPT_HEADER + 4 || avail < CKPT_HEADER)
        return BAD("%s: '%s' is %llu bytes, too short for a checkpoint; hint: truncated?", op,
                   what, (unsigned long long)size);
    if (memcmp(b, ckpt_magic, sizeof ckpt_magic) != 0)
        return BAD("%s: '%s' is not a tapegrad checkpoint (bad magic)", op, what);
    tg_reader r = {.p = b, .size = avail, .off = sizeof ckpt_magic};
    uint32_t version, flags;
    uint64_t payload;
    tg_reader_u32(&r, &version);
    tg_reader_u32(&r, &flags);
    tg_reader_u64(&r, &payload);
    if (version != CKPT_VERSION)
        return BAD("%s: '%s' has format version %u; this build reads version %u", op, what,
                   version, CKPT_VERSION);
    if (flags & ~(CKPT_HAS_OPTIM | CKPT_HAS_TRAIN | CKPT_HAS_DIST | CKPT_HAS_CONV) ||
        ((flags & (CKPT_HAS_DIST | CKPT_HAS_CONV)) && !(flags & CKPT_HAS_TRAIN)))
        return BAD("%s: '%s' has unknown flags 0x%x", op, what, flags);
    if (payload != size - CKPT_HEADER - 4)
        return BAD("%s: '%s' is %llu bytes but its header promises %llu; the file is %s", op,
                   what, (unsigned long long)size,
                   (unsigned long long)payload + CKPT_HEADER + 4,
                   payload > size - CKPT_HEADER - 4 ? "truncated" : "followed by extra bytes");
    return TG_OK;
}

static tg_status ckpt_file_header(const uint8_t *head, size_t head_size, uint64_t file_size,
                                  const char *path, void *user) {
    (void)user;
    return ckpt_check_header(head, head_size, file_size, path);
}

tg_status tg_checkpoint_parse(const void *bytes, size_t size, const char *what, tg_model *m,
                              tg_optim *opt, tg_train_state *state) {
    const char *op = "tg_checkpoint_load";
    if (!what) what = "(memory)";
    if (!m) return tg_fail(TG_ERR_ARG, "%s: argument 'm' (the model) is NULL", op);
    if (!bytes && size) return tg_fail(TG_ERR_ARG, "%s: argument 'bytes' is NULL", op);
    if (opt && opt->ps != m->params)
        return tg_fail(TG_ERR_ARG, "%s: argument 'opt' updates another parameter store than "
                       "model '%s''s", op, m->name);
    const uint8_t *b = bytes;
    tg_status hst = ckpt_check_header(b, size, size, what);
    if (hst) return hst;
    tg_reader r = {.p = b, .size = size, .off = sizeof ckpt_magic};
    uint32_t version, flags;
    uint64_t payload;
    tg_reader_u32(&r, &version);
    tg_reader_u32(&r, &flags);
    tg_reader_u64(&r, &payload);
    const uint8_t *c = b + size - 4;
    uint32_t stored = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 |
                      (uint32_t)c[3] << 24;
    uint32_t computed = crc32_of(b, size - 4);
    if (stored != computed)
        return BAD("%s: '%s' is corrupted: checksum %08x, expected %08x", op, what, computed,
                   stored);
    r.size = size - 4; /* the checksum is not payload */

    char name[CKPT_MAX_NAME + 1];
    if (!read_string(&r, name)) return BAD("%s: '%s': bad model name field", op, what);
    if (strcmp(name, m->name) != 0)
        return BAD("%s: '%s' holds model '%s' but this model is '%s'", op, what, name, m->name);
    tg_params *ps = m->params;
    uint32_t count;
    if (!tg_reader_u32(&r, &count)) return BAD("%s: '%s': bad entry count", op, what);
    if (count != (uint32_t)tg_params_count(ps))
        return BAD("%s: '%s' holds %u parameters and buffers; model '%s' has %d", op, what,
                   count, m->name, tg_params_count(ps));
    for (uint32_t i = 0; i < count; i++) {
        const tg_tensor *t = tg_params_at(ps, (int)i);
        uint8_t trainable, ndim;
        if (!read_string(&r, name) || !tg_reader_u8(&r, &trainable) ||
            !tg_reader_u8(&r, &ndim) || ndim > TG_MAX_DIMS)
            return BAD("%s: '%s': entry %u is malformed", op, what, i);
        tg_shape shape = {.ndim = ndim};
        for (int d = 0; d < ndim; d++)
            if (!tg_reader_i64(&r, &shape.dim[d]))
                return BAD("%s: '%s': entry %u is malformed", op, what, i);
        char want[80], got[80];
        if (strcmp(name, t->name) != 0 || (trainable != 0) != t->requires_grad ||
            !tg_shape_equal(shape, t->shape))
            return BAD("%s: '%s' entry %u is %s '%s' %s; model '%s' has %s '%s' %s", op, what,
                       i, trainable ? "parameter" : "buffer", name,
                       tg_shape_str(shape, got, sizeof got), m->name,
                       t->requires_grad ? "parameter" : "buffer", t->name,
                       tg_shape_str(t->shape, want, sizeof want));
    }
    ckpt_optim fo = {0};
    if (flags & CKPT_HAS_OPTIM) {
        uint8_t nesterov;
        if (!read_string(&r, fo.kind) || !tg_reader_u32(&r, &fo.slots) ||
            !tg_reader_i64(&r, &fo.steps) || !read_f64(&r, &fo.lr) ||
            !read_f64(&r, &fo.hyper.momentum) || !read_f64(&r, &fo.hyper.dampening) ||
            !tg_reader_u8(&r, &nesterov) || !read_f64(&r, &fo.hyper.beta1) ||
            !read_f64(&r, &fo.hyper.beta2) || !read_f64(&r, &fo.hyper.eps) ||
            !read_f64(&r, &fo.hyper.weight_decay) || fo.steps < 0 || fo.slots > 8 ||
            fo.steps > TG_OPTIM_MAX_STEPS)
            return BAD("%s: '%s': the optimizer section is malformed", op, what);
        fo.hyper.nesterov = nesterov != 0;
    }
    if (opt && !(flags & CKPT_HAS_OPTIM))
        return BAD("%s: '%s' holds no optimizer state, but a %s optimizer was given; hint: "
                   "pass NULL to load the parameters only", op, what, opt->kind->name);
    if (opt && strcmp(fo.kind, opt->kind->name) != 0)
        return BAD("%s: '%s' holds %s optimizer state but the optimizer is %s", op, what,
                   fo.kind, opt->kind->name);
    if (opt && (int)fo.slots != opt->slots)
        return BAD("%s: '%s' holds %u optimizer state arrays; %s keeps %d", op, what, fo.slots,
                   opt->kind->name, opt->slots);
    if (opt && !(fo.lr > 0 && fo.lr < 1e30))
        return BAD("%s: '%s' holds learning rate %g", op, what, fo.lr);
    tg_train_state ts = {0};
    if (flags & CKPT_HAS_TRAIN) {
        bool ok = tg_reader_i64(&r, &ts.epoch) && tg_reader_i64(&r, &ts.step);
        for (int i = 0; i < 4 && ok; i++) ok = tg_reader_u64(&r, &ts.rng.s[i]);
        ok = ok && tg_reader_u64(&r, &ts.data.seed) && tg_reader_i64(&r, &ts.data.epoch) &&
             tg_reader_i64(&r, &ts.data.cursor);
        if (!ok || ts.epoch < 0 || ts.step < 0 || ts.data.epoch < 0 || ts.data.cursor < 0)
            return BAD("%s: '%s': the train state section is malformed", op, what);
        /* Counters that a later step increments must leave room to count (no signed
         * overflow at the next step), and a cursor counts examples (<= TG_MAX_NUMEL). */
        if (ts.epoch > TG_OPTIM_MAX_STEPS || ts.step > TG_OPTIM_MAX_STEPS ||
            ts.data.epoch > TG_OPTIM_MAX_STEPS || ts.data.cursor > TG_MAX_NUMEL)
            return BAD("%s: '%s': the train state holds out-of-range counters (epoch %lld, "
                       "step %lld, data epoch %lld, cursor %lld; at most 2^53)", op, what,
                       (long long)ts.epoch, (long long)ts.step, (long long)ts.data.epoch,
                       (long long)ts.data.cursor);
    } else if (state) {
        return BAD("%s: '%s' holds no train state; hint: pass NULL for the state", op, what);
    }
    if (flags & CKPT_HAS_DIST) {
        uint32_t world, batch;
        if (!tg_reader_u32(&r, &world) || !tg_reader_u32(&r, &batch) || world < 2 ||
            world > INT32_MAX || batch > INT32_MAX)
            return BAD("%s: '%s': the distributed section is malformed", op, what);
        ts.world_size = (int32_t)world;
        ts.batch = (int32_t)batch;
    }
    if ((flags & CKPT_HAS_CONV) && !read_conv_choices(&r, &ts, what)) return tg_error();
    /* A resume must see the data the same way: the caller says how it runs. No section
     * means one process (world_size stays 0, as such files always had it). */
    int32_t file_world = ts.world_size ? ts.world_size : 1;
    if (state && state->world_size > 0 && state->world_size != file_world)
        return BAD("%s: '%s' was written by a run of %d process%s; this run has %d; resuming "
                   "would change which examples each rank sees (and per-rank statistics); "
                   "hint: resume with %s%d", op, what, file_world, file_world == 1 ? "" : "es",
                   state->world_size, file_world == 1 ? "one process, without --dist, or -np " :
                   "mpirun -np ", file_world);
    if (state && state->batch > 0 && ts.batch > 0 && state->batch != ts.batch)
        return BAD("%s: '%s' was written with global batch %d; this run uses %d; resuming "
                   "would change the batches of the data order; hint: --batch %d", op, what,
                   ts.batch, state->batch, ts.batch);
    /* The values and the optimizer state: sizes must match exactly. */
    int64_t values = tg_params_numel(ps) + tg_params_buffer_numel(ps);
    int64_t state_floats = (int64_t)fo.slots * tg_params_numel(ps);
    uint64_t need = 4 * ((uint64_t)values + (uint64_t)state_floats);
    if (tg_reader_left(&r) != need)
        return BAD("%s: '%s' holds %zu bytes of values; model '%s'%s needs %llu", op, what,
                   tg_reader_left(&r), m->name, fo.slots ? " and its optimizer state" : "",
                   (unsigned long long)need);

    /* Everything checked: from here on nothing can be refused. */
    tg_device device = tg_params_device(ps);
    const uint8_t *p;
    for (int i = 0; i < (int)count; i++) {
        tg_tensor *t = tg_params_at(ps, i);
        tg_reader_take(&r, 4 * (size_t)t->numel, &p);
        if (load_floats(device, t->data, p, t->numel)) return tg_error();
    }
    if (opt) {
        float *base = tg_params_data(ps);
        int64_t flat = tg_params_flat_numel(ps);
        for (int s = 0; s < opt->slots; s++) {
            for (int i = 0; i < (int)count; i++) {
                tg_tensor *t = tg_params_at(ps, i);
                if (!t->requires_grad) continue;
                tg_reader_take(&r, 4 * (size_t)t->numel, &p);
                float *slice = opt->state + (int64_t)s * flat + (t->data - base);
                if (load_floats(device, slice, p, t->numel)) return tg_error();
            }
        }
        opt->steps = fo.steps;
        opt->lr = fo.lr;
    }
    if (state) *state = ts;
    return TG_OK;
}

tg_status tg_checkpoint_load(const char *path, tg_model *m, tg_optim *opt,
                             tg_train_state *state) {
    if (!path) return tg_fail(TG_ERR_ARG, "tg_checkpoint_load: argument 'path' is NULL");
    if (!m) return tg_fail(TG_ERR_ARG, "tg_checkpoint_load: argument 'm' (the model) is NULL");
    uint8_t *bytes;
    size_t size;
    /* The largest file this model can have: names and shapes, two optimizer state
     * arrays, the values; anything larger is refused before it is read. */
    tg_params *ps = m->params;
    int64_t values = tg_params_numel(ps) + tg_params_buffer_numel(ps), bound;
    if (!tg_mul_i64(tg_params_numel(ps), 8, &bound) || !tg_add_i64(bound, values, &bound) ||
        !tg_mul_i64(bound, 4, &bound) ||
        !tg_add_i64(bound, (int64_t)(tg_params_count(ps) + 4) * (CKPT_MAX_NAME + 64) + 4096,
                    &bound))
        bound = (int64_t)CKPT_MAX_BYTES;
    size_t max_bytes = (uint64_t)bound < CKPT_MAX_BYTES ? (size_t)bound : CKPT_MAX_BYTES;
    if (tg_read_file_ex("tg_checkpoint_load", path, max_bytes, CKPT_HEADER, ckpt_file_header,
                        NULL, &bytes, &size))
        return tg_error();
    tg_status st = tg_checkpoint_parse(bytes, size, path, m, opt, state);
    free(bytes);
    return st;
}

tg_status tg_checkpoint_model_name(const char *path, char *name, size_t size) {
    const char *op = "tg_checkpoint_model_name";
    if (!path || !name || size == 0)
        return tg_fail(TG_ERR_ARG, "%s: argument '%s' is %s", op, !path ? "path" : "name",
                       !path || !name ? "NULL" : "0 bytes long");
    int fd;
    uint64_t file_size;
    if (tg_open_regular(op, path, CKPT_MAX_BYTES, &fd, &file_size)) return tg_error();
    /* The fixed header, then the model name's length and bytes. */
    uint8_t head[CKPT_HEADER + 4 + CKPT_MAX_NAME];
    size_t want = file_size < sizeof head ? (size_t)file_size : sizeof head;
    tg_status st = tg_read_at(op, path, fd, 0, head, want);
    close(fd);
    if (st) return st;
    tg_reader r = {.p = head, .size = want, .off = CKPT_HEADER};
    char model[CKPT_MAX_NAME + 1];
    if (want < CKPT_HEADER || memcmp(head, ckpt_magic, sizeof ckpt_magic) != 0 ||
        !read_string(&r, model))
        return BAD("%s: '%s' is not a tapegrad checkpoint", op, path);
    if (strlen(model) >= size)
        return tg_fail(TG_ERR_ARG, "%s: the model name '%s' needs %zu bytes; 'name' has %zu",
                       op, model, strlen(model) + 1, size);
    strcpy(name, model);
    return TG_OK;
}
