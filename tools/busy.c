/*
 * tools/busy.c — the contention probe (see busy.h for what it measures and why).
 */
#include "busy.h"

#include <tapegrad.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The aggregate "cpu" line of /proc/stat: busy = user + nice + system + irq + softirq
 * (guest time is already inside user), and steal. */
static bool read_proc_stat(unsigned long long *busy, unsigned long long *steal) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return false;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 7) return false;
    *busy = v[0] + v[1] + v[2] + v[5] + v[6];
    *steal = n >= 8 ? v[7] : 0;
    return true;
}

static double self_cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void busy_begin(busy_probe *p) {
    memset(p, 0, sizeof *p);
    p->ok = read_proc_stat(&p->busy, &p->steal);
    p->self_cpu_s = self_cpu_seconds();
    p->wall_s = wall_seconds();
}

void busy_end(const busy_probe *p, busy_report *r) {
    unsigned long long busy, steal;
    double wall = wall_seconds() - p->wall_s, self = self_cpu_seconds() - p->self_cpu_s;
    long ticks = sysconf(_SC_CLK_TCK);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!p->ok || !read_proc_stat(&busy, &steal) || ticks <= 0 || cores <= 0 || wall <= 0)
        return;
    double capacity = wall * (double)cores;
    double others = (double)(busy - p->busy) / (double)ticks - self;
    if (others < 0) others = 0; /* tick granularity: our own time can read a bit high */
    double stolen = (double)(steal - p->steal) / (double)ticks;
    /* Ticks are 10 ms: over an interval that short, one tick boundary reads as a share
     * far above 1. Shares are clamped to [0, 1]; busy_pick judges short timed steps by
     * the whole run instead. */
    double others_share = fmin(others / capacity, 1.0), steal_share = fmin(stolen / capacity, 1.0);
    busy_report interval = {.known = true, .others_share = others_share,
                            .steal_share = steal_share, .wall_s = wall,
                            .cores = (int)cores, .what = r->what};
    busy_add(r, &interval);
}

void busy_add(busy_report *into, const busy_report *r) {
    if (!r->known || r->wall_s <= 0) return;
    /* Weighted by wall time, so that the shares of several intervals add up. */
    double total = into->wall_s + r->wall_s;
    into->others_share = (into->others_share * into->wall_s + r->others_share * r->wall_s) / total;
    into->steal_share = (into->steal_share * into->wall_s + r->steal_share * r->wall_s) / total;
    into->wall_s = total;
    into->cores = r->cores;
    into->what = r->what;
    into->known = true;
}

const busy_report *busy_pick(const busy_report *timed, const busy_report *whole) {
    return timed->known && timed->wall_s >= BUSY_MIN_WALL_S ? timed : whole;
}

bool busy_is_material(const busy_report *r) {
    return r->known &&
           (r->others_share > BUSY_OTHERS_SHARE || r->steal_share > BUSY_STEAL_SHARE);
}

void busy_print(const busy_report *r, FILE *f) {
    if (!busy_is_material(r)) return;
    char steal[64] = "";
    if (r->steal_share > BUSY_STEAL_SHARE)
        snprintf(steal, sizeof steal, " and the hypervisor stole %.0f%%", 100 * r->steal_share);
    char adapted[96] = "";
    if (tg_threads_adaptive() && tg_threads_adaptations() > 0)
        snprintf(adapted, sizeof adapted, " (the thread count followed the load: %d "
                 "change%s, %d now)", tg_threads_adaptations(),
                 tg_threads_adaptations() == 1 ? "" : "s", tg_get_num_threads());
    fprintf(f, "machine busy: other processes used %.0f%% of the %d cores during %s%s; "
            "figures are not reliable%s\n", 100 * r->others_share, r->cores,
            r->what ? r->what : "the timed steps", steal, adapted);
}
