/*
 * io/words.h — internals of the word-list dataset (io/words.c): the built-in sample.
 */
#ifndef TG_WORDS_H
#define TG_WORDS_H

#include "../core/core.h"

/* Lines of space-separated words, ended by NULL (io/words_builtin.c). */
extern const char *const tg_words_builtin_lines[];

#endif
