/*
 * io/io.h — internals shared by the loaders and the checkpoint writer: whole-file reads
 * with a size cap, gzip inflation with a size cap, and a bounds-checked little-endian
 * byte reader / growable writer. Every length read from a file is checked against the
 * bytes that remain before anything is allocated from it.
 */
#ifndef TG_IO_H
#define TG_IO_H

#include "../core/core.h"

/* Reads all of `path` into a malloc'ed buffer (*size bytes). Files over max_bytes are
 * refused. TG_ERR_IO with a message naming `op` and the path on failure. */
tg_status tg_read_file(const char *op, const char *path, size_t max_bytes, uint8_t **bytes,
                       size_t *size);

/* Opens `path` read-only without blocking (O_NONBLOCK: a FIFO or a device never hangs the
 * open) and checks, before reading anything, that it is a regular file of at most
 * max_bytes. *fd (close it) and *size on success; TG_ERR_IO naming `op` and the path. */
tg_status tg_open_regular(const char *op, const char *path, uint64_t max_bytes, int *fd,
                          uint64_t *size);
/* Exactly n bytes at offset off of an open file; TG_ERR_IO naming `op` and the path when
 * it is unreadable or shorter than that (changed since it was opened). */
tg_status tg_read_at(const char *op, const char *path, int fd, uint64_t off, void *buf,
                     size_t n);

/* Writes n bytes to `path` atomically: a fresh temporary file next to it
 * ("<path>.tmp.XXXXXX", mkstemp), written, chmod 0644, fsynced, closed, renamed over
 * `path`, then the directory fsynced. A crash at any instant leaves the old file or the
 * new one. TG_ERR_IO with a message naming `op` and the file on failure (the temporary
 * file is removed). Temporary files of the same path left by a killed save are removed
 * first. */
tg_status tg_write_file_atomic(const char *op, const char *path, const uint8_t *bytes,
                               size_t n);
/* The directory part of path ("." when none); malloc'ed (NULL when out of memory). */
char *tg_dir_of(const char *path);

/* Validates the first bytes of a file (at most 64) against its size before the payload
 * is read; returns a status with a message naming `path`. */
typedef tg_status (*tg_header_check)(const uint8_t *head, size_t head_size,
                                     uint64_t file_size, const char *path, void *user);
/* tg_read_file that opens with O_NONBLOCK (a FIFO never hangs), refuses non-regular
 * files, checks the size against max_bytes, runs `check` (may be NULL) on the first
 * head_bytes bytes, and checks the memory before reading the rest. */
tg_status tg_read_file_ex(const char *op, const char *path, size_t max_bytes,
                          size_t head_bytes, tg_header_check check, void *user,
                          uint8_t **bytes, size_t *size);

/* True when the bytes start with the gzip magic (1f 8b). */
bool tg_is_gzip(const void *bytes, size_t size);
/* Inflates a gzip stream into a malloc'ed buffer, refusing output over max_out bytes
 * (a decompression bomb) and truncated or corrupted streams (TG_ERR_FORMAT). With
 * prefix, stops quietly after the first max_out bytes (to read a header). */
tg_status tg_gunzip(const char *op, const char *what, const uint8_t *in, size_t in_size,
                    size_t max_out, bool prefix, uint8_t **out, size_t *out_size);

/* A cursor over bytes; every take checks what remains. */
typedef struct tg_reader {
    const uint8_t *p;
    size_t size, off;
} tg_reader;

bool tg_reader_take(tg_reader *r, size_t n, const uint8_t **out);
bool tg_reader_u8(tg_reader *r, uint8_t *v);
bool tg_reader_u32(tg_reader *r, uint32_t *v);   /* little-endian */
bool tg_reader_u64(tg_reader *r, uint64_t *v);   /* little-endian */
bool tg_reader_i64(tg_reader *r, int64_t *v);
bool tg_reader_f32(tg_reader *r, float *v);
size_t tg_reader_left(const tg_reader *r);

/* A growable byte buffer; `failed` sticks after the first allocation failure. */
typedef struct tg_writer {
    uint8_t *p;
    size_t size, cap;
    bool failed;
} tg_writer;

void tg_writer_bytes(tg_writer *w, const void *bytes, size_t n);
void tg_writer_u8(tg_writer *w, uint8_t v);
void tg_writer_u32(tg_writer *w, uint32_t v);
void tg_writer_u64(tg_writer *w, uint64_t v);
void tg_writer_i64(tg_writer *w, int64_t v);
void tg_writer_f32(tg_writer *w, float v);
/* n floats, little-endian. */
void tg_writer_floats(tg_writer *w, const float *x, int64_t n);
void tg_writer_free(tg_writer *w);

/* n little-endian floats from bytes into x. */
void tg_floats_from_le(float *x, const uint8_t *bytes, int64_t n);

#endif
