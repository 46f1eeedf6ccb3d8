/*
 * fuzz/fuzz_safetensors.c — libFuzzer target for the safetensors loader. Each input is
 * parsed into a small store (parameters w (2, 3), b (3), buffer r (2)) four ways: strict
 * and partial, names as they are and with "model." stripped. A refused input must be
 * TG_ERR_FORMAT (or out of memory) with a message naming the loader, and leave every
 * value bit for bit unchanged; an accepted one must raise no error. ASan and UBSan watch
 * every read of the header, the JSON and the data.
 */
#include <tapegrad.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_params *store;
static tg_tensor *entries[3];

static void snapshot(float *out) {
    int n = 0;
    for (int i = 0; i < 3; i++)
        for (int64_t k = 0; k < entries[i]->numel; k++) out[n++] = entries[i]->data[k];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!store) {
        store = tg_params_new(TG_DEVICE_CPU);
        entries[0] = tg_params_add(store, "w", tg_shape2(2, 3));
        entries[1] = tg_params_add(store, "b", tg_shape1(3));
        entries[2] = tg_params_add_buffer(store, "r", tg_shape1(2), 1.0f);
        if (!entries[0] || !entries[1] || !entries[2]) abort();
    }
    for (int mode = 0; mode < 4; mode++) {
        tg_safetensors_opts o = {.partial = mode & 1, .strip_prefix = mode & 2 ? "model." : 0};
        tg_safetensors_report rep;
        float before[11], after[11];
        snapshot(before);
        tg_status st = tg_safetensors_parse(data, size, "fuzz", store, &o, &rep);
        if (st != TG_OK) {
            if (st != TG_ERR_FORMAT && st != TG_ERR_NOMEM) abort();
            if (!strstr(tg_error_message(), "tg_safetensors_load")) abort();
            snapshot(after);
            if (memcmp(before, after, sizeof before) != 0) abort();
        } else {
            if (tg_error() != TG_OK) abort();
            if (rep.loaded + rep.missing != 3 || (!o.partial && rep.missing + rep.unexpected))
                abort();
        }
        tg_error_clear();
    }
    return 0;
}
