/*
 * core/device.c — memory on a device. The CPU side is aligned malloc; the CUDA side
 * calls into cuda/memory.cu when the library was built with CUDA (TG_HAVE_CUDA), and
 * otherwise reports clearly that CUDA is not available.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#ifdef TG_HAVE_CUDA
#include "../cuda/tg_cuda.h"
#endif

const char *tg_device_name(tg_device device) {
    switch (device) {
    case TG_DEVICE_CPU: return "cpu";
    case TG_DEVICE_CUDA: return "cuda";
    case TG_DEVICE_COUNT: break;
    }
    return "unknown";
}

tg_status tg_cuda_check(void) {
#ifdef TG_HAVE_CUDA
    return tg_cuda_probe();
#else
    return tg_fail(TG_ERR_DEVICE, "no CUDA device available: tapegrad was built without "
                                  "CUDA (reconfigure with -Dcuda=enabled and nvcc on PATH)");
#endif
}

void *tg_device_alloc(tg_device device, size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (device == TG_DEVICE_CPU) {
        size_t rounded;
        if (!tg_add_size(bytes, 63, &rounded)) {
            tg_fail(TG_ERR_NOMEM, "out of memory: %zu bytes requested on the CPU", bytes);
            return NULL;
        }
        rounded &= ~(size_t)63;
        /* Refuse what cannot fit before the kernel overcommits it and the first touch
         * grinds into swap (or the OOM killer). */
        if (rounded >= TG_MEM_CHECK_MIN && tg_mem_check("a CPU allocation", rounded) != TG_OK)
            return NULL;
        void *p = aligned_alloc(64, rounded);
        if (!p) tg_fail(TG_ERR_NOMEM, "out of memory allocating %zu bytes on the CPU", bytes);
        return p;
    }
#ifdef TG_HAVE_CUDA
    return tg_cuda_alloc(bytes);
#else
    tg_cuda_check();
    return NULL;
#endif
}

void tg_device_free(tg_device device, void *ptr) {
    if (!ptr) return;
    if (device == TG_DEVICE_CPU) {
        free(ptr);
        return;
    }
#ifdef TG_HAVE_CUDA
    tg_cuda_free(ptr);
#endif
}

tg_status tg_device_copy(tg_device dst_device, void *dst, tg_device src_device,
                         const void *src, size_t bytes) {
    if (bytes == 0) return TG_OK;
    if (dst_device == TG_DEVICE_CPU && src_device == TG_DEVICE_CPU) {
        memmove(dst, src, bytes);
        return TG_OK;
    }
#ifdef TG_HAVE_CUDA
    return tg_cuda_copy(dst, dst_device == TG_DEVICE_CUDA, src, src_device == TG_DEVICE_CUDA,
                        bytes);
#else
    return tg_cuda_check();
#endif
}

tg_status tg_device_zero(tg_device device, void *ptr, size_t bytes) {
    if (bytes == 0) return TG_OK;
    if (device == TG_DEVICE_CPU) {
        memset(ptr, 0, bytes);
        return TG_OK;
    }
#ifdef TG_HAVE_CUDA
    return tg_cuda_zero(ptr, bytes);
#else
    return tg_cuda_check();
#endif
}

tg_status tg_device_poison(tg_device device, void *ptr, size_t bytes) {
    if (bytes == 0) return TG_OK;
    if (device == TG_DEVICE_CPU) {
        memset(ptr, 0xFF, bytes);
        return TG_OK;
    }
#ifdef TG_HAVE_CUDA
    return tg_cuda_fill_bytes(ptr, 0xFF, bytes);
#else
    return tg_cuda_check();
#endif
}

tg_status tg_device_sync(tg_device device) {
    if (device == TG_DEVICE_CPU) return TG_OK;
#ifdef TG_HAVE_CUDA
    return tg_cuda_sync();
#else
    return tg_cuda_check();
#endif
}
