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

/* Digits and Punctuation are Splits on a character class. */
typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE } tok_pre_kind;

/* When Metaspace puts its mark before a piece that lacks one: always, only
 * before the piece that begins the text, or never. */
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend;

typedef struct {
    tok_pre_kind kind;
    /* Split's pattern; ByteLevel's with use_regex; Metaspace's mark, when
     * it splits; else NULL */
    pcre2_code *re;
    tok_split_how how;
    int invert;
    int add_prefix_space; /* ByteLevel */
    tok_prepend prepend;  /* Metaspace */
    char mark[5];         /* Metaspace's replacement for ' ', one character */
    int mark_len;
} tok_pre;

typedef enum { NORM_NFC, NORM_NFKC, NORM_LOWERCASE, NORM_PREPEND, NORM_REPLACE } tok_norm_kind;

/* A normaliser: Prepend's text, or Replace's pattern (a literal or a
 * regex, compiled) and replacement (text). */
typedef struct {
    tok_norm_kind kind;
    pcre2_code *re;
    char *text;
    int text_len;
} tok_norm;

typedef enum { DEC_BYTE_LEVEL, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE } tok_dec_kind;

/* A decoder: Replace's pattern (re) and replacement (text); Strip's
 * character (text) and how many of it it takes from each token's start
 * and end; Metaspace's mark (text), dropped from the first token when
 * strip_first, else a space. */
typedef struct {
    tok_dec_kind kind;
    pcre2_code *re;
    char *text;
    int text_len;
    int start, stop;
    int strip_first;
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
    int word_starts;         /* tok_word_starts */
    /* the ids BPE starts from, looked up once: the token of each character
     * of the Basic Multilingual Plane, and byte_fallback's <0xNN> of each
     * byte; -1 where the vocabulary has none */
    int32_t *char_id;        /* [0x10000] */
    int32_t byte_id[256];
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
uint64_t tok_hash_bytes(const char *s, int len); /* FNV-1a */
int tok_vocab_put(tok_vocab *v, int id, const char *piece, int len); /* 0: out of memory */
int tok_vocab_find(const tok_vocab *v, const char *piece, int len);   /* id or -1 */
int tok_vocab_init(tok_vocab *v, int n);
void tok_vocab_free(tok_vocab *v);
int tok_merges_init(tok_merges *m, int n);
void tok_merges_put(tok_merges *m, int left, int right, int rank, int id);
const tok_merge *tok_merges_find(const tok_merges *m, int left, int right);
void tok_merges_free(tok_merges *m);

/* tok_model.c: the BPE model of the file (vocab, merges, added tokens). */
typedef struct cJSON cJSON;
forge_status tok_load_model(forge_tokenizer *t, const char *fn, const cJSON *model, const cJSON *added);
/* The loaders' JSON helpers: FORGE_ERR_UNSUPPORTED naming what is not
 * implemented, FORGE_ERR_FORMAT saying what is wrong, a member that is
 * true, a component's "type" (or NULL). */
forge_status tok_refuse(const char *fn, const char *what, const char *name);
forge_status tok_bad(const char *fn, const char *what);
int tok_flag(const cJSON *c, const char *name);
const char *tok_type_of(const cJSON *c);

/* tok_pattern.c: patterns compiled (literal: the text itself), a text as
 * its matches and the gaps between them (empty matches left out), and
 * every match replaced (a malloc'd, NUL-terminated copy; NULL on out of
 * memory). Subjects are valid UTF-8. */
typedef struct {
    size_t start, end;
    int match;
} tok_span;
typedef struct {
    tok_span *v;
    size_t n, cap;
} tok_spans;
forge_status tok_compile(const char *fn, const char *what, const char *pattern, size_t len, int literal,
                         pcre2_code **out);
int tok_find_spans(const pcre2_code *re, const char *s, size_t len, pcre2_match_data *md, tok_spans *sp); /* 0: OOM */
char *tok_replace(const pcre2_code *re, const char *s, size_t len, const char *to, size_t to_len,
                  pcre2_match_data *md, size_t *out_len);

/* Ids as a growing array. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *out, int32_t id); /* 0: out of memory */
/* Room for need bytes in *bytes, its capacity *cap doubled from first as
 * it grows; 0: out of memory (the bytes as they were). */
int tok_bytes_reserve(char **bytes, size_t *cap, size_t need, size_t first);

/* One encode call: its tokenizer, the public call's name, PCRE2's match
 * data, the spans of the last split, the pieces already through BPE, and
 * the ids so far. */
typedef struct tok_cache tok_cache;
typedef struct {
    const forge_tokenizer *t;
    const char *fn;
    pcre2_match_data *md;
    tok_spans spans;
    tok_cache *cache;
    tok_ids *out;
} tok_encoder;

/* tok_normalize.c: the normalisers over s; *out is malloc'd (or s itself
 * when there are none: *owned 0). */
forge_status tok_normalize(const forge_tokenizer *t, const char *fn, pcre2_match_data *md, const char *s, size_t len,
                           char **out, size_t *out_len, int *owned);

/* tok_pretok.c: the pre-tokenisers over one stretch of normalised text
 * (head: it begins the text), and BPE over the pieces. */
forge_status tok_pre_tokenize(tok_encoder *e, const char *s, size_t len, int head);
/* Fills t's tables of the ByteLevel alphabet. */
void tok_byte_tables(forge_tokenizer *t);

/* tok_bpe.c: appends the ids of one pre-tokenised piece (in the vocab's
 * alphabet); 0 on out of memory. */
int tok_bpe(tok_encoder *e, const char *piece, int len);
void tok_cache_free(tok_cache *c);
/* Whether SentencePiece's word marks cut a piece into words that BPE can
 * run one at a time. */
int tok_word_starts(const forge_tokenizer *t);

/* tok_decode.c: the text of ids (checked against the vocabulary), NUL-
 * terminated, malloc'd; *len without the NUL. */
forge_status tok_decode_text(const forge_tokenizer *t, const char *fn, const int32_t *ids, size_t n, int skip_special,
                            char **text, size_t *len);

/* tok_config.c: the special ids of the files in dir beside tokenizer.json. */
forge_status tok_read_configs(forge_tokenizer *t, const char *fn, const char *dir);

#endif
