/*
 * models/gpt.c — a tiny GPT: a decoder-only transformer built from the public ops.
 *
 *   x = dropout(wte[tokens] + wpe[0..T))                           (B, T, C)
 *   for each of n_layer blocks:
 *       h = ln_1(x)
 *       q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv            (B, T, C) each
 *       split heads: (B, T, H, D) -> (B, H, T, D), D = C / H       (permute copies)
 *       att = softmax(causal_mask(q k^T / sqrt(D)))                 (B, H, T, T)
 *       y = dropout(att) v  -> (B, T, H, D) -> (B, T, C)
 *       x = x + dropout(y Wproj^T + bproj)
 *       x = x + dropout(gelu(ln_2(x) Wfc^T + bfc) Wmp^T + bmp)      (hidden 4C)
 *   logits = ln_f(x) Wlm^T                                          (B, T, V)
 *
 * Every step above is one recorded op, so the tape shows the whole attention and its
 * backward is the ops' backwards replayed in reverse: matmul (dA = dY B^T, dB = A^T dY),
 * softmax (dx = y (dy - sum(dy y))), the mask (no gradient where it wrote -inf), permute
 * (the inverse permutation), layernorm, GELU, the embeddings' scatter-add.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPT_MAX_LAYERS 16

typedef struct gpt_linear {
    tg_tensor *weight, *bias;
} gpt_linear;

typedef struct gpt_block {
    tg_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    gpt_linear q, k, v, proj, fc, mlp_proj;
} gpt_block;

typedef struct gpt {
    tg_gpt_opts opts;
    tg_tensor *wte, *wpe, *lnf_w, *lnf_b, *lm_head;
    gpt_block block[GPT_MAX_LAYERS];
    int32_t *positions; /* 0 .. T-1, for the position embedding */
} gpt;

static void gpt_free(void *p) {
    gpt *g = p;
    if (g) free(g->positions);
    free(g);
}

tg_gpt_opts tg_gpt_opts_default(void) {
    return (tg_gpt_opts){.vocab_size = TG_WORDS_VOCAB, .block_size = 16, .n_layer = 2,
                         .n_head = 4, .n_embd = 64, .dropout = 0.1f};
}

tg_gpt_opts tg_gpt_opts_of(const tg_model *m) {
    return m && m->free_impl == gpt_free ? ((const gpt *)m->impl)->opts : (tg_gpt_opts){0};
}

/* Adds "<prefix>.weight" (out, in), N(0, std), and "<prefix>.bias" (out), zero. */
static tg_status add_linear(tg_params *ps, tg_rng *rng, const char *prefix, int out, int in,
                            float std, bool bias, gpt_linear *l) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    l->weight = tg_params_add(ps, name, tg_shape2(out, in));
    if (!l->weight) return tg_error();
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        if (!(l->bias = tg_params_add(ps, name, tg_shape1(out)))) return tg_error();
    }
    return tg_init_normal(rng, l->weight, 0.0f, std);
}

static tg_status add_layernorm(tg_params *ps, const char *prefix, int c, tg_tensor **w,
                               tg_tensor **b) {
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    *w = tg_params_add(ps, name, tg_shape1(c));
    snprintf(name, sizeof name, "%s.bias", prefix);
    *b = *w ? tg_params_add(ps, name, tg_shape1(c)) : NULL;
    return *b ? tg_init_batchnorm(*w, *b) : tg_error();
}

static bool check_opts(const tg_gpt_opts *o) {
    const char *bad = o->vocab_size < 2 ? "vocab_size"
                      : o->block_size < 1 ? "block_size"
                      : o->n_layer < 1 || o->n_layer > GPT_MAX_LAYERS ? "n_layer"
                      : o->n_head < 1 ? "n_head"
                      : o->n_embd < 1 || o->n_embd % o->n_head ? "n_embd"
                      : !(o->dropout >= 0 && o->dropout < 1) ? "dropout" : NULL;
    if (!bad) return true;
    tg_fail(TG_ERR_ARG, "tg_gpt_new: argument 'opts.%s' is out of range (vocab_size %d, "
            "block_size %d, n_layer %d, n_head %d, n_embd %d, dropout %g); hint: vocab_size "
            ">= 2, block_size >= 1, 1 <= n_layer <= %d, n_embd a multiple of n_head, "
            "0 <= dropout < 1", bad, o->vocab_size, o->block_size, o->n_layer, o->n_head,
            o->n_embd, (double)o->dropout, GPT_MAX_LAYERS);
    return false;
}

