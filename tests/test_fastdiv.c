/*
 * tests/test_fastdiv.c — the magic-number division of the CUDA kernels' 32-bit index
 * path (cuda/fastdiv.h), checked on the CPU (it needs no GPU: the host computes the
 * magic numbers and tg_fastdiv_host does the device's arithmetic) against plain `/`:
 * every divisor up to 5000 and random ones up to INT32_MAX, each at the dividends where
 * an off-by-one would show (0, 1, multiples of d and their neighbours, INT32_MAX) and at
 * random ones. Built into every configuration, CUDA or not.
 */
#include "testutil.h"

#include "../cuda/fastdiv.h"

#include <stdint.h>

static uint64_t next(uint64_t *s) { /* xorshift64 */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* n / d through the magic numbers equals n / d, for every n in the list. */
static void check_divisor(int64_t d, uint64_t *rng) {
    tg_fastdiv f = tg_fastdiv_make(d);
    ck_assert_int_eq(f.d, d);
    int64_t top = (INT32_MAX / d) * d; /* the largest multiple of d in range */
    const int64_t edges[] = {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, top - 1, top,
                             INT32_MAX - 1, INT32_MAX};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        int64_t n = edges[i];
        if (n < 0 || n > INT32_MAX) continue;
        ck_assert_msg(tg_fastdiv_host((uint32_t)n, f) == (uint32_t)(n / d),
                      "%lld / %lld: magic gives %u", (long long)n, (long long)d,
                      tg_fastdiv_host((uint32_t)n, f));
    }
    for (int i = 0; i < 64; i++) {
        uint32_t n = (uint32_t)(next(rng) & INT32_MAX);
        ck_assert_msg(tg_fastdiv_host(n, f) == (uint32_t)(n / d), "%u / %lld: magic gives %u", n,
                      (long long)d, tg_fastdiv_host(n, f));
    }
}

START_TEST(fastdiv_small_divisors) {
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int64_t d = 1; d <= 5000; d++) check_divisor(d, &rng);
}
END_TEST

START_TEST(fastdiv_large_divisors) {
    uint64_t rng = 0xD1B54A32D192ED03ull;
    const int64_t fixed[] = {(int64_t)1 << 30, ((int64_t)1 << 30) + 1, ((int64_t)1 << 31) - 2,
                             INT32_MAX, 65535, 65536, 65537, 46341, 1000003};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) check_divisor(fixed[i], &rng);
    for (int i = 0; i < 5000; i++) check_divisor((int64_t)(next(&rng) % INT32_MAX) + 1, &rng);
}
END_TEST

/* Divisors beyond INT32_MAX keep d (the 64-bit path divides by it) and no magic. */
START_TEST(fastdiv_64bit_divisor) {
    tg_fastdiv f = tg_fastdiv_make((int64_t)1 << 33);
    ck_assert_int_eq(f.d, (int64_t)1 << 33);
    ck_assert_uint_eq(f.mul, 0);
    f = tg_fastdiv_make(0); /* never used as a divisor; made harmless */
    ck_assert_int_eq(f.d, 1);
}
END_TEST

Suite *fastdiv_suite(void) {
    Suite *s = suite_create("fastdiv");
    TCase *tc = tg_test_case("magic");
    tcase_add_test(tc, fastdiv_small_divisors);
    tcase_add_test(tc, fastdiv_large_divisors);
    tcase_add_test(tc, fastdiv_64bit_divisor);
    suite_add_tcase(s, tc);
    return s;
}
