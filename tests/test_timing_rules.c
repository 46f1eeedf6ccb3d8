/*
 * tests/test_timing_rules.c — the rules the timing commands judge rates by
 * (tools/ceilings.c, tools/busy.c): a rate above the ceiling measured in the same run is
 * flagged, never fatal; a rate above the CPU's arithmetic limit is refused; of two
 * measurements of the ceilings the higher is kept; contention reports add up by time;
 * adaptive threads shrink when other processes hold the cores.
 */
#include "../core/core.h"
#include "../tools/busy.h"
#include "../tools/profile.h"

#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static bench_result make_result(prof_row *rows, int n, double step_s, double flops) {
    bench_result r;
    memset(&r, 0, sizeof r);
    r.rows = rows;
    r.nrows = n;
    r.step.median = step_s;
    r.flops = flops;
    return r;
}

START_TEST(above_ceiling_is_flagged_not_fatal) {
    peaks pk = {.device = TG_DEVICE_CPU, .sgemm_gflops = 100, .copy_gbps = 10};
    prof_row rows[3] = {
        {.op = "conv2d", .detail = "pointwise", .fwd_s = 1e-3, .fwd_flops = 1.5e8}, /* 150 */
        {.op = "conv2d", .detail = "dense 3x3", .fwd_s = 1e-3, .fwd_flops = 0.9e8}, /* 90 */
        {.op = "relu", .detail = "", .fwd_s = 1e-5, .fwd_flops = 1e7},  /* too short to judge */
    };
    bench_result r = make_result(rows, 3, 0.01, 0.5e9); /* step: 50 GFLOP/s */
    ck_assert_int_eq(bench_flag_rates(&r, &pk), 1);
    ck_assert(rows[0].above_ceiling);
    ck_assert(!rows[1].above_ceiling);
    ck_assert(!rows[2].above_ceiling);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    bench_print_flags(&r, &pk, "test", f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "warning: test: op #0 conv2d pointwise"));
    ck_assert_ptr_nonnull(strstr(buf, "flagged '!'"));
    free(buf);
    /* Possible for this CPU (limit 1000), impossible for one of 120 GFLOP/s. */
    ck_assert(bench_rates_possible(&r, 1000, "test", stderr));
    f = open_memstream(&buf, &size);
    ck_assert(!bench_rates_possible(&r, 120, "test", f));
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "arithmetic limit"));
    free(buf);
    ck_assert(bench_rates_possible(&r, 0, "test", stderr)); /* unknown limit: not judged */
    /* A higher ceiling (re-measured) clears the flag. */
    pk.sgemm_gflops = 160;
    ck_assert_int_eq(bench_flag_rates(&r, &pk), 0);
    ck_assert(!rows[0].above_ceiling);
}
END_TEST

START_TEST(merge_keeps_the_higher_ceiling) {
    peaks a = {.ngemm = 2, .sgemm_gflops = 80, .copy_gbps = 9, .seconds = 1};
    peaks b = {.ngemm = 2, .sgemm_gflops = 120, .copy_gbps = 7, .seconds = 2};
    a.gemm[0].gflops = 80;
    a.gemm[1].gflops = 50;
    b.gemm[0].gflops = 60;
    b.gemm[1].gflops = 120;
    peaks_merge_max(&a, &b);
    ck_assert_double_eq(a.gemm[0].gflops, 80);
    ck_assert_double_eq(a.gemm[1].gflops, 120);
    ck_assert_double_eq(a.sgemm_gflops, 120);
    ck_assert_double_eq(a.copy_gbps, 9);
    ck_assert_double_eq(a.seconds, 3);
}
END_TEST

START_TEST(fma_peak_is_known_and_sane) {
    double one = cpu_fma_peak_gflops(1), two = cpu_fma_peak_gflops(2);
    if (one == 0) return; /* no /proc/cpuinfo: not judged */
    ck_assert(one > 1 && one < 1e4);  /* 1 GFLOP/s .. 10 TFLOP/s per core */
    ck_assert_double_eq_tol(two, 2 * one, 1e-9);
}
END_TEST

