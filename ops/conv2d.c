/* ops/conv2d.c: in progress (placeholder so the build configures). */
typedef int tg_placeholder_conv2d;
