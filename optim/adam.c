/* optim/adam.c: in progress. */
typedef int tg_placeholder_adam;
