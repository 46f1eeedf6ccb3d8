/*
 * io/dataset.c — labelled datasets in host memory and the minibatch iterator.
 *
 * Shuffling: epoch e visits the examples in the order of a Fisher-Yates permutation
 * drawn from an xoshiro256** generator seeded with mix(seed, e). The iterator's whole
 * state is therefore (seed, epoch, cursor): a checkpoint stores those three numbers and
 * tg_loader_seek rebuilds the same permutation, so a resumed run sees exactly the batches
 * the uninterrupted run would have seen.
 */
#include "io.h"

#include <stdlib.h>
#include <string.h>

struct tg_dataset {
    int64_t n;
    tg_shape example;
    int64_t example_numel;
    int num_classes;
    float *x;
    int32_t *y;
};

struct tg_loader {
    const tg_dataset *ds;
    int batch;
    bool shuffle;
    tg_loader_pos pos;
    int64_t *perm;        /* this epoch's order */
    int64_t perm_epoch;   /* the epoch perm was drawn for; -1 none */
    int32_t *labels;      /* the current batch's labels */
    float *staging;       /* the current batch's examples, gathered on the host */
    int rank, world;      /* tg_loader_shard: this rank's slice of every global batch */
    int64_t last_local, last_global;
};

static tg_dataset *dataset_alloc(const char *op, int64_t n, tg_shape example,
                                 int num_classes) {
    char s[80];
    if (n <= 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'n' is %lld; a dataset needs at least one example",
                op, (long long)n);
        return NULL;
    }
    if (num_classes <= 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'num_classes' is %d; it must be > 0", op,
                num_classes);
        return NULL;
    }
    if (example.ndim < 0 || example.ndim > TG_MAX_DIMS - 1) {
        tg_fail(TG_ERR_SHAPE, "%s: an example has %d dims; at most %d (the batch dim is "
                "added)", op, example.ndim, TG_MAX_DIMS - 1);
        return NULL;
    }
    for (int i = 0; i < example.ndim; i++) {
        if (example.dim[i] <= 0) {
            tg_fail(TG_ERR_SHAPE, "%s: example shape %s has a dim <= 0", op,
                    tg_shape_str(example, s, sizeof s));
            return NULL;
        }
    }
    /* The whole dataset is one (n, example...) tensor's worth of floats: checked as one. */
    tg_shape all = {.ndim = example.ndim + 1, .dim = {n}};
    for (int i = 0; i < example.ndim; i++) all.dim[i + 1] = example.dim[i];
    size_t xbytes;
    if (!tg_shape_check(op, "the dataset", all, NULL, &xbytes)) return NULL;
    char what[128];
    snprintf(what, sizeof what, "%s: %lld examples of %s", op, (long long)n,
             tg_shape_str(example, s, sizeof s));
    if (tg_mem_check(what, xbytes + (size_t)n * sizeof(int32_t)) != TG_OK) return NULL;
    tg_dataset *ds = calloc(1, sizeof *ds);
    int64_t numel = tg_shape_numel(example);
    if (ds) {
        ds->x = malloc(xbytes);
        ds->y = malloc((size_t)n * sizeof(int32_t));
    }
    if (!ds || !ds->x || !ds->y) {
        tg_dataset_free(ds);
        tg_fail(TG_ERR_NOMEM, "%s: out of memory for %lld examples", op, (long long)n);
        return NULL;
    }
    ds->n = n;
    ds->example = example;
    ds->example_numel = numel;
    ds->num_classes = num_classes;
    return ds;
}

/* Labels must name a class; the first bad one is reported. */
static bool labels_valid(const char *op, const char *what, int64_t n, int num_classes,
                         const int32_t *y32, const uint8_t *y8) {
    for (int64_t i = 0; i < n; i++) {
        int64_t v = y32 ? y32[i] : y8[i];
        if (v < 0 || v >= num_classes) {
            tg_fail(TG_ERR_FORMAT, "%s: %s label %lld is %lld; labels must be in [0, %d)", op,
                    what, (long long)i, (long long)v, num_classes);
            return false;
        }
    }
    return true;
}

