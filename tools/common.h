/*
 * tools/common.h — helpers shared by the subcommands.
 */
#ifndef TG_TOOLS_COMMON_H
#define TG_TOOLS_COMMON_H

#include <stdbool.h>
#include <stdint.h>

/* Parse a whole decimal integer / float; false on junk or overflow. */
bool parse_int(const char *s, int64_t *out);
bool parse_float(const char *s, double *out);

/* Median/min/max of n samples (sorts a copy). */
typedef struct tg_stats {
    double median, min, max;
} tg_stats;
tg_stats stats_of(const double *samples, int n);

/* Resident set size high-water mark of this process, in bytes (0 if unknown). */
int64_t peak_rss_bytes(void);

#endif