tg_model *tg_gpt_new(tg_gpt_opts opts, tg_device device, uint64_t seed) {
    if (!check_opts(&opts)) return NULL;
    gpt *g = calloc(1, sizeof *g);
    int32_t *positions = malloc((size_t)opts.block_size * sizeof *positions);
    if (!g || !positions) {
        free(g);
        free(positions);
        tg_fail(TG_ERR_NOMEM, "tg_gpt_new: out of memory");
        return NULL;
    }
    g->opts = opts;
    g->positions = positions;
    for (int t = 0; t < opts.block_size; t++) positions[t] = t;
    char name[64];
    snprintf(name, sizeof name, "gpt-%dx%d-h%d-t%d-v%d", opts.n_layer, opts.n_embd,
             opts.n_head, opts.block_size, opts.vocab_size);
    tg_model *m = tg_model_new(name, device, NULL, g, gpt_free);
    if (!m) return NULL;
    tg_params *ps = tg_model_params(m);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    const int C = opts.n_embd, V = opts.vocab_size;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)opts.n_layer);
    gpt_linear tmp;
    tg_status st = add_linear(ps, &rng, "wte", V, C, std, false, &tmp);
    g->wte = tmp.weight;
    if (st == TG_OK) st = add_linear(ps, &rng, "wpe", opts.block_size, C, std, false, &tmp);
    g->wpe = tmp.weight;
    for (int l = 0; l < opts.n_layer && st == TG_OK; l++) {
        gpt_block *b = &g->block[l];
        char p[64];
#define PREFIX(s) (snprintf(p, sizeof p, "h.%d.%s", l, s), p)
        st = add_layernorm(ps, PREFIX("ln_1"), C, &b->ln1_w, &b->ln1_b);
        if (st == TG_OK) st = add_linear(ps, &rng, PREFIX("attn.q"), C, C, std, true, &b->q);
        if (st == TG_OK) st = add_linear(ps, &rng, PREFIX("attn.k"), C, C, std, true, &b->k);
        if (st == TG_OK) st = add_linear(ps, &rng, PREFIX("attn.v"), C, C, std, true, &b->v);
        if (st == TG_OK)
            st = add_linear(ps, &rng, PREFIX("attn.proj"), C, C, proj_std, true, &b->proj);
        if (st == TG_OK) st = add_layernorm(ps, PREFIX("ln_2"), C, &b->ln2_w, &b->ln2_b);
        if (st == TG_OK) st = add_linear(ps, &rng, PREFIX("mlp.fc"), 4 * C, C, std, true, &b->fc);
        if (st == TG_OK)
            st = add_linear(ps, &rng, PREFIX("mlp.proj"), C, 4 * C, proj_std, true,
                            &b->mlp_proj);
#undef PREFIX
    }
    if (st == TG_OK) st = add_layernorm(ps, "ln_f", C, &g->lnf_w, &g->lnf_b);
    if (st == TG_OK) st = add_linear(ps, &rng, "lm_head", V, C, std, false, &tmp);
    g->lm_head = tmp.weight;
    if (st != TG_OK) {
        tg_model_free(m);
        return NULL;
    }
    return m;
}

static tg_tensor *linear(tg_ctx *ctx, tg_tensor *x, const gpt_linear *l) {
    return tg_linear(ctx, x, l->weight, l->bias);
}

/* (B, T, C) -> (B, H, T, D): split the channels into heads and bring heads forward. */
static tg_tensor *split_heads(tg_ctx *ctx, tg_tensor *x, int B, int T, int H, int D) {
    static const int to_heads[4] = {0, 2, 1, 3};
    return tg_permute(ctx, tg_reshape(ctx, x, tg_shape4(B, T, H, D)), to_heads);
}

