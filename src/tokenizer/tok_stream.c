/* SPDX-License-Identifier: Apache-2.0 */
/* tok_stream.c: decoding a generation loop's ids as they come. Each new
 * id's text is the decode of the ids since the last emitted one's
 * predecessor, less the decode of that context (so that decoders which
 * treat a first token differently, such as Strip's leading space, see the
 * token in context), and is held back while it ends in U+FFFD: an
 * incomplete character whose next bytes are still to come. Hugging Face's
 * DecodeStream works the same way. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

struct forge_token_stream {
    const forge_tokenizer *tok;
    int skip_special;
    int32_t *ids;      /* the context and the ids not yet emitted */
    size_t n, cap;
    size_t prefix_ids; /* ids[0 .. prefix_ids) are context, already emitted */
    char *prefix;      /* their text */
    size_t prefix_len;
    char *text;        /* the last push's new text */
};

forge_status forge_token_stream_create(const forge_tokenizer *tok, int skip_special, forge_token_stream **out) {
    static const char fn[] = "forge_token_stream_create";
    FORGE_CHECK_NAMED(tok, "tokenizer", fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    forge_token_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->prefix = calloc(1, 1))) {
        free(s);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    s->tok = tok, s->skip_special = skip_special != 0;
    *out = s;
    return FORGE_OK;
}

void forge_token_stream_free(forge_token_stream *s) {
    if (!s) return;
    free(s->ids);
    free(s->prefix);
    free(s->text);
    free(s);
}

static int ends_incomplete(const char *text, size_t len) {
    return len >= 3 && memcmp(text + len - 3, "\xef\xbf\xbd", 3) == 0;
}

forge_status forge_token_stream_push(forge_token_stream *s, int32_t id, const char **text) {
    static const char fn[] = "forge_token_stream_push";
    FORGE_CHECK_NAMED(s, "stream", fn);
    FORGE_CHECK_NOT_NULL(text, fn);
    if (id < 0 || id >= s->tok->vocab.n || !s->tok->vocab.piece[id])
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: id %d is no token of the vocabulary", fn, (int)id);
    if (s->n == s->cap) {
        const size_t cap = s->cap ? 2 * s->cap : 16;
        int32_t *grown = realloc(s->ids, sizeof *grown * cap);
        if (!grown) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        s->ids = grown, s->cap = cap;
    }
    s->ids[s->n++] = id;
    char *all;
    size_t len;
    forge_status st = tok_decode_text(s->tok, fn, s->ids, s->n, s->skip_special, &all, &len);
    if (st != FORGE_OK) {
        s->n--;
        return st;
    }
    free(s->text);
    s->text = NULL;
    if (len <= s->prefix_len || ends_incomplete(all, len)) { /* nothing whole yet: held */
        free(all);
        s->text = calloc(1, 1);
        *text = s->text ? s->text : "";
        return FORGE_OK;
    }
    /* the new text; then the ids after the old context become the context */
    const size_t new_len = len - s->prefix_len;
    s->text = malloc(new_len + 1);
    if (s->text) memcpy(s->text, all + s->prefix_len, new_len + 1);
    free(all);
    const size_t keep = s->n - s->prefix_ids;
    memmove(s->ids, s->ids + s->prefix_ids, sizeof *s->ids * keep);
    s->n = keep, s->prefix_ids = keep;
    char *prefix;
    size_t prefix_len;
    st = s->text ? tok_decode_text(s->tok, fn, s->ids, s->n, s->skip_special, &prefix, &prefix_len)
                 : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st != FORGE_OK) return st;
    free(s->prefix);
    s->prefix = prefix, s->prefix_len = prefix_len;
    *text = s->text;
    return FORGE_OK;
}
