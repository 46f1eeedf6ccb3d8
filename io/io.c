/*
 * io/io.c — see io.h.
 */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The file rules (docs/ARCHITECTURE.md, "Errors"): open without blocking (a FIFO or a
 * device would otherwise hang the open or the read), refuse anything but a regular file,
 * check the size against the cap and the header against the size BEFORE reading the
 * payload, and check the memory is there before allocating it. */
tg_status tg_read_file_ex(const char *op, const char *path, size_t max_bytes,
                          size_t head_bytes, tg_header_check check, void *user,
                          uint8_t **bytes, size_t *size) {
    *bytes = NULL;
    *size = 0;
    int fd;
    uint64_t file_size;
    tg_status status = tg_open_regular(op, path, max_bytes, &fd, &file_size);
    if (status) return status;
    size_t n = (size_t)file_size;
    uint8_t *buf = NULL;
    if (check) {
        uint8_t head[64];
        size_t h = head_bytes < sizeof head ? head_bytes : sizeof head;
        if (h > n) h = n;
        if ((status = tg_read_at(op, path, fd, 0, head, h)) ||
            (status = check(head, h, file_size, path, user)))
            goto done;
    }
    char what[64];
    snprintf(what, sizeof what, "%s: reading a file", op);
    if (n >= TG_MEM_CHECK_MIN && (status = tg_mem_check(what, n))) goto done;
    buf = malloc(n ? n : 1);
    if (!buf) {
        status = tg_fail(TG_ERR_NOMEM, "%s: out of memory reading '%s' (%zu bytes)", op, path, n);
        goto done;
    }
    if ((status = tg_read_at(op, path, fd, 0, buf, n))) goto done;
    *bytes = buf;
    *size = n;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return status;
}

tg_status tg_read_file(const char *op, const char *path, size_t max_bytes, uint8_t **bytes,
                       size_t *size) {
    return tg_read_file_ex(op, path, max_bytes, 0, NULL, NULL, bytes, size);
}

tg_status tg_open_regular(const char *op, const char *path, uint64_t max_bytes, int *fd,
                          uint64_t *size) {
    *fd = -1;
    *size = 0;
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (f < 0) return tg_fail(TG_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0) {
        tg_status status = tg_fail(TG_ERR_IO, "%s: cannot stat '%s': %s", op, path,
                                   strerror(errno));
        close(f);
        return status;
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return tg_fail(TG_ERR_IO, "%s: '%s' is not a regular file (%s)", op, path,
                       S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "not a file");
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max_bytes) {
        close(f);
        return tg_fail(TG_ERR_IO, "%s: '%s' is %lld bytes; at most %llu are accepted", op,
                       path, (long long)st.st_size, (unsigned long long)max_bytes);
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return TG_OK;
}

tg_status tg_read_at(const char *op, const char *path, int fd, uint64_t off, void *buf,
                     size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return tg_fail(TG_ERR_IO, "%s: reading '%s' failed: %s", op, path, strerror(errno));
        if (k == 0)
            return tg_fail(TG_ERR_IO, "%s: '%s' ended early at byte %llu (was it changed "
                           "while being read?)", op, path, (unsigned long long)off);
        p += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return TG_OK;
}

static tg_status write_all(const char *op, int fd, const uint8_t *p, size_t n,
                           const char *path) {
    while (n > 0) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return tg_fail(TG_ERR_IO, "%s: writing '%s' failed: %s", op, path,
                           k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return TG_OK;
}

/* fsync the directory holding `path`, so the rename itself is durable. */
/* The directory part of path ("." when none); malloc'ed. */
char *tg_dir_of(const char *path) {
    size_t len = strlen(path);
    char *dir = malloc(len + 2);
    if (!dir) return NULL;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    return dir;
}

/* A save killed between mkstemp and rename (kill -9, power loss) leaves
 * "<path>.tmp.XXXXXX" behind. The next save of the same checkpoint removes them: only
 * names of exactly that form (6 mkstemp characters) are touched. One writer per
 * checkpoint path is assumed, as for the rename itself. */
static void remove_stale_temps(const char *path) {
    char *dir = tg_dir_of(path);
    if (!dir) return;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *n = e->d_name;
            if (strlen(n) != blen + 11 || strncmp(n, base, blen) != 0 ||
                strncmp(n + blen, ".tmp.", 5) != 0)
                continue;
            char full[4096];
            int k = snprintf(full, sizeof full, "%s/%s", dir, n);
            struct stat st;
            if (k > 0 && (size_t)k < sizeof full && lstat(full, &st) == 0 && S_ISREG(st.st_mode))
                unlink(full);
        }
        closedir(d);
    }
    free(dir);
}

