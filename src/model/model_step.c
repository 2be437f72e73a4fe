/* SPDX-License-Identifier: Apache-2.0 */
/* model_step.c: one forward step of the model over a batch of sequences:
 *   x = embed(tokens)
 *   per block: x += layer(rmsnorm(x)) over its paged cache;
 *              x += down(silu(gate) * up of rmsnorm(x))
 *   logits = lm_head(rmsnorm(x)) of the rows asked for
 * Everything is checked before the first layer runs, so that a bad step
 * leaves every sequence as it was. */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "model.h"

static const char fn[] = "forge_model_step";

/* Grows a workspace buffer of the backend to `bytes`. */
static forge_status grow(forge_model *m, void **buf, size_t bytes) {
    forge_buffer_free(m->ctx, *buf);
    *buf = NULL;
    return forge_buffer_alloc(m->ctx, bytes, buf);
}

static forge_status workspace(forge_model *m, long rows, long out) {
    const forge_model_config *c = &m->cfg;
    const size_t es = forge_dtype_size(m->opt.dtype);
    forge_status st = FORGE_OK;
    if (rows > m->ws_rows) {
        const size_t r = (size_t)rows;
        m->ws_rows = 0;
        if (st == FORGE_OK) st = grow(m, &m->x, r * (size_t)c->hidden * es);
        if (st == FORGE_OK) st = grow(m, &m->a, r * (size_t)c->hidden * es);
        if (st == FORGE_OK) st = grow(m, &m->y, r * (size_t)c->hidden * es);
        if (st == FORGE_OK) st = grow(m, &m->gate_up, r * 2 * (size_t)c->intermediate * es);
        if (st == FORGE_OK) st = grow(m, &m->act, r * (size_t)c->intermediate * es);
        int32_t *ids = st == FORGE_OK ? realloc(m->ids, sizeof *ids * r) : NULL;
        if (st == FORGE_OK && !ids) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (ids) m->ids = ids;
        if (st == FORGE_OK) m->ws_rows = rows;
    }
    if (st == FORGE_OK && out > m->ws_out) {
        m->ws_out = 0;
        st = grow(m, &m->last, (size_t)out * (size_t)c->hidden * es);
        if (st == FORGE_OK) st = grow(m, &m->logits, (size_t)out * (size_t)c->vocab_size * es);
        if (st == FORGE_OK) m->ws_out = out;
    }
    return st;
}

/* The step's inputs: distinct live sequences, tokens in the vocabulary, and
 * room for them (length and pages); seqs[i] the layers' view of input i
 * (its sequence at its length), *total their tokens. */
static forge_status check_inputs(const forge_model *m, const forge_model_input *in, int n, forge_seq *seqs,
                                 long *total) {
    const forge_paged_config pc = forge_paged_cache_config(m->caches[0]);
    long pages = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        int len;
        forge_status st = forge_model_seq_len(m, in[i].seq, &len);
        if (st != FORGE_OK) return st;
        for (int j = 0; j < i; j++)
            if (in[j].seq == in[i].seq)
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: in[%d] and in[%d] are both sequence %d", fn, j, i,
                                  in[i].seq);
        if (in[i].n_tokens < 1 || !in[i].tokens)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: in[%d] has %d tokens (or none given)", fn, i,
                              in[i].n_tokens);
        for (int t = 0; t < in[i].n_tokens; t++)
            if (in[i].tokens[t] < 0 || in[i].tokens[t] >= m->cfg.vocab_size)
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: in[%d].tokens[%d] = %d is outside the vocabulary "
                                  "[0, %d)", fn, i, t, (int)in[i].tokens[t], m->cfg.vocab_size);
        if ((long)len + in[i].n_tokens > pc.max_seq_len)
            return forge_fail(FORGE_ERR_CAPACITY, "%s: sequence %d holds %d tokens; %d more pass its room of %d", fn,
                              in[i].seq, len, in[i].n_tokens, pc.max_seq_len);
        pages += (len + in[i].n_tokens + pc.page_size - 1) / pc.page_size - (len + pc.page_size - 1) / pc.page_size;
        seqs[i] = (forge_seq){in[i].seq, len, in[i].n_tokens};
        *total += in[i].n_tokens;
    }
    if (pages > forge_paged_cache_free_pages(m->caches[0]))
        return forge_fail(FORGE_ERR_CAPACITY, "%s: the step needs %ld pages of the cache, %d are free", fn, pages,
                          forge_paged_cache_free_pages(m->caches[0]));
    return FORGE_OK;
}

