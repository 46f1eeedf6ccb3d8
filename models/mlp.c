/* models/mlp.c: in progress. */
typedef int tg_placeholder_mlp;