static tg_status sync_parent_dir(const char *op, const char *path) {
    char *dir = tg_dir_of(path);
    if (!dir) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    tg_status st = TG_OK;
    if (fd < 0 || fsync(fd) != 0)
        st = tg_fail(TG_ERR_IO, "%s: cannot sync directory '%s': %s", op, dir,
                     strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return st;
}

tg_status tg_write_file_atomic(const char *op, const char *path, const uint8_t *bytes,
                               size_t n) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return tg_fail(TG_ERR_NOMEM, "%s: out of memory", op);
    remove_stale_temps(path);
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tg_status st = tg_fail(TG_ERR_IO, "%s: cannot create a temporary file next to '%s': "
                               "%s", op, path, strerror(errno));
        free(tmp);
        return st;
    }
    tg_status st = write_all(op, fd, bytes, n, tmp);
    if (st == TG_OK && fchmod(fd, 0644) != 0)
        st = tg_fail(TG_ERR_IO, "%s: chmod '%s': %s", op, tmp, strerror(errno));
    if (st == TG_OK && fsync(fd) != 0)
        st = tg_fail(TG_ERR_IO, "%s: fsync '%s': %s", op, tmp, strerror(errno));
    if (close(fd) != 0 && st == TG_OK)
        st = tg_fail(TG_ERR_IO, "%s: close '%s': %s", op, tmp, strerror(errno));
    if (st == TG_OK && rename(tmp, path) != 0)
        st = tg_fail(TG_ERR_IO, "%s: rename '%s' -> '%s': %s", op, tmp, path,
                     strerror(errno));
    if (st != TG_OK) unlink(tmp);
    else st = sync_parent_dir(op, path);
    free(tmp);
    return st;
}

bool tg_is_gzip(const void *bytes, size_t size) {
    const uint8_t *b = bytes;
    return size >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

tg_status tg_gunzip(const char *op, const char *what, const uint8_t *in, size_t in_size,
                    size_t max_out, bool prefix, uint8_t **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 16 + MAX_WBITS: expect a gzip wrapper (header and CRC-32 trailer). */
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return tg_fail(TG_ERR_NOMEM, "%s: cannot start zlib for '%s'", op, what);
    size_t cap = max_out < (1 << 16) ? (max_out ? max_out : 1) : (1 << 16), used = 0;
    uint8_t *buf = malloc(cap);
    tg_status st = TG_OK;
    if (!buf) {
        st = tg_fail(TG_ERR_NOMEM, "%s: out of memory inflating '%s'", op, what);
        goto done;
    }
    zs.next_in = (Bytef *)in;
    size_t in_left = in_size;
    for (;;) {
        if (zs.avail_in == 0 && in_left > 0) {
            /* avail_in is a uInt: feed huge inputs in pieces. */
            uInt chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.avail_in = chunk;
            in_left -= chunk;
        }
        if (prefix && used >= max_out) break;
        if (used == cap) {
            if (cap >= max_out) {
                st = tg_fail(TG_ERR_FORMAT, "%s: '%s' inflates to more than %zu bytes", op,
                             what, max_out);
                goto done;
            }
            size_t ncap = cap * 2 > max_out ? max_out : cap * 2;
            uint8_t *grown = realloc(buf, ncap);
            if (!grown) {
                st = tg_fail(TG_ERR_NOMEM, "%s: out of memory inflating '%s'", op, what);
                goto done;
            }
            buf = grown;
            cap = ncap;
        }
        size_t room = cap - used;
        zs.next_out = buf + used;
        zs.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        uInt before = zs.avail_out;
        int rc = inflate(&zs, Z_NO_FLUSH);
        used += before - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
            st = tg_fail(TG_ERR_FORMAT, "%s: '%s' is a truncated gzip stream", op, what);
            goto done;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            st = tg_fail(TG_ERR_FORMAT, "%s: '%s' is a corrupted gzip stream (%s)", op, what,
                         zs.msg ? zs.msg : "zlib error");
            goto done;
        }
    }
    *out = buf;
    *out_size = used;
    buf = NULL;
done:
    free(buf);
    inflateEnd(&zs);
    return st;
}

