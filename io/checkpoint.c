/* io/checkpoint.c: in progress. */
typedef int tg_placeholder_checkpoint;
