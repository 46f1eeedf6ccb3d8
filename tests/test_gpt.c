/*
 * tests/test_gpt.c — the word-list dataset (io/words.c) and the tiny GPT (models/gpt.c):
 * the fixed split and streams of the built-in sample against values computed
 * independently (Python, from the same source text), batch windows, the bigram
 * baseline, file errors; the GPT's shapes, bad options, a whole-model gradient check
 * along a random direction, causality (a later token never changes an earlier
 * position's logits), and a short training run whose loss falls.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(builtin_split_and_streams) {
    tg_words *w = tg_words_load(NULL);
    ck_assert_ptr_nonnull(w);
    /* Python over io/words_builtin.c with the same FNV-1a rule: 894 / 105 words,
     * streams of 8329 and 988 tokens, the held-out one starting ".a.analgesic". */
    ck_assert_int_eq(tg_words_count(w, TG_WORDS_TRAIN), 894);
    ck_assert_int_eq(tg_words_count(w, TG_WORDS_HELD_OUT), 105);
    int64_t ntr, nho;
    const int32_t *tr = tg_words_stream(w, TG_WORDS_TRAIN, &ntr);
    const int32_t *ho = tg_words_stream(w, TG_WORDS_HELD_OUT, &nho);
    ck_assert_int_eq(ntr, 8329);
    ck_assert_int_eq(nho, 988);
    const int32_t want[12] = {0, 1, 0, 1, 14, 1, 12, 7, 5, 19, 9, 3};
    ck_assert_mem_eq(ho, want, sizeof want);
    ck_assert_int_eq(tr[0], 0);
    ck_assert_int_eq(tr[ntr - 1], 0);
    /* Every held-out word is found as held out, and the rule agrees. */
    ck_assert_int_eq(tg_words_find(w, "analgesic"), TG_WORDS_HELD_OUT);
    ck_assert_int_eq(tg_words_split_of("analgesic"), TG_WORDS_HELD_OUT);
    ck_assert_int_eq(tg_words_find(w, "zwieback"), tg_words_split_of("zwieback"));
    ck_assert_int_eq(tg_words_find(w, "notaword"), -1);
    ck_assert_int_eq(tg_words_decode(0), '.');
    ck_assert_int_eq(tg_words_decode(26), 'z');
    /* The add-one bigram baseline, as computed in Python: 2.5617027065 nats/token. */
    ck_assert_double_eq_tol(tg_words_bigram_loss(w), 2.5617027065, 1e-9);
    tg_words_free(w);
}
END_TEST

START_TEST(batches_are_windows_of_the_stream) {
    tg_words *w = tg_words_load(NULL);
    int64_t n;
    const int32_t *s = tg_words_stream(w, TG_WORDS_TRAIN, &n);
    tg_rng a, b;
    tg_rng_seed(&a, 5);
    tg_rng_seed(&b, 5);
    int32_t x[4 * 8], y[4 * 8];
    ck_assert_int_eq(tg_words_batch(w, TG_WORDS_TRAIN, 4, 8, &a, x, y), TG_OK);
    for (int i = 0; i < 4; i++) {
        int64_t p = tg_rng_below(&b, n - 8); /* the documented draw, in order */
        for (int t = 0; t < 8; t++) {
            ck_assert_int_eq(x[i * 8 + t], s[p + t]);
            ck_assert_int_eq(y[i * 8 + t], s[p + t + 1]);
        }
    }
    ck_assert_int_ne(tg_words_batch(w, TG_WORDS_TRAIN, 1, (int)n, &a, x, y), TG_OK);
    tg_expect_error("window too long", TG_ERR_ARG, "tg_words_batch", "must fit");
    ck_assert_int_ne(tg_words_batch(w, 7, 1, 4, &a, x, y), TG_OK);
    tg_expect_error("bad split", TG_ERR_ARG, "TG_WORDS_HELD_OUT", NULL);
    tg_words_free(w);
}
END_TEST