bool tg_reader_take(tg_reader *r, size_t n, const uint8_t **out) {
    if (n > r->size - r->off) return false;
    *out = r->p + r->off;
    r->off += n;
    return true;
}

size_t tg_reader_left(const tg_reader *r) { return r->size - r->off; }

bool tg_reader_u8(tg_reader *r, uint8_t *v) {
    const uint8_t *b;
    if (!tg_reader_take(r, 1, &b)) return false;
    *v = b[0];
    return true;
}

bool tg_reader_u32(tg_reader *r, uint32_t *v) {
    const uint8_t *b;
    if (!tg_reader_take(r, 4, &b)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

bool tg_reader_u64(tg_reader *r, uint64_t *v) {
    uint32_t lo, hi;
    if (!tg_reader_u32(r, &lo) || !tg_reader_u32(r, &hi)) return false;
    *v = (uint64_t)hi << 32 | lo;
    return true;
}

bool tg_reader_i64(tg_reader *r, int64_t *v) {
    uint64_t u;
    if (!tg_reader_u64(r, &u)) return false;
    memcpy(v, &u, sizeof u);
    return true;
}

bool tg_reader_f32(tg_reader *r, float *v) {
    uint32_t u;
    if (!tg_reader_u32(r, &u)) return false;
    memcpy(v, &u, sizeof u);
    return true;
}

/* Room for n more bytes (doubling); false, and the writer marked failed, when out of
 * memory. */
static bool writer_reserve(tg_writer *w, size_t n) {
    if (w->failed) return false;
    if (n <= w->cap - w->size) return true;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap - w->size < n) cap *= 2;
    uint8_t *grown = realloc(w->p, cap);
    if (!grown) {
        w->failed = true;
        return false;
    }
    w->p = grown;
    w->cap = cap;
    return true;
}

void tg_writer_bytes(tg_writer *w, const void *bytes, size_t n) {
    if (!writer_reserve(w, n)) return;
    if (n) memcpy(w->p + w->size, bytes, n);
    w->size += n;
}

void tg_writer_u8(tg_writer *w, uint8_t v) { tg_writer_bytes(w, &v, 1); }

void tg_writer_u32(tg_writer *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    tg_writer_bytes(w, b, 4);
}

void tg_writer_u64(tg_writer *w, uint64_t v) {
    tg_writer_u32(w, (uint32_t)v);
    tg_writer_u32(w, (uint32_t)(v >> 32));
}

void tg_writer_i64(tg_writer *w, int64_t v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    tg_writer_u64(w, u);
}

void tg_writer_f32(tg_writer *w, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    tg_writer_u32(w, u);
}

void tg_writer_floats(tg_writer *w, const float *x, int64_t n) {
    size_t start = w->size;
    /* Reserve all n floats at once, then store each little-endian in place. */
    size_t bytes = (size_t)n * 4;
    if (!writer_reserve(w, bytes)) return;
    uint8_t *b = w->p + start;
    for (int64_t i = 0; i < n; i++, b += 4) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        b[0] = (uint8_t)u;
        b[1] = (uint8_t)(u >> 8);
        b[2] = (uint8_t)(u >> 16);
        b[3] = (uint8_t)(u >> 24);
    }
    w->size += bytes;
}

void tg_writer_free(tg_writer *w) {
    free(w->p);
    memset(w, 0, sizeof *w);
}

void tg_floats_from_le(float *x, const uint8_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++, b += 4) {
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        memcpy(&x[i], &u, sizeof u);
    }
}
