/*
 * core/params.c — the parameter store (DESIGN §2). Trainable values, their gradients and
 * optimizer state are each one flat buffer; every parameter is a view at an offset.
 * Buffers (running statistics) live in a second flat area. Tensor structs are allocated
 * one by one so user pointers stay valid when a later add grows the flat buffers.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tg_params {
    tg_device device;
    tg_tensor **tensors; /* in insertion order */
    int64_t *offsets;    /* into values/grads (trainable) or buffers */
    int count, cap;
    float *values, *grads, *buffers, *state;
    int64_t numel, numel_cap;            /* trainable */
    int64_t buffer_numel, buffer_cap;
    int state_slots;
    /* tg_params_place_grads: grads lives in memory the store does not own (the shared
     * gradient segment of data-parallel training). */
    bool grads_external;
    /* tg_params_watch: told first thing in tg_params_free (a tg_dist attached to the
     * store forgets it, so it never touches a freed store). */
    void (*gone)(void *);
    void *gone_arg;
    char label[64]; /* the owning model's name, for messages (tg_params_set_label) */
};

void tg_params_set_label(tg_params *ps, const char *label) {
    if (ps && label) snprintf(ps->label, sizeof ps->label, "%s", label);
}

tg_params *tg_params_new(tg_device device) {
    if (device != TG_DEVICE_CPU && device != TG_DEVICE_CUDA) {
        tg_fail(TG_ERR_ARG, "tg_params_new: unknown device %d", (int)device);
        return NULL;
    }
    if (device == TG_DEVICE_CUDA && tg_cuda_check() != TG_OK) return NULL;
    tg_params *ps = calloc(1, sizeof *ps);
    if (!ps) tg_fail(TG_ERR_NOMEM, "tg_params_new: out of memory");
    else ps->device = device;
    return ps;
}

void tg_params_free(tg_params *ps) {
    if (!ps) return;
    if (ps->gone) ps->gone(ps->gone_arg);
    for (int i = 0; i < ps->count; i++) {
        free((char *)ps->tensors[i]->name);
        free(ps->tensors[i]);
    }
    free(ps->tensors);
    free(ps->offsets);
    tg_device_free(ps->device, ps->values);
    if (!ps->grads_external) tg_device_free(ps->device, ps->grads);
    tg_device_free(ps->device, ps->buffers);
    tg_device_free(ps->device, ps->state);
    free(ps);
}

/* Grow a flat device buffer from `used` to at least `need` floats, keeping contents;
 * new space is zeroed. */
static bool grow(tg_device device, float **buf, int64_t used, int64_t need, int64_t cap) {
    float *fresh = tg_device_alloc(device, (size_t)cap * sizeof(float));
    if (!fresh) return false;
    if (used && tg_device_copy(device, fresh, device, *buf, (size_t)used * sizeof(float)))
        goto fail;
    if (tg_device_zero(device, fresh + used, (size_t)(cap - used) * sizeof(float))) goto fail;
    (void)need;
    tg_device_free(device, *buf);
    *buf = fresh;
    return true;
fail:
    tg_device_free(device, fresh);
    return false;
}

/* Re-point every tensor view after a flat buffer moved. */
static void repoint(tg_params *ps) {
    for (int i = 0; i < ps->count; i++) {
        tg_tensor *t = ps->tensors[i];
        if (t->requires_grad) {
            t->data = ps->values + ps->offsets[i];
            t->grad = ps->grads + ps->offsets[i];
        } else {
            t->data = ps->buffers + ps->offsets[i];
        }
    }
}