START_TEST(word_files_and_errors) {
    char dir[] = "/tmp/tg_words_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64], fifo[64];
    snprintf(path, sizeof path, "%s/words", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    /* Proper nouns, apostrophes, accents and over-long words are dropped. */
    FILE *f = fopen(path, "w");
    fputs("apple\nBoston\ndon't\ncaf\xc3\xa9\nbanana\nanalgesic\n"
          "abcdefghijklmnopqrstuvwxyzabcdefg\n", f);
    fclose(f);
    tg_words *w = tg_words_load(path);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(tg_words_count(w, TG_WORDS_TRAIN) + tg_words_count(w, TG_WORDS_HELD_OUT), 3);
    ck_assert_int_eq(tg_words_find(w, "analgesic"), TG_WORDS_HELD_OUT);
    ck_assert_int_eq(tg_words_find(w, "Boston"), -1);
    tg_words_free(w);
    /* No held-out word: refused with a message naming the file. */
    f = fopen(path, "w");
    fputs("apple\nbanana\n", f);
    fclose(f);
    ck_assert_ptr_null(tg_words_load(path));
    tg_expect_error("no held-out words", TG_ERR_FORMAT, path, "held-out");
    ck_assert_ptr_null(tg_words_load("/nonexistent/words"));
    tg_expect_error("missing file", TG_ERR_IO, "/nonexistent/words", NULL);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_ptr_null(tg_words_load(fifo)); /* never blocks on a FIFO */
    tg_expect_error("FIFO", TG_ERR_IO, "not a regular file", NULL);
    unlink(fifo);
    unlink(path);
    rmdir(dir);
}
END_TEST

static tg_gpt_opts tiny_opts(void) {
    tg_gpt_opts o = tg_gpt_opts_default();
    o.block_size = 6;
    o.n_layer = 2;
    o.n_head = 2;
    o.n_embd = 8;
    o.dropout = 0;
    return o;
}

START_TEST(gpt_shapes_and_bad_options) {
    tg_model *m = tg_gpt_new(tiny_opts(), TG_DEVICE_CPU, 3);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(tg_model_name(m), "gpt-2x8-h2-t6-v27");
    /* wte 27x8, wpe 6x8, 2 blocks x (2 ln x 16 + 4 x (64 + 8) + 8x32 + 32 + 32x8 + 8),
     * ln_f 16, lm_head 27x8. */
    int64_t block = 2 * 16 + 4 * 72 + 256 + 32 + 256 + 8;
    ck_assert_int_eq(tg_params_numel(tg_model_params(m)), 216 + 48 + 2 * block + 16 + 216);
    ck_assert_ptr_nonnull(tg_params_find(tg_model_params(m), "h.1.attn.q.weight"));
    ck_assert_ptr_nonnull(tg_params_find(tg_model_params(m), "lm_head.weight"));
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int32_t tok[2 * 6] = {0, 1, 2, 3, 4, 5, 0, 26, 25, 24, 23, 22};
    tg_tensor *logits = tg_gpt_forward(ctx, m, tok, 2, 6, false);
    ck_assert_ptr_nonnull(logits);
    ck_assert(tg_shape_equal(logits->shape, tg_shape3(2, 6, 27)));
    ck_assert_ptr_null(tg_gpt_forward(ctx, m, tok, 1, 7, false));
    tg_expect_error("seq > block", TG_ERR_ARG, "block_size 6", NULL);
    tg_model *mlp = tg_mlp_new((tg_mlp_opts){0}, TG_DEVICE_CPU, 1);
    ck_assert_ptr_null(tg_gpt_forward(ctx, mlp, tok, 1, 6, false));
    tg_expect_error("not a GPT", TG_ERR_ARG, "not one made by tg_gpt_new", NULL);
    tg_model_free(mlp);
    tg_gpt_opts bad = tiny_opts();
    bad.n_embd = 9;
    ck_assert_ptr_null(tg_gpt_new(bad, TG_DEVICE_CPU, 1));
    tg_expect_error("embd % heads", TG_ERR_ARG, "opts.n_embd", "multiple of n_head");
    bad = tiny_opts();
    bad.dropout = 1;
    ck_assert_ptr_null(tg_gpt_new(bad, TG_DEVICE_CPU, 1));
    tg_expect_error("dropout 1", TG_ERR_ARG, "opts.dropout", NULL);
    tg_ctx_free(ctx);
    tg_model_free(m);
}
END_TEST

/* A token at position t never changes the logits at positions before t. */
START_TEST(gpt_is_causal) {
    tg_model *m = tg_gpt_new(tiny_opts(), TG_DEVICE_CPU, 4);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int32_t a[6] = {0, 3, 1, 20, 5, 9}, b[6] = {0, 3, 1, 7, 11, 2};
    float la[6 * 27], lb[6 * 27];
    ck_assert_int_eq(tg_tensor_to_host(tg_gpt_forward(ctx, m, a, 1, 6, false), la, false), TG_OK);
    ck_assert_int_eq(tg_tensor_to_host(tg_gpt_forward(ctx, m, b, 1, 6, false), lb, false), TG_OK);
    ck_assert_mem_eq(la, lb, 3 * 27 * sizeof(float)); /* positions 0..2 agree exactly */
    ck_assert(memcmp(la + 3 * 27, lb + 3 * 27, 27 * sizeof(float)) != 0);
    tg_ctx_free(ctx);
    tg_model_free(m);
}
END_TEST

typedef struct gpt_case {
    tg_model *m;
    const int32_t *x, *y;
} gpt_case;

static tg_tensor *gpt_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)in;
    const gpt_case *c = user;
    return tg_gpt_loss(ctx, c->m, c->x, c->y, 2, 6, true);
}