tg_dataset *tg_dataset_new(int64_t n, tg_shape example, const float *x, const int32_t *y,
                           int num_classes) {
    const char *op = "tg_dataset_new";
    if (!x || !y) {
        tg_fail(TG_ERR_ARG, "%s: argument '%s' is NULL", op, x ? "y" : "x");
        return NULL;
    }
    if (n > 0 && num_classes > 0 && !labels_valid(op, "argument 'y':", n, num_classes, y, NULL))
        return NULL;
    tg_dataset *ds = dataset_alloc(op, n, example, num_classes);
    if (!ds) return NULL;
    memcpy(ds->x, x, (size_t)(n * ds->example_numel) * sizeof(float));
    memcpy(ds->y, y, (size_t)n * sizeof(int32_t));
    return ds;
}

tg_dataset *tg_dataset_from_idx(const tg_idx *images, const tg_idx *labels, int num_classes,
                                float mean, float std) {
    const char *op = "tg_dataset_from_idx";
    if (!images || !labels) {
        tg_fail(TG_ERR_ARG, "%s: argument '%s' is NULL", op, images ? "labels" : "images");
        return NULL;
    }
    if (images->ndim != 3 && images->ndim != 4) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'images' has %d dims; expected (n, H, W) or "
                "(n, C, H, W)", op, images->ndim);
        return NULL;
    }
    if (labels->ndim != 1 || labels->dim[0] != images->dim[0]) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'labels' has %d dims and %lld entries; expected "
                "one dim of %lld (one label per image)", op, labels->ndim,
                (long long)labels->dim[0], (long long)images->dim[0]);
        return NULL;
    }
    int64_t n = images->dim[0];
    if (num_classes > 0 && !labels_valid(op, "labels:", n, num_classes, NULL, labels->data))
        return NULL;
    tg_shape example = images->ndim == 3
                           ? tg_shape3(1, images->dim[1], images->dim[2])
                           : tg_shape3(images->dim[1], images->dim[2], images->dim[3]);
    tg_dataset *ds = dataset_alloc(op, n, example, num_classes);
    if (!ds) return NULL;
    float scale = 1.0f / 255.0f, inv_std = std != 0.0f ? 1.0f / std : 1.0f;
    /* A lookup table: every byte value maps to one float, the same on every run. */
    float table[256];
    for (int v = 0; v < 256; v++) table[v] = ((float)v * scale - mean) * inv_std;
    int64_t total = n * ds->example_numel;
    for (int64_t i = 0; i < total; i++) ds->x[i] = table[images->data[i]];
    for (int64_t i = 0; i < n; i++) ds->y[i] = labels->data[i];
    return ds;
}

/* dir/name, or dir/name.gz when only that exists. */
static tg_idx *load_either(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 8;
    char *path = malloc(len);
    if (!path) {
        tg_fail(TG_ERR_NOMEM, "tg_mnist_load: out of memory");
        return NULL;
    }
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
    } else {
        snprintf(path, len, "%s/%s.gz", dir, name);
        f = fopen(path, "rb");
        if (f) {
            fclose(f);
        } else {
            tg_fail(TG_ERR_IO, "tg_mnist_load: neither '%s/%s' nor '%s' exists; hint: run "
                    "tools/fetch_mnist.sh (writes ./data/mnist) or pass the directory "
                    "holding the MNIST files", dir, name, path);
            free(path);
            return NULL;
        }
    }
    tg_idx *idx = tg_idx_load(path);
    free(path);
    return idx;
}

