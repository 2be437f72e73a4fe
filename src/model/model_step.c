/* SPDX-License-Identifier: Apache-2.0 */
/* model_step.c: one forward step of the model over a batch of sequences:
 *   x = embed(tokens)
 *   per block: x += layer(rmsnorm(x)) over its paged cache;
 *              x += down(silu(gate) * up of rmsnorm(x))
 *   logits = lm_head(rmsnorm(x)) of the rows asked for
 * each residual add fused into the norm that follows it. Everything is
 * checked, and every cache's pages taken, before the first layer runs, so
 * that a bad step leaves every sequence as it was. A decode step (one token
 * of each sequence) is recorded, where the backend records, and replayed
 * while it serves: the same sequences in the same order, the buffers it
 * baked in unmoved and the lengths within its reach; its tokens and
 * positions are read from backend memory when it runs. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "model.h"

/* Grows a workspace buffer of the backend to `bytes`. */
static forge_status grow(forge_model *m, void **buf, size_t bytes) {
    forge_buffer_free(m->ctx, *buf);
    *buf = NULL;
    return forge_buffer_alloc(m->ctx, bytes, buf);
}

/* Bytes of the step's integers (forge_model's ints) at rows and out, and
 * where the greedy tokens go: after the tokens, rows and lengths of the
 * largest step. */
static size_t ints_bytes(const forge_model *m, long rows, long out) {
    return sizeof(int32_t) * ((size_t)rows + (size_t)out + 2 * (size_t)m->opt.max_seqs);
}

static int32_t *next_tokens(const forge_model *m) { return m->ints_dev + m->ws_rows + m->ws_out + m->opt.max_seqs; }