/* The whole model's backward (embeddings, layernorms, attention, GELU MLP, head) against
 * central differences along one random direction over every parameter. */
START_TEST(gpt_gradient_along_a_direction) {
    tg_model *m = tg_gpt_new(tiny_opts(), TG_DEVICE_CPU, 6);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int32_t x[12] = {0, 1, 14, 1, 12, 7, 0, 26, 5, 2, 1, 3};
    int32_t y[12] = {1, 14, 1, 12, 7, 5, 26, 5, 2, 1, 3, 0};
    gpt_case c = {m, x, y};
    double analytic, numeric;
    ck_assert_int_eq(tg_gradcheck_direction(ctx, tg_model_params(m), gpt_graph, &c, 1e-2, 11,
                                            &analytic, &numeric), TG_OK);
    ck_assert_msg(fabs(analytic - numeric) <= 2e-3 * fabs(numeric) + 1e-5,
                  "directional derivative: analytic %.8g numeric %.8g", analytic, numeric);
    ck_assert(fabs(numeric) > 1e-4); /* the check saw a real slope */
    tg_ctx_free(ctx);
    tg_model_free(m);
}
END_TEST

START_TEST(gpt_learns_the_sample) {
    tg_words *w = tg_words_load(NULL);
    tg_gpt_opts o = tiny_opts();
    o.n_embd = 16;
    o.block_size = 8;
    tg_model *m = tg_gpt_new(o, TG_DEVICE_CPU, 1);
    tg_adam_opts ao = tg_adamw_opts_default();
    ao.lr = 1e-2;
    tg_optim *opt = tg_adamw_new(tg_model_params(m), ao);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 2);
    int32_t x[16 * 8], y[16 * 8];
    int64_t n;
    const int32_t *held = tg_words_stream(w, TG_WORDS_HELD_OUT, &n);
    double before = tg_gpt_eval(ctx, m, held, n, 32);
    for (int step = 0; step < 150; step++) {
        ck_assert_int_eq(tg_words_batch(w, TG_WORDS_TRAIN, 16, 8, &rng, x, y), TG_OK);
        tg_tensor *loss = tg_gpt_loss(ctx, m, x, y, 16, 8, true);
        tg_optim_zero_grad(opt);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_step_end(ctx);
    }
    double after = tg_gpt_eval(ctx, m, held, n, 32);
    ck_assert_msg(before > 3.2 && after < before - 0.5, "held-out loss %.4f -> %.4f", before,
                  after);
    char word[64];
    ck_assert_int_ge(tg_gpt_sample(ctx, m, &rng, 1.0f, word, sizeof word), 0);
    for (const char *p = word; *p; p++) ck_assert(*p >= 'a' && *p <= 'z');
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_model_free(m);
    tg_words_free(w);
}
END_TEST

Suite *gpt_suite(void) {
    Suite *s = suite_create("gpt");
    TCase *tc = tg_test_case("gpt");
    tcase_add_test(tc, builtin_split_and_streams);
    tcase_add_test(tc, batches_are_windows_of_the_stream);
    tcase_add_test(tc, word_files_and_errors);
    tcase_add_test(tc, gpt_shapes_and_bad_options);
    tcase_add_test(tc, gpt_is_causal);
    tcase_add_test(tc, gpt_gradient_along_a_direction);
    tcase_add_test(tc, gpt_learns_the_sample);
    suite_add_tcase(s, tc);
    return s;
}