tg_dataset *tg_mnist_load(const char *dir, bool train) {
    if (!dir) {
        tg_fail(TG_ERR_ARG, "tg_mnist_load: argument 'dir' is NULL");
        return NULL;
    }
    const char *img = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    tg_idx *images = load_either(dir, img);
    tg_idx *labels = images ? load_either(dir, lab) : NULL;
    tg_dataset *ds = NULL;
    if (images && labels) {
        if (images->ndim != 3 || images->dim[1] != 28 || images->dim[2] != 28)
            tg_fail(TG_ERR_FORMAT, "tg_mnist_load: '%s/%s' holds %d-dim images of %lld x "
                    "%lld; MNIST images are (n, 28, 28)", dir, img, images->ndim,
                    (long long)images->dim[1], (long long)(images->ndim > 2 ? images->dim[2] : 0));
        else
            ds = tg_dataset_from_idx(images, labels, 10, 0.1307f, 0.3081f);
    }
    tg_idx_free(images);
    tg_idx_free(labels);
    return ds;
}

void tg_dataset_free(tg_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->y);
    free(ds);
}

int64_t tg_dataset_size(const tg_dataset *ds) { return ds ? ds->n : 0; }
tg_shape tg_dataset_example_shape(const tg_dataset *ds) { return ds ? ds->example : tg_shape0(); }
int tg_dataset_num_classes(const tg_dataset *ds) { return ds ? ds->num_classes : 0; }
const float *tg_dataset_x(const tg_dataset *ds) { return ds ? ds->x : NULL; }
const int32_t *tg_dataset_y(const tg_dataset *ds) { return ds ? ds->y : NULL; }

/* ---------------------------------------------------------------- the loader */

tg_loader *tg_loader_new(const tg_dataset *ds, int batch, bool shuffle, uint64_t seed) {
    if (!ds) {
        tg_fail(TG_ERR_ARG, "tg_loader_new: argument 'ds' is NULL");
        return NULL;
    }
    if (batch <= 0) {
        tg_fail(TG_ERR_ARG, "tg_loader_new: argument 'batch' is %d; it must be > 0", batch);
        return NULL;
    }
    /* A batch larger than the dataset is one batch of the whole dataset per epoch (as
     * PyTorch's DataLoader): the buffers never need more than n examples. */
    int64_t most = batch < ds->n ? batch : ds->n;
    size_t staging_bytes;
    if (!tg_size_bytes("tg_loader_new", "the batch buffer", most * ds->example_numel,
                       sizeof(float), &staging_bytes))
        return NULL;
    char what[128];
    snprintf(what, sizeof what, "tg_loader_new: a batch of %lld examples", (long long)most);
    if (tg_mem_check(what, staging_bytes + (size_t)ds->n * sizeof(int64_t)) != TG_OK)
        return NULL;
    tg_loader *ld = calloc(1, sizeof *ld);
    if (ld) {
        ld->perm = malloc((size_t)ds->n * sizeof *ld->perm);
        ld->labels = malloc((size_t)most * sizeof *ld->labels);
        ld->staging = malloc(staging_bytes);
    }
    if (!ld || !ld->perm || !ld->labels || !ld->staging) {
        tg_loader_free(ld);
        tg_fail(TG_ERR_NOMEM, "tg_loader_new: out of memory for a batch of %lld examples of "
                "%lld floats", (long long)most, (long long)ds->example_numel);
        return NULL;
    }
    ld->ds = ds;
    ld->batch = batch;
    ld->shuffle = shuffle;
    ld->pos = (tg_loader_pos){.seed = seed, .epoch = 0, .cursor = 0};
    ld->perm_epoch = -1;
    ld->world = 1;
    return ld;
}

tg_status tg_loader_shard(tg_loader *ld, int rank, int world) {
    if (!ld) return tg_fail(TG_ERR_ARG, "tg_loader_shard: argument 'ld' is NULL");
    if (world < 1 || rank < 0 || rank >= world || world > ld->batch)
        return tg_fail(TG_ERR_ARG, "tg_loader_shard: rank %d of %d ranks with a global batch "
                       "of %d; hint: every rank needs at least one example of each batch",
                       rank, world, ld->batch);
    ld->rank = rank;
    ld->world = world;
    return TG_OK;
}

void tg_loader_last_batch(const tg_loader *ld, int64_t *local, int64_t *global) {
    if (local) *local = ld ? ld->last_local : 0;
    if (global) *global = ld ? ld->last_global : 0;
}