/* Causal multi-head self-attention of one block on h (B, T, C). */
static tg_tensor *attention(tg_ctx *ctx, const gpt *g, const gpt_block *b, tg_tensor *h,
                            int B, int T, bool training) {
    const int C = g->opts.n_embd, H = g->opts.n_head, D = C / H;
    static const int back[4] = {0, 2, 1, 3};
    tg_tensor *q = split_heads(ctx, linear(ctx, h, &b->q), B, T, H, D);
    tg_tensor *k = split_heads(ctx, linear(ctx, h, &b->k), B, T, H, D);
    tg_tensor *v = split_heads(ctx, linear(ctx, h, &b->v), B, T, H, D);
    tg_tensor *att = tg_matmul(ctx, q, tg_transpose(ctx, k, 2, 3));   /* (B, H, T, T) */
    att = tg_softmax(ctx, tg_causal_mask(ctx, tg_scale(ctx, att, 1.0f / sqrtf((float)D))), -1);
    att = tg_dropout(ctx, att, g->opts.dropout, training);
    tg_tensor *y = tg_permute(ctx, tg_matmul(ctx, att, v), back);      /* (B, T, H, D) */
    y = linear(ctx, tg_reshape(ctx, y, tg_shape3(B, T, C)), &b->proj);
    return tg_dropout(ctx, y, g->opts.dropout, training);
}

tg_tensor *tg_gpt_forward(tg_ctx *ctx, tg_model *m, const int32_t *tokens, int batch,
                          int seq, bool training) {
    const gpt *g = tg_model_user(m);
    if (!m || m->free_impl != gpt_free) {
        tg_fail(TG_ERR_ARG, "tg_gpt_forward: the model is %s, not one made by tg_gpt_new",
                m ? tg_model_name(m) : "NULL");
        return NULL;
    }
    if (!ctx || !tokens) {
        tg_fail(TG_ERR_ARG, "tg_gpt_forward(%s): argument '%s' is NULL", tg_model_name(m),
                ctx ? "tokens" : "ctx");
        return NULL;
    }
    if (batch < 1 || seq < 1 || seq > g->opts.block_size) {
        tg_fail(TG_ERR_ARG, "tg_gpt_forward(%s): batch %d and seq %d; hint: batch >= 1 and "
                "1 <= seq <= block_size %d", tg_model_name(m), batch, seq,
                g->opts.block_size);
        return NULL;
    }
    const int B = batch, T = seq;
    tg_tensor *x = tg_add(ctx, tg_embedding(ctx, g->wte, tokens, tg_shape2(B, T)),
                          tg_embedding(ctx, g->wpe, g->positions, tg_shape1(T)));
    x = tg_dropout(ctx, x, g->opts.dropout, training);
    for (int l = 0; l < g->opts.n_layer; l++) {
        const gpt_block *b = &g->block[l];
        tg_tensor *h = tg_layer_norm(ctx, x, 1, b->ln1_w, b->ln1_b, 1e-5f);
        x = tg_add(ctx, x, attention(ctx, g, b, h, B, T, training));
        h = tg_layer_norm(ctx, x, 1, b->ln2_w, b->ln2_b, 1e-5f);
        h = linear(ctx, tg_gelu(ctx, linear(ctx, h, &b->fc), true), &b->mlp_proj);
        x = tg_add(ctx, x, tg_dropout(ctx, h, g->opts.dropout, training));
    }
    x = tg_layer_norm(ctx, x, 1, g->lnf_w, g->lnf_b, 1e-5f);
    return tg_linear(ctx, x, g->lm_head, NULL);
}

tg_tensor *tg_gpt_loss(tg_ctx *ctx, tg_model *m, const int32_t *tokens,
                       const int32_t *targets, int batch, int seq, bool training) {
    tg_tensor *logits = tg_gpt_forward(ctx, m, tokens, batch, seq, training);
    if (!logits) return NULL;
    if (!targets) {
        tg_fail(TG_ERR_ARG, "tg_gpt_loss(%s): argument 'targets' is NULL", tg_model_name(m));
        return NULL;
    }
    int64_t V = logits->shape.dim[2];
    return tg_cross_entropy(ctx, tg_reshape(ctx, logits, tg_shape2((int64_t)batch * seq, V)),
                            targets);
}

