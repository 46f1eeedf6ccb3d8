/*
 * tools/commands.h — the subcommands of the `tapegrad` program. Each lives in its own
 * file (cmd_<name>.c), takes argc/argv after the subcommand name, prints --help, and
 * returns the process exit status: 0 ok, 1 runtime failure, 2 bad arguments.
 */
#ifndef TG_TOOLS_COMMANDS_H
#define TG_TOOLS_COMMANDS_H

int cmd_forum(int argc, char **argv);     /* the 50-layer forum experiment */
int cmd_mobilenet(int argc, char **argv); /* MobileNet v1 forward/train timing */
int cmd_peaks(int argc, char **argv);     /* this machine's SGEMM and copy ceilings */
int cmd_train(int argc, char **argv);     /* train mnist (mlp|cnn) */
int cmd_plot(int argc, char **argv);      /* plot a training CSV log */
int cmd_tape(int argc, char **argv);      /* print/draw/explain one step's tape */
int cmd_export(int argc, char **argv);    /* a checkpoint's weights as safetensors */

#endif