static tg_tensor *params_add(tg_params *ps, const char *name, tg_shape shape, bool trainable,
                             float fill) {
    const char *fn = trainable ? "tg_params_add" : "tg_params_add_buffer";
    if (!ps) {
        tg_fail(TG_ERR_ARG, "%s: store is NULL", fn);
        return NULL;
    }
    /* A constructor adding many parameters stops at the first failure: while an error
     * is pending, nothing more is allocated (the message of the failure stands). */
    if (tg_error() != TG_OK) return NULL;
    char fnbuf[160];
    if (ps->label[0]) {
        snprintf(fnbuf, sizeof fnbuf, "model '%s': %s", ps->label, fn);
        fn = fnbuf;
    }
    if (!name || !*name) {
        tg_fail(TG_ERR_ARG, "%s: a parameter needs a non-empty name", fn);
        return NULL;
    }
    if (tg_params_find(ps, name)) {
        tg_fail(TG_ERR_ARG, "%s: a parameter named '%s' already exists", fn, name);
        return NULL;
    }
    if (trainable && ps->grads_external) {
        tg_fail(TG_ERR_STATE, "%s('%s'): the gradient store is shared with the other ranks "
                "(tg_dist_attach); add every parameter before attaching", fn, name);
        return NULL;
    }
    if (ps->state) {
        tg_fail(TG_ERR_STATE, "%s('%s'): an optimizer already holds state for this store; "
                "add every parameter before creating the optimizer", fn, name);
        return NULL;
    }
    char what[96];
    snprintf(what, sizeof what, "parameter '%s'", name);
    int64_t n, padded, total;
    if (!tg_shape_check(fn, what, shape, &n, NULL)) return NULL;
    padded = (n + 15) & ~(int64_t)15; /* keep each view 64-byte aligned (n <= 2^40) */
    int64_t *used = trainable ? &ps->numel : &ps->buffer_numel;
    int64_t *cap = trainable ? &ps->numel_cap : &ps->buffer_cap;
    if (!tg_add_i64(*used, padded, &total) || total > TG_MAX_NUMEL) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "%s('%s'): shape %s brings the store to more than TG_MAX_NUMEL "
                "= 2^40 elements", fn, name, tg_shape_str(shape, s, sizeof s));
        return NULL;
    }
    int64_t newcap = *cap;
    if (total > *cap) {
        newcap = *cap ? 2 * *cap : 1024;
        while (newcap < total) newcap *= 2; /* total <= 2^40: no overflow */
        /* values + grads (trainable) or buffers, plus the old copies while growing. */
        size_t bytes = (size_t)(newcap + *cap) * sizeof(float) * (trainable ? 2 : 1);
        char s[80], who[200];
        snprintf(who, sizeof who, "%s('%s', %s)", fn, name, tg_shape_str(shape, s, sizeof s));
        if (ps->device == TG_DEVICE_CPU && tg_mem_check(who, bytes) != TG_OK) return NULL;
    }
    if (ps->count == ps->cap) {
        int ncap = ps->cap ? 2 * ps->cap : 16;
        tg_tensor **tensors = realloc(ps->tensors, (size_t)ncap * sizeof *tensors);
        if (tensors) ps->tensors = tensors;
        int64_t *offsets = realloc(ps->offsets, (size_t)ncap * sizeof *offsets);
        if (offsets) ps->offsets = offsets;
        if (!tensors || !offsets) {
            tg_fail(TG_ERR_NOMEM, "%s: out of memory", fn);
            return NULL;
        }
        ps->cap = ncap;
    }
    tg_tensor *t = calloc(1, sizeof *t);
    char *copy = malloc(strlen(name) + 1);
    if (!t || !copy) {
        free(t);
        free(copy);
        tg_fail(TG_ERR_NOMEM, "%s: out of memory", fn);
        return NULL;
    }
    strcpy(copy, name);
    if (total > *cap) {
        bool ok = trainable ? grow(ps->device, &ps->values, *used, *used + padded, newcap) &&
                                  grow(ps->device, &ps->grads, *used, *used + padded, newcap)
                            : grow(ps->device, &ps->buffers, *used, *used + padded, newcap);
        if (!ok) {
            free(t);
            free(copy);
            return NULL;
        }
        *cap = newcap;
    }
    t->shape = shape;
    t->numel = n;
    t->device = ps->device;
    t->requires_grad = trainable;
    t->is_param = true;
    t->name = copy;
    t->id = -1;
    ps->offsets[ps->count] = *used;
    ps->tensors[ps->count++] = t;
    *used += padded;
    repoint(ps);
    if (!trainable && fill != 0.0f) {
        float *host = malloc((size_t)n * sizeof *host);
        if (!host) {
            tg_fail(TG_ERR_NOMEM, "%s: out of memory", fn);
            return NULL;
        }
        for (int64_t i = 0; i < n; i++) host[i] = fill;
        tg_device_copy(ps->device, t->data, TG_DEVICE_CPU, host, (size_t)n * sizeof *host);
        free(host);
    }
    return t;
}

tg_tensor *tg_params_add(tg_params *ps, const char *name, tg_shape shape) {
    return params_add(ps, name, shape, true, 0.0f);
}