/* One block over the step's rows x: attention, then the MLP. */
static forge_status block(forge_model *m, int l, const forge_seq *seqs, int n, long rows) {
    const forge_model_config *c = &m->cfg;
    const forge_backend_ops *ops = m->ctx->ops;
    const model_block *b = &m->blocks[l];
    const size_t elems = (size_t)rows * (size_t)c->hidden;
    forge_status st = ops->rmsnorm(m->ctx, m->opt.dtype, m->a, m->x, b->attn_norm, rows, c->hidden, c->norm_eps);
    if (st == FORGE_OK) st = forge_layer_forward_paged(m->layers[l], m->caches[l], seqs, n, m->a, m->y);
    if (st == FORGE_OK) st = ops->add(m->ctx, m->opt.dtype, m->x, m->y, elems);
    if (st == FORGE_OK) st = ops->rmsnorm(m->ctx, m->opt.dtype, m->a, m->x, b->mlp_norm, rows, c->hidden, c->norm_eps);
    if (st == FORGE_OK) st = ops->linear(m->ctx, m->opt.dtype, m->gate_up, m->a, b->gate_up, rows, c->hidden, 2 * c->intermediate);
    if (st == FORGE_OK) st = ops->silu_mul(m->ctx, m->opt.dtype, m->act, m->gate_up, rows, c->intermediate);
    if (st == FORGE_OK) st = ops->linear(m->ctx, m->opt.dtype, m->y, m->act, b->down, rows, c->intermediate, c->hidden);
    if (st == FORGE_OK) st = ops->add(m->ctx, m->opt.dtype, m->x, m->y, elems);
    return st;
}

forge_status forge_model_step(forge_model *m, const forge_model_input *in, int n, int all_logits, float *logits) {
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(in, fn);
    FORGE_CHECK_NOT_NULL(logits, fn);
    if (n < 1 || n > m->opt.max_seqs)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n = %d is outside [1, max_seqs = %d]", fn, n, m->opt.max_seqs);
    long total = 0;
    forge_seq *seqs = malloc(sizeof *seqs * (size_t)n);
    forge_status st = seqs ? check_inputs(m, in, n, seqs, &total) : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const long out = st == FORGE_OK && all_logits ? total : n;
    if (st == FORGE_OK) st = workspace(m, total, out);
    if (st != FORGE_OK) {
        free(seqs);
        return st;
    }
    const forge_model_config *c = &m->cfg;
    const forge_backend_ops *ops = m->ctx->ops;
    const size_t es = forge_dtype_size(m->opt.dtype), row = (size_t)c->hidden * es;
    for (int i = 0, r = 0; i < n; r += in[i].n_tokens, i++)
        memcpy(m->ids + r, in[i].tokens, sizeof *m->ids * (size_t)in[i].n_tokens);
    st = ops->gather_rows(m->ctx, m->x, m->embed, m->ids, total, row);
    for (int l = 0; st == FORGE_OK && l < c->layers; l++) st = block(m, l, seqs, n, total);
    /* the rows whose logits are asked for: every row, or each sequence's last */
    for (int i = 0, r = 0; i < n; i++) {
        r += in[i].n_tokens;
        if (!all_logits) m->ids[i] = r - 1;
    }
    for (long r = 0; all_logits && r < total; r++) m->ids[r] = (int32_t)r;
    if (st == FORGE_OK) st = ops->gather_rows(m->ctx, m->last, m->x, m->ids, out, row);
    if (st == FORGE_OK) st = ops->rmsnorm(m->ctx, m->opt.dtype, m->last, m->last, m->final_norm, out, c->hidden, c->norm_eps);
    if (st == FORGE_OK) st = ops->linear(m->ctx, m->opt.dtype, m->logits, m->last, m->lm_head, out, c->hidden, c->vocab_size);
    const size_t n_logits = (size_t)out * (size_t)c->vocab_size;
    if (st == FORGE_OK && m->opt.dtype == FORGE_F32) {
        st = forge_buffer_download(m->ctx, logits, m->logits, n_logits * sizeof(float));
    } else if (st == FORGE_OK) { /* 16-bit logits widened: through the front of the caller's buffer, from its end */
        void *narrow = (char *)logits + n_logits * (sizeof(float) - es);
        st = forge_buffer_download(m->ctx, narrow, m->logits, n_logits * es);
        if (st == FORGE_OK) st = forge_convert(logits, FORGE_F32, narrow, m->opt.dtype, n_logits);
    }
    free(seqs);
    return st;
}
