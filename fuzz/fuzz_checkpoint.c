/*
 * fuzz/fuzz_checkpoint.c — libFuzzer target for the checkpoint loader. Each input is
 * parsed as it is (the checksum almost always refuses it), then with its last four bytes
 * replaced by the right CRC-32, so the fuzzer reaches every field behind the checksum
 * (once with the optimizer and train state, once with parameters only). A refused input
 * must leave the model, optimizer and train state bit for bit unchanged (checked here);
 * an accepted one must have restored a consistent state.
 */
#include "fuzz_model.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tg_model *model;
static tg_optim *opt;

/* Every parameter value plus the optimizer's lr and step count, as bytes. */
static size_t snapshot(uint8_t *out, size_t cap) {
    tg_params *ps = tg_model_params(model);
    size_t n = 0;
    for (int i = 0; i < tg_params_count(ps); i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        size_t bytes = (size_t)t->numel * sizeof(float);
        if (n + bytes > cap) abort();
        memcpy(out + n, t->data, bytes);
        n += bytes;
    }
    float lr = tg_optim_lr(opt);
    int64_t steps = tg_optim_steps(opt);
    if (n + sizeof lr + sizeof steps > cap) abort();
    memcpy(out + n, &lr, sizeof lr);
    memcpy(out + n + sizeof lr, &steps, sizeof steps);
    return n + sizeof lr + sizeof steps;
}

static void parse_once(const uint8_t *bytes, size_t size, bool full) {
    static uint8_t before[4096], after[4096];
    tg_train_state state, state_before;
    memset(&state, 0xAB, sizeof state);
    state_before = state;
    size_t n = snapshot(before, sizeof before);
    tg_status st = tg_checkpoint_parse(bytes, size, "fuzz", model, full ? opt : NULL,
                                       full ? &state : NULL);
    if (st != TG_OK) {
        if (st != TG_ERR_FORMAT && st != TG_ERR_NOMEM) abort();
        if (!strstr(tg_error_message(), "tg_checkpoint_load")) abort();
        if (snapshot(after, sizeof after) != n || memcmp(before, after, n) != 0) abort();
        if (memcmp(&state, &state_before, sizeof state) != 0) abort();
    } else if (tg_error() != TG_OK) {
        abort();
    } else if (full ? state.epoch < 0 || state.data.cursor < 0
                    : memcmp(&state, &state_before, sizeof state) != 0) {
        abort();
    }
    tg_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) {
        model = fuzz_model(&opt);
        if (!model || !opt) abort();
    }
    parse_once(data, size, true);
    if (size >= 4) {
        uint8_t *fixed = malloc(size);
        if (!fixed) return 0;
        memcpy(fixed, data, size);
        uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), fixed, (uInt)(size - 4));
        for (int i = 0; i < 4; i++) fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
        parse_once(fixed, size, true);
        parse_once(fixed, size, false); /* parameters only */
        free(fixed);
    }
    return 0;
}
