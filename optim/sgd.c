/* optim/sgd.c: in progress. */
typedef int tg_placeholder_sgd;
