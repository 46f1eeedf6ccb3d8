/*
 * bench/elementwise_bench.c — the element-wise kernels of ops/elementwise.c,
 * ops/broadcast.c and ops/unary.c against this machine's copy bandwidth, measured in the
 * same run (issue 12 target: large tensors at >= 50% of copy bandwidth, forward and
 * backward).
 *
 *   elementwise_bench [threads] [repeats] [millions of elements]
 *                     (defaults: 2 threads, 15 repeats, 16 M elements = 64 MiB a tensor)
 *
 * Copy bandwidth: memcpy of 64 MiB in 1 MiB chunks spread over the threads, read + write
 * counted (as `tapegrad peaks` and depthwise_bench). Bytes counted per kernel are the
 * compulsory traffic, n elements of 4 bytes:
 *   add / mul forward, same shapes     read a, b; write y                 12 n
 *   add backward, one operand          read dy; read+write da             12 n
 *   mul backward, one operand          read dy, b; read+write da          16 n
 *   mul forward, b a row of 1024       read a; write y (b stays in cache)  8 n
 *   bias gradient (rows, 1024) -> 1024 read dy                             4 n
 *   scalar gradient  -> ()             read dy                             4 n
 *   unary forward                      read x; write y                     8 n
 *   unary backward                     read dy, x or y; read+write dx     16 n
 * Every figure is the median of the repeats (best in brackets). The VM is shared and its
 * last-level cache is large, so take figures from more than one run.
 */
#include "tapegrad.h"

#include "../ops/broadcast.h"
#include "../ops/elementwise.h"
#include "../ops/unary.h"

#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROW 1024 /* the broadcast row (a bias of 1024 features) */

typedef struct ew_job {
    int64_t n;
    float *a, *b, *y, *dy, *da, *row, *drow, *scalar, *scratch;
    tg_bcast same, bias;
    tg_bcast_reduce bias_red, scalar_red;
    unary_kind kind;
    unary_args args;
} ew_job;

static void run_add(void *u) {
    ew_job *j = u;
    add_forward_cpu(j->y, j->a, j->b, j->n);
}
static void run_add_bwd(void *u) {
    ew_job *j = u;
    accumulate_cpu(j->da, j->dy, j->n);
}
static void run_mul(void *u) {
    ew_job *j = u;
    binary_forward_cpu(j->y, j->a, j->b, &j->same, BINARY_MUL);
}
static void run_mul_bwd(void *u) {
    ew_job *j = u;
    binary_term_cpu(j->da, true, j->dy, NULL, j->b, &j->same, BINARY_TERM_MUL);
}
static void run_mul_bias(void *u) {
    ew_job *j = u;
    binary_forward_cpu(j->y, j->a, j->row, &j->bias, BINARY_MUL);
}
static void run_bias_grad(void *u) {
    ew_job *j = u;
    broadcast_reduce_cpu(j->drow, j->dy, 1.0f, &j->bias_red, j->scratch);
}
static void run_scalar_grad(void *u) {
    ew_job *j = u;
    broadcast_reduce_cpu(j->scalar, j->dy, 1.0f, &j->scalar_red, j->scratch);
}
static void run_unary(void *u) {
    ew_job *j = u;
    unary_forward_cpu(j->y, j->a, j->n, j->kind, j->args);
}
static void run_unary_bwd(void *u) {
    ew_job *j = u;
    unary_backward_cpu(j->da, j->dy, j->a, j->y, j->n, j->kind, j->args);
}

