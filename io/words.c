/*
 * io/words.c — English words as a character-level language-modelling dataset.
 *
 * Source: a word list with one word per line (Debian's wamerican, /usr/share/dict/words)
 * or the built-in sample (io/words_builtin.c). Only words made of the 26 lowercase
 * letters are kept (proper nouns, accents and apostrophes are dropped), longest 32.
 *
 * Tokens: '.' = 0 marks a word boundary, 'a'..'z' = 1..26 (TG_WORDS_VOCAB = 27).
 *
 * Split (fixed, documented, independent of the file's order): a word is held out when the
 * 32-bit FNV-1a hash of its letters is 0 mod 10 (about 10% of words); every other word is
 * for training. A held-out word never appears in the training stream.
 *
 * Streams: each split is one token stream ".w1.w2.w3. ... .wn." in file order. A training
 * batch takes B windows of T + 1 tokens at positions drawn uniformly with tg_rng_below;
 * x is the first T tokens, y the last T (next-token targets). The held-out loss averages
 * over consecutive non-overlapping windows of the held-out stream.
 *
 * The baseline: a bigram model, counts of (token, next token) over the training stream
 * with add-one smoothing; its mean negative log-likelihood over the held-out stream's
 * transitions is what a model must beat to have learnt more than letter pairs.
 */
#include "words.h"
#include "io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORD 32
/* A word list larger than this is not a word list (wamerican is about 1 MB). */
#define MAX_FILE_BYTES ((size_t)64 << 20)

struct tg_words {
    int32_t *stream[2];        /* TG_WORDS_TRAIN, TG_WORDS_HELD_OUT */
    int64_t len[2], count[2];
    char **sorted;             /* every kept word, sorted (membership) */
    uint8_t *sorted_split;     /* its split */
    int64_t nsorted;
};

static uint32_t fnv1a(const char *w, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)w[i]) * 16777619u;
    return h;
}

