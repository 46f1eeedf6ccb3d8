/* ops/linear.c: in progress (placeholder so the build configures). */
typedef int tg_placeholder_linear;
