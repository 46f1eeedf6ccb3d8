/* optim/optim.c: in progress. */
typedef int tg_placeholder_optim;
