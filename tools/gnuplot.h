/*
 * tools/gnuplot.h — drawing PNGs with gnuplot (Debian: gnuplot-nox), shared by the
 * subcommands that plot. The script goes to gnuplot's stdin; the PNG is checked after
 * gnuplot exits (PNG signature, non-trivial size), so a silent failure is reported as
 * one. TAPEGRAD_GNUPLOT names another gnuplot binary (tests use it to check the message
 * when gnuplot is missing). Messages start with "tapegrad <cmd>: ".
 */
#ifndef TG_TOOLS_GNUPLOT_H
#define TG_TOOLS_GNUPLOT_H

#include <stdbool.h>
#include <stdio.h>

/* Writes the gnuplot script to f; `data` is the caller's. */
typedef void (*gnuplot_script_fn)(FILE *f, const void *data);

/* Before a long run: true if gnuplot can be found and `png` can be created; otherwise
 * prints one line saying which and returns false. */
bool gnuplot_ready(const char *cmd, const char *png);

/* Runs gnuplot on the script and checks `png`. Returns 0, or 1 after a message. */
int gnuplot_render(const char *cmd, const char *png, gnuplot_script_fn script,
                   const void *data);

/* A string quoted for gnuplot (single quotes; a quote is doubled). */
void gnuplot_quote(FILE *f, const char *s);

#endif
