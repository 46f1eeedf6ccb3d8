/*
 * fuzz/seed_checkpoint.c — writes valid checkpoints of the fuzz model (fuzz_model.h) into
 * a directory: the checkpoint fuzzer's seed inputs (one with the optional conv choices
 * section). Usage: seed_checkpoint DIR
 */
#include "fuzz_model.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    tg_optim *opt;
    tg_model *m = fuzz_model(&opt);
    tg_train_state st = {.epoch = 3, .step = 12, .data = {.seed = 5, .epoch = 3, .cursor = 8}};
    tg_rng_seed(&st.rng, 9);
    char path[4096];
    snprintf(path, sizeof path, "%s/full.ckpt", argv[1]);
    if (!m || tg_checkpoint_save(path, m, opt, &st) != TG_OK) goto fail;
    /* with TG_CONV_ALGO_AUTO's choices: the optional conv section */
    st.nconv_choices = 2;
    st.conv_choices[0] = (tg_conv_choice){.n = 8, .c_in = 3, .h = 32, .w = 32, .c_out = 16,
                                          .pad_h = 1, .pad_w = 1, .bias = true,
                                          .winograd = true};
    st.conv_choices[1] = (tg_conv_choice){.n = 8, .c_in = 16, .h = 16, .w = 16, .c_out = 32};
    snprintf(path, sizeof path, "%s/conv-choices.ckpt", argv[1]);
    if (tg_checkpoint_save(path, m, opt, &st) != TG_OK) goto fail;
    snprintf(path, sizeof path, "%s/params-only.ckpt", argv[1]);
    if (tg_checkpoint_save(path, m, NULL, NULL) != TG_OK) goto fail;
    tg_optim_free(opt);
    tg_model_free(m);
    return 0;
fail:
    fprintf(stderr, "seed_checkpoint: %s\n", tg_error_message());
    return 1;
}
