/* models/cnn.c: in progress. */
typedef int tg_placeholder_cnn;
