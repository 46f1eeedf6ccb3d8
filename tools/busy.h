/*
 * tools/busy.h — is the machine busy? CPU time that OTHER processes took, and the time
 * the hypervisor stole, while we timed something.
 *
 * Linux counts every core's time in /proc/stat (user, nice, system, idle, iowait, irq,
 * softirq, steal, in clock ticks). Over an interval of wall time W on n cores there are
 * n W core-seconds; the busy ones minus what this process used (getrusage: all its
 * threads) are what other processes used. Their share of n W, and steal's, are the two
 * figures. A run is called busy when others took more than BUSY_OTHERS_SHARE of the
 * cores or steal more than BUSY_STEAL_SHARE: then timings are not reliable, and the
 * tools say so in one line and in --json.
 */
#ifndef TG_TOOLS_BUSY_H
#define TG_TOOLS_BUSY_H

#include <stdbool.h>
#include <stdio.h>

#define BUSY_OTHERS_SHARE 0.10
#define BUSY_STEAL_SHARE 0.05
/* /proc/stat counts in clock ticks (10 ms): an interval shorter than this says little, and
 * the tools then judge the whole command's time instead of the timed steps alone. */
#define BUSY_MIN_WALL_S 0.5

typedef struct busy_probe {
    bool ok;                  /* /proc/stat was readable at the start */
    unsigned long long busy, steal; /* ticks, all cores */
    double self_cpu_s;        /* this process's user + system seconds */
    double wall_s;
} busy_probe;

typedef struct busy_report {
    bool known;               /* both readings worked (Linux) */
    double others_share;      /* of all cores over the interval, 0..1 */
    double steal_share;
    double wall_s;
    int cores;
    const char *what;         /* "the timed steps" or "the run" (busy_pick) */
} busy_report;

void busy_begin(busy_probe *p);
/* Adds the interval since busy_begin(p) to *r (several intervals sum, e.g. the timed
 * steps of several runs). Start with r zeroed. */
void busy_end(const busy_probe *p, busy_report *r);
/* Adds report r (another interval) into *into, weighting by wall time. */
void busy_add(busy_report *into, const busy_report *r);
bool busy_is_material(const busy_report *r);
/* The timed steps' report when they lasted long enough to judge, else the whole
 * command's (both with their `what` for the message). */
const busy_report *busy_pick(const busy_report *timed, const busy_report *whole);
/* One line on f when the report is material; nothing otherwise. */
void busy_print(const busy_report *r, FILE *f);

#endif
