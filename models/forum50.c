/* models/forum50.c: in progress. */
typedef int tg_placeholder_forum50;
