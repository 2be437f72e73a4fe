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

/* Grows a workspace buffer of rank k to `bytes`. */
static forge_status grow(model_rank *k, void **buf, size_t bytes) {
    forge_buffer_free(k->ctx, *buf);
    *buf = NULL;
    return forge_buffer_alloc(k->ctx, bytes, buf);
}

/* Bytes of the step's integers (model_rank's ints) at rows and out, and
 * where the greedy tokens go: after the tokens, rows and lengths of the
 * largest step. */
static size_t ints_bytes(const forge_model *m, long rows, long out) {
    return sizeof(int32_t) * ((size_t)rows + (size_t)out + 2 * (size_t)m->opt.max_seqs);
}

static int32_t *next_tokens(const forge_model *m, const model_rank *k) {
    return k->ints_dev + k->ws_rows + k->ws_out + m->opt.max_seqs;
}

static forge_status workspace(forge_model *m, model_rank *k, long rows, long out, const char *fn) {
    const forge_model_config *c = &m->cfg;
    const model_split *sp = &m->split;
    const size_t es = forge_dtype_size(m->opt.dtype);
    if (rows <= k->ws_rows && out <= k->ws_out) return FORGE_OK;
    rows = rows > k->ws_rows ? rows : k->ws_rows;
    out = out > k->ws_out ? out : k->ws_out;
    k->ws_gen++;
    k->ws_rows = k->ws_out = 0;
    const size_t r = (size_t)rows, o = (size_t)out;
    forge_status st = grow(k, &k->x, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(k, &k->a, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(k, &k->y, r * (size_t)c->hidden * es);
    if (st == FORGE_OK) st = grow(k, &k->gate_up, r * 2 * (size_t)sp->inter * es);
    if (st == FORGE_OK) st = grow(k, &k->act, r * (size_t)sp->inter * es);
    if (st == FORGE_OK) st = grow(k, &k->last, o * (size_t)c->hidden * es);
    if (st == FORGE_OK && k == m->ranks) st = grow(k, &k->logits, o * (size_t)c->vocab_size * es);
    if (st == FORGE_OK && k->comm) st = grow(k, &k->part, o * (size_t)sp->vocab_rows * es);
    if (st == FORGE_OK && k->comm)
        st = grow(k, &k->gathered, (size_t)sp->ranks * o * (size_t)sp->vocab_rows * es);
    if (st == FORGE_OK) st = grow(k, (void **)&k->ints_dev, ints_bytes(m, rows, out));
    int32_t *ints = st == FORGE_OK ? realloc(k->ints, ints_bytes(m, rows, out)) : NULL;
    if (st == FORGE_OK && !ints) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (ints) k->ints = ints;
    if (st == FORGE_OK) k->ws_rows = rows, k->ws_out = out;
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
        forge_status st = forge_paged_seq_len(m->ranks[0].caches[0], in[i].seq, &len);
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

/* The LM head of the rows in `last` (out of them) on a split model: each
 * rank's rows of the vocabulary, gathered on every rank, put in order into
 * rank 0's logits. */
static forge_status split_lm_head(forge_model *m, model_rank *k, const void *last, long out) {
    const forge_backend_ops *ops = k->ctx->ops;
    const model_split *sp = &m->split;
    const forge_dtype dt = m->opt.dtype;
    const size_t es = forge_dtype_size(dt), rows_bytes = (size_t)sp->vocab_rows * es;
    forge_status st = ops->linear(k->ctx, dt, k->part, last, k->lm_head, out, m->cfg.hidden, sp->vocab_rows);
    if (st == FORGE_OK)
        st = ops->all_gather(k->ctx, k->comm, dt, k->gathered, k->part, (size_t)out * (size_t)sp->vocab_rows);
    for (int r = 0; st == FORGE_OK && k == m->ranks && r < sp->ranks; r++) {
        const long first = (long)r * sp->vocab_rows, held = m->cfg.vocab_size - first;
        if (held <= 0) break;
        st = ops->copy_2d(k->ctx, (char *)k->logits + (size_t)first * es, (size_t)m->cfg.vocab_size * es,
                          (char *)k->gathered + (size_t)r * (size_t)out * rows_bytes, rows_bytes,
                          (size_t)(held < sp->vocab_rows ? held : sp->vocab_rows) * es, (size_t)out);
    }
    return st;
}

/* Rank k's work of the step in its memory, from the tokens (and the
 * lengths, where pos_dev is set) in ints_dev: rows of x, out of them asked
 * for (rows_dev: which, or NULL for every row), their logits into rank 0's
 * logits. On a split model the output and down projections' partial sums
 * are summed over the ranks before their residuals. */
static forge_status run(forge_model *m, model_rank *k, forge_stack_step *step, long rows, long out,
                        const int32_t *rows_dev, const int *pos_dev) {
    const forge_model_config *c = &m->cfg;
    const forge_backend_ops *ops = k->ctx->ops;
    const forge_dtype dt = m->opt.dtype;
    const int inter = m->split.inter, split = k->comm != NULL;
    const size_t row = (size_t)c->hidden * forge_dtype_size(dt), hidden = (size_t)rows * (size_t)c->hidden;
    forge_status st = ops->gather_rows(k->ctx, k->x, k->embed, k->ints_dev, rows, row);
    for (int l = 0; st == FORGE_OK && l < c->layers; l++) {
        const model_block *b = &k->blocks[l];
        st = ops->rmsnorm(k->ctx, dt, k->a, k->x, l ? k->y : NULL, b->attn_norm, rows, c->hidden, c->norm_eps);
        if (st == FORGE_OK) st = forge_stack_forward(step, l, k->a, k->y, pos_dev);
        if (st == FORGE_OK && split) st = ops->all_reduce(k->ctx, k->comm, dt, k->y, hidden);
        if (st == FORGE_OK) st = ops->rmsnorm(k->ctx, dt, k->a, k->x, k->y, b->mlp_norm, rows, c->hidden, c->norm_eps);
        if (st == FORGE_OK) st = ops->linear(k->ctx, dt, k->gate_up, k->a, b->gate_up, rows, c->hidden, 2 * inter);
        if (st == FORGE_OK) st = ops->silu_mul(k->ctx, dt, k->act, k->gate_up, rows, inter);
        if (st == FORGE_OK) st = ops->linear(k->ctx, dt, k->y, k->act, b->down, rows, inter, c->hidden);
        if (st == FORGE_OK && split) st = ops->all_reduce(k->ctx, k->comm, dt, k->y, hidden);
    }
    /* the last residual and the final norm over every row, then the rows asked for */
    if (st == FORGE_OK) st = ops->rmsnorm(k->ctx, dt, k->a, k->x, k->y, k->final_norm, rows, c->hidden, c->norm_eps);
    const void *last = k->a;
    if (st == FORGE_OK && rows_dev) {
        st = ops->gather_rows(k->ctx, k->last, k->a, rows_dev, out, row);
        last = k->last;
    }
    if (st == FORGE_OK && split) return split_lm_head(m, k, last, out);
    if (st == FORGE_OK) st = ops->linear(k->ctx, dt, k->logits, last, k->lm_head, out, c->hidden, c->vocab_size);
    return st;
}

void model_graph_free(model_rank *k) {
    model_graph *g = &k->graph;
    if (g->rec) k->ctx->ops->record_free(g->rec);
    free(g->seqs);
    free(g->stamps);
    memset(g, 0, sizeof *g);
}

/* Rank k's recorded decode step serves this one: the same sequences in
 * order, nothing it baked in moved, every length within its reach. */
static int graph_serves(const forge_model *m, const model_rank *k, const forge_stack_step *step) {
    const model_graph *g = &k->graph;
    if (!g->rec || g->n != step->b.n || g->ws_gen != k->ws_gen) return 0;
    for (int i = 0; i < g->n; i++)
        if (g->seqs[i] != step->b.ids[i] || step->b.lens[i] > g->reach) return 0;
    for (int l = 0; l < m->cfg.layers; l++) {
        const forge_batch b = forge_batch_for(&step->b, k->layers[l]);
        if (k->ctx->ops->call_stamp(k->layers[l], k->caches[l], &b, NULL) != g->stamps[l]) return 0;
    }
    return 1;
}

/* A decode step through rank k's recording: recorded anew where the last
 * one no longer serves, then replayed. */
static forge_status run_recorded(forge_model *m, model_rank *k, forge_stack_step *step, long rows, const char *fn) {
    const forge_backend_ops *ops = k->ctx->ops;
    model_graph *g = &k->graph;
    const int *pos_dev = k->ints_dev + 2 * rows; /* after the tokens and the rows */
    if (!graph_serves(m, k, step)) {
        if (!g->seqs) g->seqs = malloc(sizeof *g->seqs * (size_t)m->opt.max_seqs);
        if (!g->stamps) g->stamps = malloc(sizeof *g->stamps * (size_t)m->cfg.layers);
        if (!g->seqs || !g->stamps) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        int reach = INT_MAX;
        for (int l = 0; l < m->cfg.layers; l++) {
            int r;
            const forge_batch b = forge_batch_for(&step->b, k->layers[l]);
            g->stamps[l] = ops->call_stamp(k->layers[l], k->caches[l], &b, &r);
            if (r < reach) reach = r;
        }
        /* another batch size or other splits: maybe other kernels, which an
         * update of the recording cannot take; it is made anew */
        if (g->rec && (g->n != step->b.n || g->reach != reach)) {
            ops->record_free(g->rec);
            g->rec = NULL;
        }
        g->n = 0; /* serves nothing until recorded */
        forge_status st = ops->record_begin(k->ctx, fn);
        if (st != FORGE_OK) return st;
        st = run(m, k, step, rows, rows, NULL, pos_dev);
        const forge_status end = ops->record_end(k->ctx, st == FORGE_OK ? &g->rec : NULL, fn);
        if (st == FORGE_OK) st = end;
        if (st != FORGE_OK) return st;
        g->n = step->b.n, g->reach = reach, g->ws_gen = k->ws_gen;
        memcpy(g->seqs, step->b.ids, sizeof *g->seqs * (size_t)g->n);
    }
    return ops->replay(k->ctx, g->rec, fn);
}

/* A step as the ranks share it: its inputs, checked, and each rank's
 * layer-stack step; after the step, rank 0 runs `output` (the logits'
 * download, the draws) on its thread. */
typedef struct step_job step_job;
struct step_job {
    const char *fn;
    const forge_model_input *in;
    int n;
    forge_seq *seqs;
    long total, out;          /* tokens, and rows whose logits are asked for */
    forge_stack_step *stacks; /* [ranks] */
    forge_status (*output)(forge_model *m, const step_job *j);
    float *logits;            /* what output fills */
    int32_t *next;
    const forge_sampling *sampling;
};

/* Every cache's room checked and its pages taken, on each rank (before any
 * rank runs, so that a step without room fails on all of them alike). */
static forge_status begin_rank(forge_model *m, int r, void *arg) {
    step_job *j = arg;
    const model_rank *k = &m->ranks[r];
    return forge_stack_begin(&j->stacks[r], j->fn, k->layers, k->caches, m->cfg.layers, j->seqs, j->n);
}

/* Rank r's step: the workspace, the integers up, the work (recorded for a
 * decode step), the lengths advanced; then on rank 0 the repetition
 * penalty's history and the output. On a split model a failure here may
 * leave the others waiting in a collective: it aborts them. */
static forge_status step_rank(forge_model *m, int r, void *arg) {
    step_job *j = arg;
    model_rank *k = &m->ranks[r];
    forge_stack_step *stack = &j->stacks[r];
    const long total = j->total, out = j->out;
    forge_status st = workspace(m, k, total, out, j->fn);
    if (st == FORGE_OK) { /* the integers: tokens, the rows asked for, the lengths (for a recording) */
        int32_t *tokens = k->ints, *rows = k->ints + total, *pos = rows + out;
        for (int i = 0, row = 0; i < j->n; row += j->in[i].n_tokens, i++) {
            memcpy(tokens + row, j->in[i].tokens, sizeof *tokens * (size_t)j->in[i].n_tokens);
            rows[i] = row + j->in[i].n_tokens - 1;
            pos[i] = stack->b.pos0[i];
        }
        st = forge_buffer_upload(k->ctx, k->ints_dev, k->ints,
                                 sizeof *pos * ((size_t)total + (size_t)out + (size_t)j->n));
    }
    if (st == FORGE_OK && total == j->n && k->ctx->ops->record_begin) /* a decode step */
        st = run_recorded(m, k, stack, total, j->fn);
    else if (st == FORGE_OK)
        st = run(m, k, stack, total, out, out == total ? NULL : k->ints_dev + total, NULL);
    if (st != FORGE_OK) model_ranks_abort(m, r);
    forge_stack_end(stack, st == FORGE_OK);
    if (st != FORGE_OK || r != 0) return st;
    for (int i = 0; i < j->n; i++) { /* the repetition penalty's history */
        uint32_t *seen = model_seen(m, j->in[i].seq);
        for (int t = 0; t < j->in[i].n_tokens; t++) seen[j->in[i].tokens[t] / 32] |= 1u << j->in[i].tokens[t] % 32;
    }
    return j->output ? j->output(m, j) : FORGE_OK;
}

/* After a rank's begin failed: the others' pages given back (a failed
 * begin has ended its own step, and ending it again does nothing). */
static forge_status end_rank(forge_model *m, int r, void *arg) {
    (void)m;
    forge_stack_end(&((step_job *)arg)->stacks[r], 0);
    return FORGE_OK;
}

/* A step: checked, every rank's pages taken, then the ranks' work up to
 * the logits of the rows asked for in rank 0's logits, and j's output. */
static forge_status step(forge_model *m, step_job *j, const forge_model_input *in, int n, int all_logits) {
    const char *fn = j->fn;
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(in, fn);
    if (m->broken) return model_broken(fn);
    if (n < 1 || n > m->opt.max_seqs)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n = %d is outside [1, max_seqs = %d]", fn, n,
                          m->opt.max_seqs);
    j->in = in, j->n = n;
    j->seqs = malloc(sizeof *j->seqs * (size_t)n);
    j->stacks = calloc((size_t)m->split.ranks, sizeof *j->stacks);
    forge_status st = j->seqs && j->stacks ? check_inputs(m, in, n, j->seqs, &j->total, fn)
                                           : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    /* every row's logits, or each sequence's last row's: all rows where each has one token */
    j->out = all_logits ? j->total : n;
    if (st == FORGE_OK) {
        st = model_ranks_run(m, begin_rank, j);
        if (st == FORGE_OK) st = model_ranks_run(m, step_rank, j);
        else model_ranks_run(m, end_rank, j); /* the ranks whose begin succeeded give their pages back */
    }
    free(j->seqs);
    free(j->stacks);
    return st;
}

/* n_logits of the step's logits from the first'th on, widened to float32
 * into the host's logits (on rank 0's thread). */
static forge_status download_logits(forge_model *m, float *logits, size_t first, size_t n_logits) {
    const model_rank *k = &m->ranks[0];
    const size_t es = forge_dtype_size(m->opt.dtype);
    const char *src = (const char *)k->logits + first * es;
    if (m->opt.dtype == FORGE_F32) return forge_buffer_download(k->ctx, logits, src, n_logits * sizeof(float));
    /* 16-bit logits: through the end of the caller's buffer, widened to its front */
    void *narrow = (char *)logits + n_logits * (sizeof(float) - es);
    forge_status st = forge_buffer_download(k->ctx, narrow, src, n_logits * es);
    if (st == FORGE_OK) st = forge_convert(logits, FORGE_F32, narrow, m->opt.dtype, n_logits);
    return st;
}

/* output: the step's logits to the caller's buffer. */
static forge_status logits_out(forge_model *m, const step_job *j) {
    return download_logits(m, j->logits, 0, (size_t)j->out * (size_t)m->cfg.vocab_size);
}

/* output: the step's n greedy tokens, chosen on the device, into next. */
static forge_status greedy_out(forge_model *m, const step_job *j) {
    const model_rank *k = &m->ranks[0];
    forge_status st = k->ctx->ops->argmax_rows(k->ctx, m->opt.dtype, next_tokens(m, k), k->logits, j->n,
                                               m->cfg.vocab_size);
    if (st == FORGE_OK) st = forge_buffer_download(k->ctx, j->next, next_tokens(m, k), sizeof *j->next * (size_t)j->n);
    return st;
}

forge_status forge_model_step(forge_model *m, const forge_model_input *in, int n, int all_logits, float *logits) {
    static const char fn[] = "forge_model_step";
    FORGE_CHECK_NOT_NULL(logits, fn);
    step_job j = {.fn = fn, .output = logits_out, .logits = logits};
    return step(m, &j, in, n, all_logits);
}

forge_status forge_model_step_greedy(forge_model *m, const forge_model_input *in, int n, int32_t *next) {
    static const char fn[] = "forge_model_step_greedy";
    FORGE_CHECK_NOT_NULL(next, fn);
    step_job j = {.fn = fn, .output = greedy_out, .next = next};
    return step(m, &j, in, n, 0);
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

/* The fronts' buffers for `rows` rows, made before the step runs (rank 0's
 * memory, on its thread). */
static forge_status front_buffers(forge_model *m, int r, void *arg) {
    const step_job *j = arg;
    const long rows = j->n;
    forge_context *ctx = m->ranks[0].ctx;
    if (r != 0 || rows <= m->front_rows) return FORGE_OK;
    forge_buffer_free(ctx, m->front_dev);
    free(m->front_host);
    m->front_dev = m->front_host = NULL;
    m->front_rows = 0;
    forge_status st = forge_buffer_alloc(ctx, front_bytes(m, rows), &m->front_dev);
    if (st == FORGE_OK && !(m->front_host = malloc(front_bytes(m, rows))))
        st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld rows of candidates", j->fn, rows);
    if (st == FORGE_OK) m->front_rows = rows;
    return st;
}

/* Input i's draw's generator: its seed and its sequence's length, so that
 * each length has a draw of its own, whatever shares the step. */
static uint64_t draw_rng(const forge_model *m, const forge_model_input *in, const forge_sampling *s, int i) {
    int len;
    forge_paged_seq_len(m->ranks[0].caches[0], in[i].seq, &len);
    return s[i].seed + (uint64_t)len * 0x9e3779b97f4a7c15ull;
}

/* Input i's token drawn from its row of logits on the host. */
static int32_t draw_row(forge_model *m, const forge_model_input *in, const forge_sampling *s, int i,
                        const float *logits) {
    uint64_t rng = draw_rng(m, in, s, i);
    return model_sample(logits, m->cfg.vocab_size, &s[i], model_seen(m, in[i].seq), &rng, m->scratch);
}

/* output: the step's draws by the backend's fronts: settings and (with a
 * penalty) each sequence's seen bits up, the fronts down, a draw from each
 * (its row of logits fetched where the front cannot say). */
static forge_status fronts_out(forge_model *m, const step_job *j) {
    const forge_model_input *in = j->in;
    const forge_sampling *s = j->sampling;
    const int n = j->n, vocab = m->cfg.vocab_size;
    const model_rank *k = &m->ranks[0];
    const size_t row = FORGE_SAMPLE_ROW_BYTES(MODEL_FRONT_CAP), words = m->seen_words;
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
    forge_status st = forge_buffer_upload(k->ctx, dev + (size_t)n * row, settings, up);
    if (st == FORGE_OK) {
        const forge_sample_row *settings_dev = (const forge_sample_row *)(dev + (size_t)n * row);
        st = k->ctx->ops->sample_front(k->ctx, m->opt.dtype, dev, k->logits, settings_dev,
                                       penalty ? (const uint32_t *)(settings_dev + n) : NULL, n, vocab, MODEL_FRONT_CAP);
    }
    if (st == FORGE_OK) st = forge_buffer_download(k->ctx, host, dev, (size_t)n * row);
    for (int i = 0; st == FORGE_OK && i < n; i++) {
        const forge_sample_head *h = (const forge_sample_head *)(host + (size_t)i * row);
        uint64_t rng = draw_rng(m, in, s, i);
        j->next[i] = model_draw_front(h, (forge_scored *)(h + 1), MODEL_FRONT_CAP, vocab, &s[i], &rng);
        if (j->next[i] < 0) st = download_logits(m, m->host_logits, (size_t)i * (size_t)vocab, (size_t)vocab);
        if (j->next[i] < 0 && st == FORGE_OK) j->next[i] = draw_row(m, in, s, i, m->host_logits);
    }
    return st;
}

/* output: every row's logits to the host, each drawn there. */
static forge_status host_out(forge_model *m, const step_job *j) {
    const int vocab = m->cfg.vocab_size;
    forge_status st = download_logits(m, m->host_logits, 0, (size_t)j->n * (size_t)vocab);
    for (int i = 0; st == FORGE_OK && i < j->n; i++)
        j->next[i] = draw_row(m, j->in, j->sampling, i, m->host_logits + (size_t)i * vocab);
    return st;
}

forge_status forge_model_step_sample(forge_model *m, const forge_model_input *in, int n, const forge_sampling *s,
                                     int32_t *next) {
    static const char fn[] = "forge_model_step_sample";
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(s, fn);
    FORGE_CHECK_NOT_NULL(next, fn);
    if (m->broken) return model_broken(fn);
    int on_device = 1;
    forge_status st = FORGE_OK;
    for (int i = 0; st == FORGE_OK && i < n && n <= m->opt.max_seqs; i++) { /* step() names a bad n */
        st = model_check_sampling(&s[i], i, fn);
        on_device &= s[i].temperature == 0.0f && s[i].repeat_penalty == 1.0f;
    }
    /* greedy rows alone: argmax; with a backend that finds fronts: they,
     * and one row of logits for a front that cannot say; else every row's
     * logits to the host */
    const int fronts = !on_device && m->ranks[0].ctx->ops->sample_front;
    step_job j = {.fn = fn, .next = next, .sampling = s, .n = n,
                  .output = on_device ? greedy_out : fronts ? fronts_out : host_out};
    const int n_ok = n >= 1 && n <= m->opt.max_seqs; /* else step() names it */
    if (st == FORGE_OK && n_ok && fronts) st = model_ranks_run(m, front_buffers, &j);
    if (st == FORGE_OK && n_ok && !on_device) st = host_buffers(m, fronts ? 1 : n, fn);
    return st == FORGE_OK ? step(m, &j, in, n, 0) : st;
}
