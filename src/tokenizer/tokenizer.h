/* SPDX-License-Identifier: Apache-2.0 */
/* tokenizer.h: a Hugging Face tokenizer.json as Forge runs it: the pieces
 * that tok_load.c builds from the file and tok_encode.c runs, in the order
 * of Hugging Face's pipeline (added tokens, normaliser, pre-tokeniser, BPE,
 * post-processor). A leaf beside the attention core: it depends on the
 * utilities alone. */
#ifndef FORGE_TOKENIZER_H
#define FORGE_TOKENIZER_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "forge.h"

/* A string -> id map, open addressing over the ids' own pieces. */
typedef struct {
    int n;            /* ids 0 .. n-1; a hole has piece NULL */
    char **piece;     /* [n] the token's text as the file has it */
    int *len;         /* [n] its bytes */
    int *slot;        /* [mask + 1] an id, or -1 */
    size_t mask;
} tok_vocab;

/* The merges: (left id, right id) -> rank and the merged id. */
typedef struct {
    uint64_t key; /* left << 32 | right; 0 with rank -1: empty */
    int rank, id;
} tok_merge;

typedef struct {
    tok_merge *slot;
    size_t mask;
} tok_merges;

typedef struct {
    int id;
    char *content;
    int len;
    int special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* How a Split keeps what its pattern matches (Hugging Face's
 * SplitDelimiterBehavior). */
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREVIOUS, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } tok_split_how;

typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL } tok_pre_kind;

typedef struct {
    tok_pre_kind kind;
    pcre2_code *re;       /* Split's pattern; ByteLevel's with use_regex, else NULL */
    tok_split_how how;
    int invert;
    int add_prefix_space; /* ByteLevel */
} tok_pre;

typedef enum { NORM_NFC, NORM_NFKC, NORM_PREPEND, NORM_REPLACE } tok_norm_kind;

/* A normaliser: Prepend's text (from), Replace's literal pattern (from)
 * and its replacement (to). */
typedef struct {
    tok_norm_kind kind;
    char *from, *to;
    int from_len, to_len;
} tok_norm;

typedef enum { DEC_BYTE_LEVEL, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP } tok_dec_kind;

/* A decoder: Replace's literal pattern and replacement; Strip's character
 * (content) and how many of it it takes from each token's start and end. */
typedef struct {
    tok_dec_kind kind;
    char *from, *to;
    int from_len, to_len;
    int start, stop;
} tok_dec;

/* One piece of a post-processor's template for a single sequence: the
 * sequence itself (ids NULL) or special tokens' ids. */
typedef struct {
    int *ids;
    int n_ids;
} tok_template_item;

struct forge_tokenizer {
    tok_vocab vocab;
    tok_merges merges;
    int ignore_merges;
    int byte_level;          /* pieces are mapped through the ByteLevel alphabet */
    int byte_fallback;       /* a character outside the vocab becomes <0xNN> tokens */
    int fuse_unk;            /* consecutive unknown characters make one unk */
    unsigned char *special;  /* [vocab_size]: 1 for an added token marked special */
    int unk;                 /* id, or -1 */
    tok_added *added;
    int n_added;
    /* added tokens by pass (not normalized, normalized) and first byte,
     * longest first: order[first[p][b] .. first[p][b + 1]) */
    int *order;
    int first[2][257];
    tok_norm *norms;
    int n_norms;
    tok_dec *decs;           /* none: tokens joined by spaces */
    int n_decs;
    tok_pre *pres;
    int n_pres;
    tok_template_item *single; /* TemplateProcessing's "single", or NULL */
    int n_single;
    int vocab_size;          /* the largest id + 1 */
    forge_special_ids specials; /* tok_config.c */
    /* ByteLevel's alphabet both ways (tok_byte_tables): byte b as a
     * character of 1 or 2 UTF-8 bytes; the byte of code point cp, or -1 */
    char byte_char[256][2];
    unsigned char byte_char_len[256];
    short char_byte[324];
};

/* tok_vocab.c */
int tok_vocab_put(tok_vocab *v, int id, const char *piece, int len); /* 0: out of memory */
int tok_vocab_find(const tok_vocab *v, const char *piece, int len);   /* id or -1 */
int tok_vocab_init(tok_vocab *v, int n);
void tok_vocab_free(tok_vocab *v);
int tok_merges_init(tok_merges *m, int n);
void tok_merges_put(tok_merges *m, int left, int right, int rank, int id);
const tok_merge *tok_merges_find(const tok_merges *m, int left, int right);
void tok_merges_free(tok_merges *m);

/* tok_bpe.c: appends the ids of one pre-tokenised piece (in the vocab's
 * alphabet) to a growing array; 0 on out of memory. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *out, int32_t id);
int tok_bpe(const forge_tokenizer *t, const char *piece, int len, tok_ids *out);

/* tok_decode.c: the text of ids (checked against the vocabulary), NUL-
 * terminated, malloc'd; *len without the NUL. */
forge_status tok_decode_text(const forge_tokenizer *t, const char *fn, const int32_t *ids, size_t n, int skip_special,
                            char **text, size_t *len);

/* tok_config.c: the special ids of the files in dir beside tokenizer.json. */
forge_status tok_read_configs(forge_tokenizer *t, const char *fn, const char *dir);
/* The file's bytes, NUL-terminated (malloc'd): FORGE_ERR_IO naming it when
 * it cannot be read. */
forge_status tok_read_file(const char *fn, const char *path, char **out, size_t *len);

/* tok_encode.c: fills t's tables of the ByteLevel alphabet. */
void tok_byte_tables(forge_tokenizer *t);

#endif