tg_tensor *tg_params_add_buffer(tg_params *ps, const char *name, tg_shape shape, float fill) {
    return params_add(ps, name, shape, false, fill);
}

int tg_params_count(const tg_params *ps) { return ps ? ps->count : 0; }

tg_tensor *tg_params_at(const tg_params *ps, int i) {
    return ps && i >= 0 && i < ps->count ? ps->tensors[i] : NULL;
}

tg_tensor *tg_params_find(const tg_params *ps, const char *name) {
    if (!ps || !name) return NULL;
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->tensors[i]->name, name) == 0) return ps->tensors[i];
    return NULL;
}

int64_t tg_params_numel(const tg_params *ps) {
    if (!ps) return 0;
    int64_t n = 0; /* the true count, without alignment padding */
    for (int i = 0; i < ps->count; i++)
        if (ps->tensors[i]->requires_grad) n += ps->tensors[i]->numel;
    return n;
}

int64_t tg_params_buffer_numel(const tg_params *ps) {
    if (!ps) return 0;
    int64_t n = 0;
    for (int i = 0; i < ps->count; i++)
        if (!ps->tensors[i]->requires_grad) n += ps->tensors[i]->numel;
    return n;
}

/* Length of the flat trainable buffers, padding included (what optimizers loop over;
 * padding holds zeros in values, grads and state, so it stays zero). */
int64_t tg_params_flat_numel(const tg_params *ps) { return ps ? ps->numel : 0; }

tg_device tg_params_device(const tg_params *ps) { return ps ? ps->device : TG_DEVICE_CPU; }
float *tg_params_data(tg_params *ps) { return ps ? ps->values : NULL; }
float *tg_params_grad(tg_params *ps) { return ps ? ps->grads : NULL; }
float *tg_params_buffers(tg_params *ps) { return ps ? ps->buffers : NULL; }

tg_status tg_params_zero_grad(tg_params *ps) {
    if (!ps || !ps->grads) return TG_OK;
    return tg_device_zero(ps->device, ps->grads, (size_t)ps->numel * sizeof(float));
}

void tg_params_watch(tg_params *ps, void (*gone)(void *), void *arg) {
    if (!ps) return;
    ps->gone = gone;
    ps->gone_arg = gone ? arg : NULL;
}

void *tg_params_watcher(const tg_params *ps) { return ps ? ps->gone_arg : NULL; }

tg_status tg_params_place_grads(tg_params *ps, float *buf) {
    if (!ps) return tg_fail(TG_ERR_ARG, "tg_params_place_grads: store is NULL");
    if (ps->device != TG_DEVICE_CPU)
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_params_place_grads: CPU stores only");
    size_t bytes = (size_t)ps->numel * sizeof(float);
    float *dst = buf;
    if (!dst) { /* back into memory of the store's own */
        if (!ps->grads_external) return TG_OK;
        dst = tg_device_alloc(ps->device, (size_t)(ps->numel_cap ? ps->numel_cap : 1) *
                                              sizeof(float));
        if (!dst) return tg_error();
        memset(dst, 0, (size_t)ps->numel_cap * sizeof(float));
    }
    if (bytes && ps->grads != dst) memcpy(dst, ps->grads, bytes);
    if (!ps->grads_external) tg_device_free(ps->device, ps->grads);
    ps->grads = dst;
    ps->grads_external = buf != NULL;
    repoint(ps);
    return TG_OK;
}

float *tg_params_state(tg_params *ps, int slots) {
    if (!ps || slots <= 0) return NULL;
    if (ps->state) {
        if (ps->state_slots != slots) {
            tg_fail(TG_ERR_STATE, "parameter store already holds state for another optimizer "
                    "(%d slots, asked for %d)", ps->state_slots, slots);
            return NULL;
        }
        return ps->state;
    }
    size_t bytes;
    if (!tg_size_bytes("optimizer state", "slots x parameters", (int64_t)slots * (ps->numel ? ps->numel : 1),
                       sizeof(float), &bytes))
        return NULL;
    ps->state = tg_device_alloc(ps->device, bytes);
    if (!ps->state) return NULL;
    if (tg_device_zero(ps->device, ps->state, bytes) != TG_OK) {
        tg_device_free(ps->device, ps->state);
        ps->state = NULL;
        return NULL;
    }
    ps->state_slots = slots;
    return ps->state;
}

int tg_params_state_slots(const tg_params *ps) { return ps ? ps->state_slots : 0; }
