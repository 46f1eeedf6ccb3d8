/* io/dataset.c: in progress. */
typedef int tg_placeholder_dataset;
