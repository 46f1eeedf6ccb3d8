/*
 * cuda/tg_cuda.h — the C-callable surface of the CUDA backend. Everything that touches
 * the CUDA runtime or cuBLAS lives in the cuda/ .cu files behind these extern "C" functions; every
 * CUDA call is checked and turned into a tapegrad status with a message.
 */
#ifndef TG_CUDA_H
#define TG_CUDA_H

#include "../include/tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

/* TG_OK when a device is present and usable; else TG_ERR_DEVICE and a message
 * "no CUDA device available: ...". Cached after the first call. */
tg_status tg_cuda_probe(void);
void *tg_cuda_alloc(size_t bytes);
void tg_cuda_free(void *ptr);
tg_status tg_cuda_copy(void *dst, bool dst_on_device, const void *src, bool src_on_device,
                       size_t bytes);
tg_status tg_cuda_zero(void *ptr, size_t bytes);
tg_status tg_cuda_sync(void);

#ifdef __cplusplus
}
#endif
#endif
