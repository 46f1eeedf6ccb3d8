/*
 * core/arena.c — the step arena: a bump allocator over blocks that are kept across
 * steps. On these VMs the first touch of a fresh page costs ~1.5 µs, so memory is
 * reused, never handed back and re-faulted every step (DESIGN §6).
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define TG_ARENA_ALIGN 64
#define TG_ARENA_MIN_BLOCK ((size_t)1 << 20) /* 1 MiB: small steps fit in one block */

/* Debug mode: with TG_ARENA_POISON set (and not "0") when an arena is created, every
 * allocation it hands out is filled with NaN (all bits set), so a kernel that reads
 * memory nothing wrote this step produces NaN and fails its parity test instead of
 * passing on stale values. */
static bool poison_requested(void) {
    const char *v = getenv("TG_ARENA_POISON");
    return v && *v && strcmp(v, "0") != 0;
}

void tg_arena_init(tg_arena *a, tg_device device) {
    memset(a, 0, sizeof *a);
    a->device = device;
    a->poison = poison_requested();
}

void tg_arena_release(tg_arena *a) {
    if (!a) return;
    for (int i = 0; i < a->nblocks; i++) tg_device_free(a->device, a->blocks[i].base);
    free(a->blocks);
    tg_device device = a->device;
    bool poison = a->poison;
    tg_arena_init(a, device);
    a->poison = poison;
}

static bool arena_push_block(tg_arena *a, size_t size) {
    if (a->nblocks == a->cap) {
        int cap = a->cap ? 2 * a->cap : 4;
        tg_arena_block *blocks = realloc(a->blocks, (size_t)cap * sizeof *blocks);
        if (!blocks) {
            tg_fail(TG_ERR_NOMEM, "step arena: cannot grow the block list");
            return false;
        }
        a->blocks = blocks;
        a->cap = cap;
    }
    char *base = tg_device_alloc(a->device, size);
    if (!base) return false;
    a->blocks[a->nblocks++] = (tg_arena_block){.base = base, .size = size};
    return true;
}

void *tg_arena_alloc(tg_arena *a, size_t bytes) {
    size_t need;
    if (!tg_add_size(bytes, TG_ARENA_ALIGN - 1, &need)) {
        tg_fail(TG_ERR_NOMEM, "step arena: out of memory (%zu bytes requested)", bytes);
        return NULL;
    }
    need &= ~(size_t)(TG_ARENA_ALIGN - 1);
    if (need == 0) need = TG_ARENA_ALIGN;
    /* First fit among the kept blocks, in order; a block's unused tail is skipped. */
    while (a->cur < a->nblocks && need > a->blocks[a->cur].size - a->off) {
        if (a->cur + 1 == a->nblocks) break;
        a->cur++;
        a->off = 0;
    }
    if (a->cur >= a->nblocks || need > a->blocks[a->cur].size - a->off) {
        /* Nothing kept fits: append a block at least twice the last one. */
        size_t last = a->nblocks ? a->blocks[a->nblocks - 1].size : 0;
        size_t size = last <= SIZE_MAX / 2 && 2 * last > need ? 2 * last : need;
        if (size < TG_ARENA_MIN_BLOCK) size = TG_ARENA_MIN_BLOCK;
        if (!arena_push_block(a, size)) return NULL;
        a->cur = a->nblocks - 1;
        a->off = 0;
    }
    void *p = a->blocks[a->cur].base + a->off;
    if (a->poison && tg_device_poison(a->device, p, need) != TG_OK) return NULL;
    a->off += need;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void tg_arena_reset(tg_arena *a) {
    /* A step that spilled over several blocks keeps them on the CPU: the next step makes
     * the same allocations in the same order, so they land at the same places, on pages
     * the first step already touched; a block tail skipped as too small was never touched
     * and costs no memory. Replacing the blocks by one of the peak size, as on a GPU, would
     * fault every page in a second time (~1.5 us per 4 KiB page here: 5-9% of the MNIST
     * CNN's first epoch went to that). On a GPU nothing is paged in lazily, so there the
     * blocks are merged into one of the high-water mark, which holds the same sequence.
     * A CPU arena merges too once its blocks hold more than twice the high-water mark
     * (steps that allocate in a different order can append blocks they then half use). */
    size_t held = 0;
    for (int i = 0; i < a->nblocks; i++) held += a->blocks[i].size;
    if (a->nblocks > 1 && (a->device != TG_DEVICE_CPU || held / 2 > a->peak)) {
        size_t size = a->peak;
        for (int i = 0; i < a->nblocks; i++) tg_device_free(a->device, a->blocks[i].base);
        a->nblocks = 0;
        /* On failure the next alloc appends blocks again and reports any shortage. */
        if (!arena_push_block(a, size)) a->nblocks = 0;
    }
    a->cur = 0;
    a->off = 0;
    a->used = 0;
}

tg_arena_mark tg_arena_get_mark(const tg_arena *a) {
    return (tg_arena_mark){.cur = a->cur, .off = a->off, .used = a->used};
}

void tg_arena_rewind(tg_arena *a, tg_arena_mark mark) {
    a->cur = mark.cur;
    a->off = mark.off;
    a->used = mark.used;
}