START_TEST(busy_reports_add_by_time) {
    busy_report total = {0};
    busy_report a = {.known = true, .others_share = 0.5, .wall_s = 1, .cores = 2};
    busy_report b = {.known = true, .others_share = 0.0, .steal_share = 0.3, .wall_s = 3,
                     .cores = 2};
    busy_add(&total, &a);
    busy_add(&total, &b);
    ck_assert_double_eq_tol(total.others_share, 0.125, 1e-12);
    ck_assert_double_eq_tol(total.steal_share, 0.225, 1e-12);
    ck_assert(busy_is_material(&total));
    busy_report quiet = {.known = true, .others_share = 0.02, .wall_s = 1, .cores = 2};
    ck_assert(!busy_is_material(&quiet));
    busy_report unknown = {0};
    ck_assert(!busy_is_material(&unknown));
    /* Short timed steps: the whole run is judged instead. */
    busy_report timed = {.known = true, .wall_s = 0.1}, whole = {.known = true, .wall_s = 5};
    ck_assert_ptr_eq(busy_pick(&timed, &whole), &whole);
    timed.wall_s = 2;
    ck_assert_ptr_eq(busy_pick(&timed, &whole), &timed);
    /* A real probe over a short sleep: known on Linux, shares within [0, 1]. */
    busy_probe p;
    busy_report r = {0};
    busy_begin(&p);
    busy_end(&p, &r);
    if (r.known) ck_assert(r.others_share >= 0 && r.others_share <= 1.0001);
}
END_TEST

/* Adaptive threads (core/threads.c): the rule, then a live run with one busy child
 * process per core, which must shrink the team to one thread. */
START_TEST(threads_follow_the_load) {
    ck_assert_int_eq(tg_threads_for_load(2, 0.0, 2), 2);
    ck_assert_int_eq(tg_threads_for_load(2, 0.4, 2), 2);
    ck_assert_int_eq(tg_threads_for_load(2, 0.7, 2), 1);
    ck_assert_int_eq(tg_threads_for_load(2, 1.9, 2), 1);  /* never below one */
    ck_assert_int_eq(tg_threads_for_load(16, 2.0, 8), 8); /* never above the limit */
    ck_assert_int_eq(tg_threads_for_load(16, 10.2, 16), 6);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 2 || cores > 64) return; /* nothing to shrink / too many children */
    tg_set_num_threads(0);
    const int all = tg_get_num_threads(); /* the cores this process may use */
    if (all < 2) return;                  /* bound to one core: nothing to shrink */
    pid_t kids[64];
    for (long i = 0; i < cores; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0)
            for (;;) __asm__ volatile("");
    }
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_set_threads_adaptive(true);
    ck_assert(tg_threads_adaptive());
    double t0 = tg_now();
    while (tg_now() - t0 < 1.0 && tg_get_num_threads() > 1) {
        usleep(20000); /* a step that mostly waits: the children hold the cores */
        tg_step_end(ctx);
    }
    int during = tg_get_num_threads();
    for (long i = 0; i < cores; i++) kill(kids[i], SIGKILL);
    for (long i = 0; i < cores; i++) waitpid(kids[i], NULL, 0);
    ck_assert_msg(during == 1, "%ld busy processes on %ld cores left %d threads", cores,
                  cores, during);
    ck_assert_int_ge(tg_threads_adaptations(), 1);
    tg_set_threads_adaptive(false); /* back to the count set */
    ck_assert_int_eq(tg_get_num_threads(), all);
    tg_ctx_free(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("timing_rules");
    TCase *tc = tcase_create("timing_rules");
    tcase_add_test(tc, above_ceiling_is_flagged_not_fatal);
    tcase_add_test(tc, merge_keeps_the_higher_ceiling);
    tcase_add_test(tc, fma_peak_is_known_and_sane);
    tcase_add_test(tc, busy_reports_add_by_time);
    tcase_add_test(tc, threads_follow_the_load);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
