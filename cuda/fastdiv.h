/*
 * cuda/fastdiv.h — division by a divisor fixed at launch, without a divide instruction.
 *
 * GPUs have no integer divider: a 32-bit `/` or `%` by a runtime value is a ~20
 * instruction sequence and a 64-bit one a ~70 instruction subroutine. Element-wise
 * kernels that turn a flat index into (n, c, h, w) did several per element. Here the
 * host precomputes, once per launch, a "magic" multiplier for each divisor d, and the
 * device divides a 32-bit n with one multiply-high, one add and one shift:
 *
 *     l   = ceil(log2 d)                         (smallest l with 2^l >= d)
 *     mul = floor(2^32 (2^l - d) / d) + 1        (fits 32 bits for every d >= 1)
 *     n / d = (mulhi(n, mul) + n) >> l           for every 0 <= n < 2^31
 *
 * Why it is exact (Granlund and Montgomery, "Division by invariant integers using
 * multiplication", 1994, Thm 4.2): with the 33-bit multiplier m = 2^32 + mul =
 * floor(2^(32+l) / d) + 1 we have 2^(32+l) < m d <= 2^(32+l) + 2^l, which makes
 * floor(n m / 2^(32+l)) = floor(n / d) for every n < 2^32; and mulhi(n, mul) + n is
 * floor(n m / 2^32) (it cannot overflow 32 bits while n < 2^31, the range the kernels
 * use: they pick this path only when every index is at most INT32_MAX, and the 64-bit
 * path with plain division otherwise). tests/test_fastdiv.c checks it on the CPU against
 * `/` over many divisors and edge dividends.
 *
 * Plain C (no CUDA types) so the CPU test includes it; the device helpers are in
 * cuda/common.cuh.
 */
#ifndef TG_CUDA_FASTDIV_H
#define TG_CUDA_FASTDIV_H

#include <stdint.h>

/* A divisor d >= 1 with its magic numbers (mul and shift are meaningful only when
 * d <= INT32_MAX; the 64-bit index path divides by d itself). */
typedef struct tg_fastdiv {
    int64_t d;
    uint32_t mul, shift;
} tg_fastdiv;

static inline tg_fastdiv tg_fastdiv_make(int64_t d) {
    tg_fastdiv f = {d < 1 ? 1 : d, 0, 0};
    if (f.d > INT32_MAX) return f;
    uint32_t l = 0;
    while (((uint64_t)1 << l) < (uint64_t)f.d) l++;
    f.shift = l;
    f.mul = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << l) - (uint64_t)f.d)) /
                           (uint64_t)f.d + 1);
    return f;
}

/* n / f.d for 0 <= n <= INT32_MAX, as the device computes it (mulhi spelled out). */
static inline uint32_t tg_fastdiv_host(uint32_t n, tg_fastdiv f) {
    uint32_t hi = (uint32_t)(((uint64_t)n * f.mul) >> 32);
    return (hi + n) >> f.shift;
}

#endif /* TG_CUDA_FASTDIV_H */