int tg_words_split_of(const char *word) {
    return fnv1a(word, strlen(word)) % 10 == 0 ? TG_WORDS_HELD_OUT : TG_WORDS_TRAIN;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* The next kept word of text[*i..size): its start and length; false at the end. Words
 * with anything but a-z, or longer than MAX_WORD, are skipped. */
static bool next_word(const char *text, size_t size, size_t *i, size_t *start, size_t *n) {
    while (*i < size) {
        while (*i < size && is_space(text[*i])) (*i)++;
        *start = *i;
        bool ok = true;
        while (*i < size && !is_space(text[*i])) {
            ok &= text[*i] >= 'a' && text[*i] <= 'z';
            (*i)++;
        }
        *n = *i - *start;
        if (*n > 0 && *n <= MAX_WORD && ok) return true;
    }
    return false;
}

/* Parses whitespace-separated words from text[0..size) into w. */
static tg_status words_build(tg_words *w, const char *text, size_t size, const char *what) {
    /* Pass 1: count kept words and letters per split. */
    int64_t letters[2] = {0, 0};
    size_t i = 0, start, n;
    while (next_word(text, size, &i, &start, &n)) {
        int split = fnv1a(text + start, n) % 10 == 0 ? TG_WORDS_HELD_OUT : TG_WORDS_TRAIN;
        w->count[split]++;
        letters[split] += (int64_t)n;
    }
    if (w->count[TG_WORDS_TRAIN] < 1 || w->count[TG_WORDS_HELD_OUT] < 1)
        return tg_fail(TG_ERR_FORMAT, "tg_words_load: %s has %lld training and %lld held-out "
                       "words of lowercase a-z; both must be at least 1 (one word per line)",
                       what, (long long)w->count[0], (long long)w->count[1]);
    w->nsorted = w->count[0] + w->count[1];
    for (int s = 0; s < 2; s++) {
        w->len[s] = letters[s] + w->count[s] + 1; /* a '.' before each word and at the end */
        w->stream[s] = malloc((size_t)w->len[s] * sizeof(int32_t));
    }
    w->sorted = calloc((size_t)w->nsorted, sizeof *w->sorted);
    w->sorted_split = malloc((size_t)w->nsorted);
    if (!w->stream[0] || !w->stream[1] || !w->sorted || !w->sorted_split)
        return tg_fail(TG_ERR_NOMEM, "tg_words_load: out of memory for %lld words",
                       (long long)w->nsorted);
    /* Pass 2: fill the streams and the sorted list. */
    int64_t pos[2] = {0, 0}, k = 0;
    i = 0;
    while (next_word(text, size, &i, &start, &n)) {
        int split = fnv1a(text + start, n) % 10 == 0 ? TG_WORDS_HELD_OUT : TG_WORDS_TRAIN;
        int32_t *st = w->stream[split];
        st[pos[split]++] = 0;
        for (size_t j = 0; j < n; j++) st[pos[split]++] = text[start + j] - 'a' + 1;
        char *copy = malloc(n + 1);
        if (!copy) return tg_fail(TG_ERR_NOMEM, "tg_words_load: out of memory");
        memcpy(copy, text + start, n);
        copy[n] = '\0';
        w->sorted[k++] = copy;
    }
    for (int s = 0; s < 2; s++) w->stream[s][pos[s]] = 0;
    qsort(w->sorted, (size_t)w->nsorted, sizeof *w->sorted, cmp_str);
    for (int64_t word = 0; word < w->nsorted; word++)
        w->sorted_split[word] = (uint8_t)tg_words_split_of(w->sorted[word]);
    return TG_OK;
}

tg_words *tg_words_load(const char *path) {
    tg_words *w = calloc(1, sizeof *w);
    if (!w) {
        tg_fail(TG_ERR_NOMEM, "tg_words_load: out of memory");
        return NULL;
    }
    tg_status st;
    if (!path) {
        size_t size = 0, pos = 0;
        for (int i = 0; tg_words_builtin_lines[i]; i++) size += strlen(tg_words_builtin_lines[i]);
        char *text = malloc(size + 1);
        if (!text) {
            tg_words_free(w);
            tg_fail(TG_ERR_NOMEM, "tg_words_load: out of memory");
            return NULL;
        }
        for (int i = 0; tg_words_builtin_lines[i]; i++) {
            size_t n = strlen(tg_words_builtin_lines[i]);
            memcpy(text + pos, tg_words_builtin_lines[i], n);
            pos += n;
        }
        st = words_build(w, text, size, "the built-in sample");
        free(text);
    } else {
        uint8_t *bytes = NULL;
        size_t size = 0;
        st = tg_read_file("tg_words_load", path, MAX_FILE_BYTES, &bytes, &size);
        if (st == TG_OK) st = words_build(w, (const char *)bytes, size, path);
        free(bytes);
    }
    if (st != TG_OK) {
        tg_words_free(w);
        return NULL;
    }
    return w;
}

void tg_words_free(tg_words *w) {
    if (!w) return;
    free(w->stream[0]);
    free(w->stream[1]);
    for (int64_t i = 0; w->sorted && i < w->nsorted; i++) free(w->sorted[i]);
    free(w->sorted);
    free(w->sorted_split);
    free(w);
}

const int32_t *tg_words_stream(const tg_words *w, int split, int64_t *len) {
    if (!w || (split != TG_WORDS_TRAIN && split != TG_WORDS_HELD_OUT)) {
        tg_fail(TG_ERR_ARG, "tg_words_stream: %s", w ? "split must be TG_WORDS_TRAIN or "
                "TG_WORDS_HELD_OUT" : "words is NULL");
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = w->len[split];
    return w->stream[split];
}

int64_t tg_words_count(const tg_words *w, int split) {
    return w && (split == 0 || split == 1) ? w->count[split] : 0;
}

int tg_words_find(const tg_words *w, const char *word) {
    if (!w || !word) return -1;
    int64_t lo = 0, hi = w->nsorted - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(word, w->sorted[mid]);
        if (c == 0) return w->sorted_split[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

tg_status tg_words_batch(const tg_words *w, int split, int batch, int seq, tg_rng *rng,
                         int32_t *x, int32_t *y) {
    int64_t len = 0;
    const int32_t *s = tg_words_stream(w, split, &len);
    if (!s) return tg_error();
    if (!rng || !x || !y)
        return tg_fail(TG_ERR_ARG, "tg_words_batch: argument '%s' is NULL",
                       !rng ? "rng" : !x ? "x" : "y");
    if (batch < 1 || seq < 1 || (int64_t)seq + 1 > len)
        return tg_fail(TG_ERR_ARG, "tg_words_batch: batch %d and seq %d must be >= 1 and a "
                       "window of seq + 1 tokens must fit the stream of %lld tokens", batch,
                       seq, (long long)len);
    for (int b = 0; b < batch; b++) {
        int64_t p = tg_rng_below(rng, len - seq);
        for (int t = 0; t < seq; t++) {
            x[(int64_t)b * seq + t] = s[p + t];
            y[(int64_t)b * seq + t] = s[p + t + 1];
        }
    }
    return TG_OK;
}

double tg_words_bigram_loss(const tg_words *w) {
    if (!w) {
        tg_fail(TG_ERR_ARG, "tg_words_bigram_loss: words is NULL");
        return NAN;
    }
    double counts[TG_WORDS_VOCAB][TG_WORDS_VOCAB];
    for (int a = 0; a < TG_WORDS_VOCAB; a++)
        for (int b = 0; b < TG_WORDS_VOCAB; b++) counts[a][b] = 1; /* add-one smoothing */
    const int32_t *tr = w->stream[TG_WORDS_TRAIN], *ho = w->stream[TG_WORDS_HELD_OUT];
    for (int64_t i = 0; i + 1 < w->len[TG_WORDS_TRAIN]; i++) counts[tr[i]][tr[i + 1]] += 1;
    double row[TG_WORDS_VOCAB];
    for (int a = 0; a < TG_WORDS_VOCAB; a++) {
        row[a] = 0;
        for (int b = 0; b < TG_WORDS_VOCAB; b++) row[a] += counts[a][b];
    }
    double nll = 0;
    int64_t n = w->len[TG_WORDS_HELD_OUT] - 1;
    for (int64_t i = 0; i < n; i++) nll -= log(counts[ho[i]][ho[i + 1]] / row[ho[i]]);
    return nll / (double)n;
}

char tg_words_decode(int32_t token) {
    return token >= 1 && token <= 26 ? (char)('a' + token - 1) : '.';
}
