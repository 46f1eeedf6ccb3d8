/* io/idx.c: in progress. */
typedef int tg_placeholder_idx;