static void report(const char *what, double bytes, bench_fn fn, ew_job *j, double copy_gbps) {
    double med, best;
    bench_time(fn, j, &med, &best);
    double gbps = bytes / med * 1e-9;
    printf("%-34s %9.3f ms %8.1f GB/s (%5.1f) %6.0f%%\n", what, med * 1e3, gbps,
           bytes / best * 1e-9, 100.0 * gbps / copy_gbps);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "elementwise_bench", 15, "[millions >= 1]");
    int64_t n = (argc > 3 ? atoll(argv[3]) : 16) << 20;
    if (!threads || n < ROW) {
        if (threads) fprintf(stderr, "elementwise_bench: millions must be >= 1\n");
        return 2;
    }
    n = n / ROW * ROW;

    double copy_best, copy_gbps = bench_copy_gbps(&copy_best);
    printf("element-wise kernels, %lld elements (%.0f MiB a tensor), %d threads, median of %d "
           "repeats (best in brackets)\ncopy bandwidth: %.1f GB/s (highest of 3 medians; best "
           "%.1f; 64 MiB, read + write)\n\n",
           (long long)n, (double)n * 4 / (1 << 20), threads, bench_repeats, copy_gbps, copy_best);

    tg_shape flat = tg_shape2(n / ROW, ROW), row = tg_shape1(ROW);
    ew_job j = {.n = n,
                .a = bench_floats(n, 0.5f),
                .b = bench_floats(n, 1.25f),
                .y = bench_floats(n, 0.0f),
                .dy = bench_floats(n, 0.25f),
                .da = bench_floats(n, 0.0f),
                .row = bench_floats(ROW, 2.0f),
                .drow = bench_floats(ROW, 0.0f),
                .scalar = bench_floats(1, 0.0f),
                .same = tg_bcast_plan(flat, flat, flat),
                .bias = tg_bcast_plan(flat, flat, row),
                .bias_red = tg_bcast_reduce_plan(flat, row),
                .scalar_red = tg_bcast_reduce_plan(flat, tg_shape0())};
    int64_t ns1 = broadcast_reduce_scratch_floats(&j.bias_red);
    int64_t ns2 = broadcast_reduce_scratch_floats(&j.scalar_red);
    j.scratch = bench_floats((ns1 > ns2 ? ns1 : ns2) + 1, 0.0f);
    double b4 = 4.0 * (double)n;

    printf("%-34s %12s %18s %7s\n", "kernel", "time", "GB/s (best)", "copy");
    report("add forward (same shapes)", 3 * b4, run_add, &j, copy_gbps);
    report("add backward (one operand)", 3 * b4, run_add_bwd, &j, copy_gbps);
    report("mul forward (same shapes)", 3 * b4, run_mul, &j, copy_gbps);
    report("mul backward (one operand)", 4 * b4, run_mul_bwd, &j, copy_gbps);
    report("mul forward, b (1024) broadcast", 2 * b4, run_mul_bias, &j, copy_gbps);
    report("bias gradient (rows,1024)->(1024)", b4, run_bias_grad, &j, copy_gbps);
    report("scalar gradient -> ()", b4, run_scalar_grad, &j, copy_gbps);
    const struct {
        const char *name;
        unary_kind kind;
        unary_args args;
    } un[] = {{"scale", UNARY_SCALE, {.c = 0.5f}},
              {"leaky_relu", UNARY_LEAKY_RELU, {.c = 0.01f}},
              {"exp", UNARY_EXP, {.c = 0.0f}},
              {"tanh", UNARY_TANH, {.c = 0.0f}},
              {"sigmoid", UNARY_SIGMOID, {.c = 0.0f}},
              {"gelu (erf)", UNARY_GELU, {.c = 0.0f}},
              {"gelu (tanh approx)", UNARY_GELU_TANH, {.c = 0.0f}},
              {"silu", UNARY_SILU, {.c = 0.0f}}};
    char what[64];
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) {
        j.kind = un[i].kind;
        j.args = un[i].args;
        snprintf(what, sizeof what, "%s forward", un[i].name);
        report(what, 2 * b4, run_unary, &j, copy_gbps);
        snprintf(what, sizeof what, "%s backward", un[i].name);
        report(what, (un[i].kind == UNARY_SCALE ? 3 : 4) * b4, run_unary_bwd, &j, copy_gbps);
    }
    free(j.a);
    free(j.b);
    free(j.y);
    free(j.dy);
    free(j.da);
    free(j.row);
    free(j.drow);
    free(j.scalar);
    free(j.scratch);
    return 0;
}