void tg_loader_free(tg_loader *ld) {
    if (!ld) return;
    free(ld->perm);
    free(ld->labels);
    free(ld->staging);
    free(ld);
}

/* Draws epoch `epoch`'s order (the identity without shuffling). */
static void loader_draw(tg_loader *ld, int64_t epoch) {
    int64_t n = ld->ds->n;
    for (int64_t i = 0; i < n; i++) ld->perm[i] = i;
    if (ld->shuffle) {
        tg_rng rng;
        /* A distinct, well-mixed stream per (seed, epoch). */
        tg_rng_seed(&rng, ld->pos.seed ^ ((uint64_t)epoch * 0x9e3779b97f4a7c15ULL));
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = tg_rng_below(&rng, i + 1);
            int64_t t = ld->perm[i];
            ld->perm[i] = ld->perm[j];
            ld->perm[j] = t;
        }
    }
    ld->perm_epoch = epoch;
}

bool tg_loader_next(tg_loader *ld, tg_ctx *ctx, tg_tensor **x, const int32_t **y) {
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!ld || !ctx || !x || !y) {
        tg_fail(TG_ERR_ARG, "tg_loader_next: argument '%s' is NULL",
                !ld ? "ld" : !ctx ? "ctx" : !x ? "x" : "y");
        return false;
    }
    const tg_dataset *ds = ld->ds;
    /* Sharded: a last global batch smaller than the world is skipped by every rank. */
    if (ld->pos.cursor >= ds->n || (ld->world > 1 && ds->n - ld->pos.cursor < ld->world)) {
        ld->pos.epoch++;
        ld->pos.cursor = 0;
        return false;
    }
    if (ld->perm_epoch != ld->pos.epoch) loader_draw(ld, ld->pos.epoch);
    int64_t g = ds->n - ld->pos.cursor < ld->batch ? ds->n - ld->pos.cursor : ld->batch;
    /* This rank's slice [g r / N, g (r + 1) / N) of the global batch (all of it at N 1). */
    int64_t first = g * ld->rank / ld->world, b = g * (ld->rank + 1) / ld->world - first;
    int64_t en = ds->example_numel;
    for (int64_t i = 0; i < b; i++) {
        int64_t k = ld->perm[ld->pos.cursor + first + i];
        memcpy(ld->staging + i * en, ds->x + k * en, (size_t)en * sizeof(float));
        ld->labels[i] = ds->y[k];
    }
    tg_shape shape = {.ndim = ds->example.ndim + 1};
    shape.dim[0] = b;
    for (int i = 0; i < ds->example.ndim; i++) shape.dim[i + 1] = ds->example.dim[i];
    tg_tensor *t = tg_tensor_from(ctx, shape, ld->staging);
    if (!t) return false;
    ld->pos.cursor += g;
    ld->last_local = b;
    ld->last_global = g;
    *x = t;
    *y = ld->labels;
    return true;
}

int64_t tg_loader_batches(const tg_loader *ld) {
    return ld ? (ld->ds->n + ld->batch - 1) / ld->batch : 0;
}

tg_loader_pos tg_loader_position(const tg_loader *ld) {
    return ld ? ld->pos : (tg_loader_pos){0, 0, 0};
}

tg_status tg_loader_seek(tg_loader *ld, tg_loader_pos pos) {
    if (!ld) return tg_fail(TG_ERR_ARG, "tg_loader_seek: argument 'ld' is NULL");
    if (pos.epoch < 0 || pos.cursor < 0 || pos.cursor > ld->ds->n)
        return tg_fail(TG_ERR_ARG, "tg_loader_seek: position (epoch %lld, cursor %lld) does "
                       "not fit a dataset of %lld examples; hint: resuming with another "
                       "dataset?", (long long)pos.epoch, (long long)pos.cursor,
                       (long long)ld->ds->n);
    ld->pos = pos;
    ld->perm_epoch = -1;
    return TG_OK;
}