static forge_status workspace(forge_model *m, long rows, long out, const char *fn) {
    const forge_model_config *c = &m->cfg;
    const size_t es = forge_dtype_size(m->opt.dtype);
    if (rows <= m->ws_rows && out <= m->ws_out) return FORGE_OK;
    rows = rows > m->ws_rows ? rows : m->ws_rows;
    out = out > m->ws_out ? out : m->ws_out;
    m->ws_gen++;
    m->ws_rows = m->ws_out = 0;
    const size_t r = (size_t)rows;
    forge_status st = grow(m, &m->x, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(m, &m->a, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(m, &m->y, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(m, &m->gate_up, r * 2 * (size_t)c->intermediate * es);
    if (st == FORGE_OK) st = grow(m, &m->act, r * (size_t)c->intermediate * es);
    if (st == FORGE_OK) st = grow(m, &m->last, (size_t)out * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(m, &m->logits, (size_t)out * (size_t)c->vocab_size * es);
    if (st == FORGE_OK) st = grow(m, (void **)&m->ints_dev, ints_bytes(m, rows, out));
    int32_t *ints = st == FORGE_OK ? realloc(m->ints, ints_bytes(m, rows, out)) : NULL;
    if (st == FORGE_OK && !ints) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (ints) m->ints = ints;
    if (st == FORGE_OK) m->ws_rows = rows, m->ws_out = out;
    return st;
}

/* The step's inputs: distinct live sequences with tokens in the
 * vocabulary (their room is the caches' to check, as forge_stack_begin
 * takes their pages); seqs[i] the layers' view of input i (its sequence at
 * its length), *total their tokens. */
static forge_status check_inputs(const forge_model *m, const forge_model_input *in, int n, forge_seq *seqs,
                                 long *total, const char *fn) {
    *total = 0;
    for (int i = 0; i < n; i++) {
        int len;
        forge_status st = forge_paged_seq_len(m->caches[0], in[i].seq, &len);
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
        seqs[i] = (forge_seq){in[i].seq, len, in[i].n_tokens};
        *total += in[i].n_tokens;
    }
    return FORGE_OK;
}

/* The step's work in backend memory, from the tokens (and the lengths,
 * where pos_dev is set) in ints_dev: rows of x, out of them asked for
 * (rows_dev: which, or NULL for every row), their logits into m->logits. */
static forge_status run(forge_model *m, forge_stack_step *step, long rows, long out, const int32_t *rows_dev,
                        const int *pos_dev) {
    const forge_model_config *c = &m->cfg;
    const forge_backend_ops *ops = m->ctx->ops;
    const forge_dtype dt = m->opt.dtype;
    const size_t row = (size_t)c->hidden * forge_dtype_size(dt);
    forge_status st = ops->gather_rows(m->ctx, m->x, m->embed, m->ints_dev, rows, row);
    for (int l = 0; st == FORGE_OK && l < c->layers; l++) {
        const model_block *b = &m->blocks[l];
        st = ops->rmsnorm(m->ctx, dt, m->a, m->x, l ? m->y : NULL, b->attn_norm, rows, c->hidden, c->norm_eps);
        if (st == FORGE_OK) st = forge_stack_forward(step, l, m->a, m->y, pos_dev);
        if (st == FORGE_OK) st = ops->rmsnorm(m->ctx, dt, m->a, m->x, m->y, b->mlp_norm, rows, c->hidden, c->norm_eps);
        if (st == FORGE_OK) st = ops->linear(m->ctx, dt, m->gate_up, m->a, b->gate_up, rows, c->hidden, 2 * c->intermediate);
        if (st == FORGE_OK) st = ops->silu_mul(m->ctx, dt, m->act, m->gate_up, rows, c->intermediate);
        if (st == FORGE_OK) st = ops->linear(m->ctx, dt, m->y, m->act, b->down, rows, c->intermediate, c->hidden);
    }
    /* the last residual and the final norm over every row, then the rows asked for */
    if (st == FORGE_OK) st = ops->rmsnorm(m->ctx, dt, m->a, m->x, m->y, m->final_norm, rows, c->hidden, c->norm_eps);
    const void *last = m->a;
    if (st == FORGE_OK && rows_dev) {
        st = ops->gather_rows(m->ctx, m->last, m->a, rows_dev, out, row);
        last = m->last;
    }
    if (st == FORGE_OK) st = ops->linear(m->ctx, dt, m->logits, last, m->lm_head, out, c->hidden, c->vocab_size);
    return st;
}

void model_graph_free(forge_model *m) {
    model_graph *g = &m->graph;
    if (g->rec) m->ctx->ops->record_free(g->rec);
    free(g->seqs);
    free(g->stamps);
    memset(g, 0, sizeof *g);
}

/* The recorded decode step serves this one: the same sequences in order,
 * nothing it baked in moved, every length within its reach. */
static int graph_serves(const forge_model *m, const forge_stack_step *step) {
    const model_graph *g = &m->graph;
    if (!g->rec || g->n != step->b.n || g->ws_gen != m->ws_gen) return 0;
    for (int i = 0; i < g->n; i++)
        if (g->seqs[i] != step->b.ids[i] || step->b.lens[i] > g->reach) return 0;
    for (int l = 0; l < m->cfg.layers; l++) {
        const forge_batch b = forge_batch_for(&step->b, m->layers[l]);
        if (m->ctx->ops->call_stamp(m->layers[l], m->caches[l], &b, NULL) != g->stamps[l]) return 0;
    }
    return 1;
}

/* A decode step through its recording: recorded anew where the last one
 * no longer serves, then replayed. */
static forge_status run_recorded(forge_model *m, forge_stack_step *step, long rows, const char *fn) {
    const forge_backend_ops *ops = m->ctx->ops;
    model_graph *g = &m->graph;
    const int *pos_dev = m->ints_dev + 2 * rows; /* after the tokens and the rows */
    if (!graph_serves(m, step)) {
        if (!g->seqs) g->seqs = malloc(sizeof *g->seqs * (size_t)m->opt.max_seqs);
        if (!g->stamps) g->stamps = malloc(sizeof *g->stamps * (size_t)m->cfg.layers);
        if (!g->seqs || !g->stamps) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        int reach = INT_MAX;
        for (int l = 0; l < m->cfg.layers; l++) {
            int r;
            const forge_batch b = forge_batch_for(&step->b, m->layers[l]);
            g->stamps[l] = ops->call_stamp(m->layers[l], m->caches[l], &b, &r);
            if (r < reach) reach = r;
        }
        /* another batch size or other splits: maybe other kernels, which an
         * update of the recording cannot take; it is made anew */
        if (g->rec && (g->n != step->b.n || g->reach != reach)) {
            ops->record_free(g->rec);
            g->rec = NULL;
        }
        g->n = 0; /* serves nothing until recorded */
        forge_status st = ops->record_begin(m->ctx, fn);
        if (st != FORGE_OK) return st;
        st = run(m, step, rows, rows, NULL, pos_dev);
        const forge_status end = ops->record_end(m->ctx, st == FORGE_OK ? &g->rec : NULL, fn);
        if (st == FORGE_OK) st = end;
        if (st != FORGE_OK) return st;
        g->n = step->b.n, g->reach = reach, g->ws_gen = m->ws_gen;
        memcpy(g->seqs, step->b.ids, sizeof *g->seqs * (size_t)g->n);
    }
    return ops->replay(m->ctx, g->rec, fn);
}

/* The step's work queued, up to the logits of the rows asked for in
 * m->logits (*out of them): forge_model_step's and forge_model_step_greedy's. */
static forge_status step(forge_model *m, const forge_model_input *in, int n, int all_logits, long *out_rows,
                         const char *fn) {
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(in, fn);
    if (n < 1 || n > m->opt.max_seqs)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n = %d is outside [1, max_seqs = %d]", fn, n,
                          m->opt.max_seqs);
    long total = 0;
    forge_seq *seqs = malloc(sizeof *seqs * (size_t)n);
    forge_status st = seqs ? check_inputs(m, in, n, seqs, &total, fn) : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    /* every cache's room checked and its pages taken before the workspace
     * grows for the step (begin's failure has ended the step) */
    forge_stack_step stack;
    if (st == FORGE_OK) st = forge_stack_begin(&stack, fn, m->layers, m->caches, m->cfg.layers, seqs, n);
    free(seqs);
    if (st != FORGE_OK) return st;
    /* every row's logits, or each sequence's last row's: all rows where each has one token */
    const long out = all_logits ? total : n;
    st = workspace(m, total, out, fn);
    if (st == FORGE_OK) { /* the integers: tokens, the rows asked for, the lengths (for a recording) */
        int32_t *tokens = m->ints, *rows = m->ints + total, *pos = rows + out;
        for (int i = 0, r = 0; i < n; r += in[i].n_tokens, i++) {
            memcpy(tokens + r, in[i].tokens, sizeof *tokens * (size_t)in[i].n_tokens);
            rows[i] = r + in[i].n_tokens - 1;
            pos[i] = stack.b.pos0[i];
        }
        st = forge_buffer_upload(m->ctx, m->ints_dev, m->ints, sizeof *pos * ((size_t)total + (size_t)out + (size_t)n));
    }
    if (st == FORGE_OK && total == n && m->ctx->ops->record_begin) /* a decode step */
        st = run_recorded(m, &stack, total, fn);
    else if (st == FORGE_OK)
        st = run(m, &stack, total, out, out == total ? NULL : m->ints_dev + total, NULL);
    forge_stack_end(&stack, st == FORGE_OK);
    for (int i = 0; st == FORGE_OK && i < n; i++) { /* the repetition penalty's history */
        uint32_t *seen = model_seen(m, in[i].seq);
        for (int t = 0; t < in[i].n_tokens; t++) seen[in[i].tokens[t] / 32] |= 1u << in[i].tokens[t] % 32;
    }
    *out_rows = out;
    return st;
}

/* n_logits of the step's logits from the first'th on, widened to float32
 * into the host's logits. */
static forge_status download_logits(forge_model *m, float *logits, size_t first, size_t n_logits) {
    const size_t es = forge_dtype_size(m->opt.dtype);
    const char *src = (const char *)m->logits + first * es;
    if (m->opt.dtype == FORGE_F32) return forge_buffer_download(m->ctx, logits, src, n_logits * sizeof(float));
    /* 16-bit logits: through the end of the caller's buffer, widened to its front */
    void *narrow = (char *)logits + n_logits * (sizeof(float) - es);
    forge_status st = forge_buffer_download(m->ctx, narrow, src, n_logits * es);
    if (st == FORGE_OK) st = forge_convert(logits, FORGE_F32, narrow, m->opt.dtype, n_logits);
    return st;
}

/* The step's n greedy tokens, chosen on the device, into next. */
static forge_status greedy(forge_model *m, int n, int32_t *next) {
    forge_status st = m->ctx->ops->argmax_rows(m->ctx, m->opt.dtype, next_tokens(m), m->logits, n, m->cfg.vocab_size);
    if (st == FORGE_OK) st = forge_buffer_download(m->ctx, next, next_tokens(m), sizeof *next * (size_t)n);
    return st;
}

forge_status forge_model_step(forge_model *m, const forge_model_input *in, int n, int all_logits, float *logits) {
    static const char fn[] = "forge_model_step";
    FORGE_CHECK_NOT_NULL(logits, fn);
    long out;
    forge_status st = step(m, in, n, all_logits, &out, fn);
    if (st == FORGE_OK) st = download_logits(m, logits, 0, (size_t)out * (size_t)m->cfg.vocab_size);
    return st;
}

forge_status forge_model_step_greedy(forge_model *m, const forge_model_input *in, int n, int32_t *next) {
    static const char fn[] = "forge_model_step_greedy";
    FORGE_CHECK_NOT_NULL(next, fn);
    long out;
    forge_status st = step(m, in, n, 0, &out, fn);
    return st == FORGE_OK ? greedy(m, n, next) : st;
}

/* The host's logits of `rows` rows and the draw's scratch, made before the
 * step runs so that a failure leaves every sequence as it was. */
static forge_status host_buffers(forge_model *m, long rows, const char *fn) {
    const size_t vocab = (size_t)m->cfg.vocab_size;
    if (!m->scratch) m->scratch = malloc(sizeof *m->scratch * vocab);
    if (rows > m->host_rows) {
        float *p = realloc(m->host_logits, sizeof *p * (size_t)rows * vocab);
        if (p) m->host_logits = p, m->host_rows = rows;
    }
    if (!m->scratch || rows > m->host_rows)
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld rows of logits", fn, rows);
    return FORGE_OK;
}

/* Bytes of the fronts' buffers for rows rows: fronts, settings, seen bits. */
static size_t front_bytes(const forge_model *m, long rows) {
    return (size_t)rows * (FORGE_SAMPLE_ROW_BYTES(MODEL_FRONT_CAP) + sizeof(forge_sample_row) +
                           m->seen_words * sizeof(uint32_t));
}

/* The fronts' buffers for `rows` rows, made before the step runs. */
static forge_status front_buffers(forge_model *m, long rows, const char *fn) {
    if (rows <= m->front_rows) return FORGE_OK;
    forge_buffer_free(m->ctx, m->front_dev);
    free(m->front_host);
    m->front_dev = m->front_host = NULL;
    m->front_rows = 0;
    forge_status st = forge_buffer_alloc(m->ctx, front_bytes(m, rows), &m->front_dev);
    if (st == FORGE_OK && !(m->front_host = malloc(front_bytes(m, rows))))
        st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld rows of candidates", fn, rows);
    if (st == FORGE_OK) m->front_rows = rows;
    return st;
}

/* Input i's draw's generator: its seed and its sequence's length, so that
 * each length has a draw of its own, whatever shares the step. */
static uint64_t draw_rng(const forge_model *m, const forge_model_input *in, const forge_sampling *s, int i) {
    int len;
    forge_paged_seq_len(m->caches[0], in[i].seq, &len);
    return s[i].seed + (uint64_t)len * 0x9e3779b97f4a7c15ull;
}

/* Input i's token drawn from its row of logits on the host. */
static int32_t draw_row(forge_model *m, const forge_model_input *in, const forge_sampling *s, int i,
                        const float *logits) {
    uint64_t rng = draw_rng(m, in, s, i);
    return model_sample(logits, m->cfg.vocab_size, &s[i], model_seen(m, in[i].seq), &rng, m->scratch);
}

/* The step's draws by the backend's fronts: settings and (with a penalty)
 * each sequence's seen bits up, the fronts down, a draw from each (its row
 * of logits fetched where the front cannot say). */
static forge_status draw_fronts(forge_model *m, const forge_model_input *in, int n, const forge_sampling *s,
                                int32_t *next) {
    const size_t row = FORGE_SAMPLE_ROW_BYTES(MODEL_FRONT_CAP), words = m->seen_words;
    const int vocab = m->cfg.vocab_size;
    char *host = m->front_host, *dev = m->front_dev;
    forge_sample_row *settings = (forge_sample_row *)(host + (size_t)n * row);
    uint32_t *seen = (uint32_t *)(settings + n);
    int penalty = 0;
    for (int i = 0; i < n; i++) {
        settings[i] = (forge_sample_row){s[i].temperature, s[i].top_p, s[i].min_p, s[i].repeat_penalty, s[i].top_k};
        penalty |= s[i].repeat_penalty != 1.0f;
    }
    for (int i = 0; penalty && i < n; i++) memcpy(seen + (size_t)i * words, model_seen(m, in[i].seq), words * sizeof *seen);
    const size_t up = (size_t)n * sizeof *settings + (penalty ? (size_t)n * words * sizeof *seen : 0);
    forge_status st = forge_buffer_upload(m->ctx, dev + (size_t)n * row, settings, up);
    if (st == FORGE_OK) {
        const forge_sample_row *settings_dev = (const forge_sample_row *)(dev + (size_t)n * row);
        st = m->ctx->ops->sample_front(m->ctx, m->opt.dtype, dev, m->logits, settings_dev,
                                       penalty ? (const uint32_t *)(settings_dev + n) : NULL, n, vocab, MODEL_FRONT_CAP);
    }
    if (st == FORGE_OK) st = forge_buffer_download(m->ctx, host, dev, (size_t)n * row);
    for (int i = 0; st == FORGE_OK && i < n; i++) {
        const forge_sample_head *h = (const forge_sample_head *)(host + (size_t)i * row);
        uint64_t rng = draw_rng(m, in, s, i);
        next[i] = model_draw_front(h, (forge_scored *)(h + 1), MODEL_FRONT_CAP, vocab, &s[i], &rng);
        if (next[i] < 0) st = download_logits(m, m->host_logits, (size_t)i * (size_t)vocab, (size_t)vocab);
        if (next[i] < 0 && st == FORGE_OK) next[i] = draw_row(m, in, s, i, m->host_logits);
    }
    return st;
}

forge_status forge_model_step_sample(forge_model *m, const forge_model_input *in, int n, const forge_sampling *s,
                                     int32_t *next) {
    static const char fn[] = "forge_model_step_sample";
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(s, fn);
    FORGE_CHECK_NOT_NULL(next, fn);
    int on_device = 1;
    forge_status st = FORGE_OK;
    for (int i = 0; st == FORGE_OK && i < n && n <= m->opt.max_seqs; i++) { /* step() names a bad n */
        st = model_check_sampling(&s[i], i, fn);
        on_device &= s[i].temperature == 0.0f && s[i].repeat_penalty == 1.0f;
    }
    /* greedy rows alone: argmax; with a backend that finds fronts: they,
     * and one row of logits for a front that cannot say; else every row's
     * logits to the host */
    const int fronts = !on_device && m->ctx->ops->sample_front;
    if (st == FORGE_OK && fronts) st = front_buffers(m, n, fn);
    if (st == FORGE_OK && !on_device) st = host_buffers(m, fronts ? 1 : n, fn);
    long out;
    if (st == FORGE_OK) st = step(m, in, n, 0, &out, fn);
    if (st != FORGE_OK) return st;
    if (on_device) return greedy(m, n, next);
    if (fronts) return draw_fronts(m, in, n, s, next);
    const int vocab = m->cfg.vocab_size;
    st = download_logits(m, m->host_logits, 0, (size_t)n * (size_t)vocab);
    for (int i = 0; st == FORGE_OK && i < n; i++) next[i] = draw_row(m, in, s, i, m->host_logits + (size_t)i * vocab);
    return st;
}
