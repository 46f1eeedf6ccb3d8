/* models/mobilenet.c: in progress. */
typedef int tg_placeholder_mobilenet;