double tg_gpt_eval(tg_ctx *ctx, tg_model *m, const int32_t *stream, int64_t len, int batch) {
    tg_gpt_opts o = tg_gpt_opts_of(m);
    if (!o.block_size || !ctx || !stream || batch < 1 || len < o.block_size + 1) {
        tg_fail(TG_ERR_ARG, "tg_gpt_eval: %s", !o.block_size ? "the model is not a GPT"
                : !ctx || !stream ? "ctx and stream are required"
                : batch < 1 ? "batch must be >= 1" : "the stream is shorter than one window");
        return NAN;
    }
    const int T = o.block_size;
    const int64_t windows = (len - 1) / T;
    int32_t *x = malloc((size_t)batch * T * sizeof *x), *y = malloc((size_t)batch * T * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        tg_fail(TG_ERR_NOMEM, "tg_gpt_eval: out of memory");
        return NAN;
    }
    bool was = tg_set_grad_enabled(ctx, false);
    double sum = 0;
    for (int64_t w0 = 0; w0 < windows; w0 += batch) {
        int b = (int)(windows - w0 < batch ? windows - w0 : batch);
        for (int i = 0; i < b; i++)
            for (int t = 0; t < T; t++) {
                x[i * T + t] = stream[(w0 + i) * T + t];
                y[i * T + t] = stream[(w0 + i) * T + t + 1];
            }
        float loss;
        tg_tensor *l = tg_gpt_loss(ctx, m, x, y, b, T, false);
        if (!l || tg_tensor_to_host(l, &loss, false) != TG_OK) {
            sum = NAN;
            break;
        }
        sum += (double)loss * b;
        tg_step_end(ctx);
    }
    tg_step_end(ctx);
    tg_set_grad_enabled(ctx, was);
    free(x);
    free(y);
    return sum / (double)windows;
}

int tg_gpt_sample(tg_ctx *ctx, tg_model *m, tg_rng *rng, float temperature, char *buf,
                  size_t size) {
    tg_gpt_opts o = tg_gpt_opts_of(m);
    if (!o.block_size || !ctx || !rng || !buf || size < 2 || !(temperature > 0)) {
        tg_fail(TG_ERR_ARG, "tg_gpt_sample: %s", !o.block_size ? "the model is not a GPT"
                : !(temperature > 0) ? "temperature must be > 0"
                : "ctx, rng and a buffer of at least 2 bytes are required");
        return -1;
    }
    const int T = o.block_size, V = o.vocab_size;
    int32_t context[1024];
    float *probs = malloc((size_t)V * sizeof *probs);
    if (T > 1024 || !probs) {
        free(probs);
        tg_fail(TG_ERR_ARG, "tg_gpt_sample: block_size %d over 1024 or out of memory", T);
        return -1;
    }
    bool was = tg_set_grad_enabled(ctx, false);
    int n = 0, len = 1;
    context[0] = 0; /* a word starts after a boundary */
    for (;;) {
        int start = len > T ? len - T : 0, seq = len - start;
        tg_tensor *logits = tg_gpt_forward(ctx, m, context + start, 1, seq, false);
        /* The last position's logits, on the host. */
        tg_tensor *last = logits ? tg_slice(ctx, logits, 1, seq - 1, seq) : NULL;
        if (!last || tg_tensor_to_host(last, probs, false) != TG_OK) {
            n = -1;
            break;
        }
        tg_step_end(ctx);
        double maxv = probs[0], total = 0;
        for (int v = 1; v < V; v++) maxv = probs[v] > maxv ? probs[v] : maxv;
        for (int v = 0; v < V; v++) total += probs[v] = (float)exp((probs[v] - maxv) / temperature);
        double r = tg_rng_uniform(rng) * total;
        int tok = V - 1;
        for (int v = 0; v < V; v++) {
            if ((r -= probs[v]) < 0) {
                tok = v;
                break;
            }
        }
        if (tok == 0 || (size_t)n + 1 >= size || len >= 1024) break;
        buf[n++] = tg_words_decode(tok);
        context[len++] = tok;
    }
    buf[n < 0 ? 0 : n] = '\0';
    tg_step_end(ctx);
    tg_set_grad_enabled(ctx, was);
    free(probs);
    return n;
}
