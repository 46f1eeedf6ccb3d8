/*
 * fuzz/fuzz_idx.c — libFuzzer target for the IDX loader (raw and gzip). Any input must
 * give either a valid tg_idx whose size matches its dims, or NULL with a TG_ERR_FORMAT
 * message; never a crash, a leak or an out-of-bounds access (ASan watches).
 */
#include <tapegrad.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tg_idx *idx = tg_idx_parse(data, size, "fuzz");
    if (idx) {
        int64_t n = 1;
        for (int i = 0; i < idx->ndim; i++) n *= idx->dim[i];
        if (n != idx->numel || idx->ndim < 1 || idx->ndim > TG_MAX_DIMS) abort();
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < idx->numel; i++) sink ^= idx->data[i]; /* touch every byte */
        (void)sink;
        if (tg_error() != TG_OK) abort();
    } else {
        tg_status st = tg_error();
        if (st != TG_ERR_FORMAT && st != TG_ERR_NOMEM) abort();
        if (!strstr(tg_error_message(), "tg_idx_load")) abort();
    }
    tg_idx_free(idx);
    tg_error_clear();
    return 0;
}
