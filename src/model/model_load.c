/* SPDX-License-Identifier: Apache-2.0 */
/* model_load.c: a model directory into a forge_model: its config, each
 * block's attention as a forge_layer over a paged cache of its own, the
 * rest of its weights in backend memory; and the sequences, which are the
 * same ids in every layer's cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "model.h"

static const char fn[] = "forge_model_load";

static forge_status out_of_memory(void) { return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn); }

/* Rank r's weights, caches and workspace freed on its thread, and its
 * context where the model made it. */
static forge_status free_rank(forge_model *m, int r, void *arg) {
    (void)arg;
    model_rank *k = &m->ranks[r];
    forge_context *ctx = k->ctx;
    if (!ctx) return FORGE_OK;
    for (int l = 0; k->layers && l < m->cfg.layers; l++) forge_layer_destroy(k->layers[l]);
    for (int l = 0; k->caches && l < m->cfg.layers; l++) forge_paged_cache_destroy(k->caches[l]);
    for (int l = 0; k->blocks && l < m->cfg.layers; l++) {
        model_block *b = &k->blocks[l];
        void *bufs[] = {b->attn_norm, b->mlp_norm, b->gate_up, b->down};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) forge_buffer_free(ctx, bufs[i]);
    }
    if (k->lm_head != k->embed) forge_buffer_free(ctx, k->lm_head);
    void *bufs[] = {k->embed, k->final_norm, k->x,    k->a,        k->y,       k->gate_up,
                    k->act,   k->last,       k->logits, k->part, k->gathered, k->ints_dev};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) forge_buffer_free(ctx, bufs[i]);
    model_graph_free(k);
    free(k->layers);
    free(k->caches);
    free(k->blocks);
    free(k->ints);
    if (r == 0) forge_buffer_free(ctx, m->front_dev);
    else forge_context_destroy(ctx);
    return FORGE_OK;
}

void forge_model_free(forge_model *m) {
    if (!m) return;
    if (m->ranks) model_ranks_run(m, free_rank, NULL);
    model_ranks_stop(m);
    free(m->ranks);
    free(m->seen);
    free(m->host_logits);
    free(m->scratch);
    free(m->front_host);
    free(m);
}

/* Bytes of a tensor [d0] (d1 0) or [d0, d1] in the model's dtype. */
static size_t tensor_bytes(const forge_model *m, int64_t d0, int64_t d1) {
    return (size_t)d0 * (size_t)(d1 ? d1 : 1) * forge_dtype_size(m->opt.dtype);
}

/* Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a tensor [d0, d1] (or
 * [d0]) into rank k's memory at dst, straight from the mapped file where
 * it is in the model's dtype and whole rows are taken. */
static forge_status upload_part(forge_model *m, model_rank *k, const model_files *f, const char *name, int64_t d0,
                                int64_t d1, int64_t r0, int64_t nr, int64_t c0, int64_t nc, void *dst) {
    const void *data;
    void *owned;
    forge_status st = model_tensor_part(f, fn, name, d0, d1, r0, nr, c0, nc, m->opt.dtype, &data, &owned);
    if (st == FORGE_OK) st = forge_buffer_upload(k->ctx, dst, data, tensor_bytes(m, nr, d1 ? nc : 0));
    free(owned);
    return st;
}

/* A whole tensor into a new buffer of rank k, *out. */
static forge_status upload(forge_model *m, model_rank *k, const model_files *f, const char *name, int64_t d0,
                           int64_t d1, void **out) {
    forge_status st = forge_buffer_alloc(k->ctx, tensor_bytes(m, d0, d1), out);
    return st == FORGE_OK ? upload_part(m, k, f, name, d0, d1, 0, d0, 0, d1, *out) : st;
}

/* Rank r's first KV head: its share of them, or the one its query heads
 * share where there are fewer KV heads than ranks. */
static int first_kv_head(const forge_model *m, int r) {
    const model_split *s = &m->split;
    return m->cfg.kv_heads >= s->ranks ? r * s->kv_heads : r / (s->ranks / m->cfg.kv_heads);
}

/* The layer config of block l on rank r: its heads; a window where the
 * config gives the block one shorter than the context (a longer one masks
 * nothing); the output's bias on rank 0 alone (the ranks' sum adds it once). */
static forge_layer_config layer_config(const forge_model *m, int l, int r) {
    const forge_model_config *c = &m->cfg;
    forge_layer_config lc = forge_layer_config_default(c->hidden, m->split.heads, m->split.kv_heads, c->head_dim);
    lc.max_seq = m->opt.max_seq_len;
    lc.rope_theta = c->rope_theta;
    lc.rope_scaling = c->rope_scaling;
    lc.bias = r == 0 ? c->bias : c->bias & ~(unsigned)FORGE_BIAS_O;
    lc.dtype = m->opt.dtype;
    lc.qk_norm = c->qk_norm;
    lc.norm_eps = c->norm_eps;
    if (l >= c->max_window_layers && c->sliding_window < m->opt.max_seq_len) lc.window = c->sliding_window;
    return lc;
}

/* Block l's attention on rank r: the layer made from its share of the
 * weights (it copies them), as they lie in the mapped file where they are
 * in the model's dtype and whole rows. */
static forge_status load_layer(forge_model *m, int r, const model_files *f, int l) {
    const forge_model_config *c = &m->cfg;
    const forge_layer_config lc = layer_config(m, l, r);
    const int64_t D = c->head_dim, q = (int64_t)c->heads * D, kv = (int64_t)c->kv_heads * D, h = c->hidden;
    const int64_t q0 = (int64_t)r * m->split.heads * D, nq = m->split.heads * D;
    const int64_t k0 = first_kv_head(m, r) * D, nk = m->split.kv_heads * D;
    static const char *parts[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                                  "q_proj.bias",   "k_proj.bias",   "v_proj.bias",   "o_proj.bias",
                                  "q_norm.weight", "k_norm.weight"};
    /* each tensor's shape, and the rank's rows and columns of it */
    const int64_t rows[] = {q, kv, kv, h, q, kv, kv, h, D, D}, cols[] = {h, h, h, q, 0, 0, 0, 0, 0, 0};
    const int64_t r0[] = {q0, k0, k0, 0, q0, k0, k0, 0, 0, 0}, nr[] = {nq, nk, nk, h, nq, nk, nk, h, D, D};
    const int64_t c0[] = {0, 0, 0, q0, 0, 0, 0, 0, 0, 0}, nc[] = {h, h, h, nq, 0, 0, 0, 0, 0, 0};
    const int wanted[] = {1, 1, 1, 1, (lc.bias & FORGE_BIAS_Q) != 0, (lc.bias & FORGE_BIAS_K) != 0,
                          (lc.bias & FORGE_BIAS_V) != 0, (lc.bias & FORGE_BIAS_O) != 0, c->qk_norm, c->qk_norm};
    const void *data[10] = {0};
    void *owned[10] = {0};
    forge_status st = FORGE_OK;
    for (int i = 0; i < 10 && st == FORGE_OK; i++) {
        if (!wanted[i]) continue;
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", l, parts[i]);
        st = model_tensor_part(f, fn, name, rows[i], cols[i], r0[i], nr[i], c0[i], nc[i], lc.dtype, &data[i],
                               &owned[i]);
    }
    const forge_layer_weights w = {data[0], data[1], data[2], data[3], data[4],
                                   data[5], data[6], data[7], data[8], data[9]};
    /* no CPU twin: a model is checked whole, against transformers */
    if (st == FORGE_OK) st = forge_layer_make(m->ranks[r].ctx, &lc, &w, 0, &m->ranks[r].layers[l]);
    for (int i = 0; i < 10; i++) free(owned[i]);
    return st;
}

/* Block l's norms and rank r's share of its MLP; gate and up side by side
 * as one matrix. */
static forge_status load_block(forge_model *m, int r, const model_files *f, int l) {
    const forge_model_config *c = &m->cfg;
    model_rank *k = &m->ranks[r];
    model_block *b = &k->blocks[l];
    const int64_t h = c->hidden, inter = c->intermediate, i0 = (int64_t)r * m->split.inter, ni = m->split.inter;
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    forge_status st = upload(m, k, f, name, h, 0, &b->attn_norm);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (st == FORGE_OK) st = upload(m, k, f, name, h, 0, &b->mlp_norm);
    if (st == FORGE_OK) st = forge_buffer_alloc(k->ctx, tensor_bytes(m, h, ni), &b->down);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
    if (st == FORGE_OK) st = upload_part(m, k, f, name, h, inter, 0, h, i0, ni, b->down);
    if (st != FORGE_OK) return st;
    const size_t half = tensor_bytes(m, ni, h);
    st = forge_buffer_alloc(k->ctx, 2 * half, &b->gate_up);
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
    if (st == FORGE_OK) st = upload_part(m, k, f, name, inter, h, i0, ni, 0, h, b->gate_up);
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
    if (st == FORGE_OK) st = upload_part(m, k, f, name, inter, h, i0, ni, 0, h, (char *)b->gate_up + half);
    return st;
}

/* Rank r's rows of the LM head (the embedding's where tied): vocab_rows of
 * them from row r * vocab_rows, zeros past the vocabulary. A whole model's
 * is the embedding itself where tied. */
static forge_status load_lm_head(forge_model *m, int r, const model_files *f) {
    const forge_model_config *c = &m->cfg;
    model_rank *k = &m->ranks[r];
    const char *name = c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    if (!k->comm && c->tie_embeddings) {
        k->lm_head = k->embed;
        return FORGE_OK;
    }
    const int64_t rows = m->split.vocab_rows, first = (int64_t)r * rows;
    const int64_t held = first >= c->vocab_size ? 0 : (c->vocab_size - first < rows ? c->vocab_size - first : rows);
    forge_status st = forge_buffer_alloc(k->ctx, tensor_bytes(m, rows, c->hidden), &k->lm_head);
    if (st == FORGE_OK && held > 0)
        st = upload_part(m, k, f, name, c->vocab_size, c->hidden, first, held, 0, c->hidden, k->lm_head);
    if (st == FORGE_OK && held < rows) {
        const size_t tail = tensor_bytes(m, rows - held, c->hidden);
        void *zeros = calloc(1, tail);
        st = zeros ? forge_buffer_upload(k->ctx, (char *)k->lm_head + tensor_bytes(m, held, c->hidden), zeros, tail)
                   : out_of_memory();
        free(zeros);
    }
    return st;
}

/* Rank r's share of the model, on its thread. */
static forge_status load_rank(forge_model *m, int r, void *arg) {
    const model_files *files = arg;
    const forge_model_config *c = &m->cfg;
    const forge_model_options *o = &m->opt;
    model_rank *k = &m->ranks[r];
    k->layers = calloc((size_t)c->layers, sizeof *k->layers);
    k->caches = calloc((size_t)c->layers, sizeof *k->caches);
    k->blocks = calloc((size_t)c->layers, sizeof *k->blocks);
    if (!k->layers || !k->caches || !k->blocks) return out_of_memory();
    const forge_paged_config pc = {o->dtype, m->split.kv_heads, c->head_dim, o->page_size,
                                   (o->max_tokens + o->page_size - 1) / o->page_size + o->max_seqs, o->max_seqs,
                                   o->max_seq_len};
    forge_status st = FORGE_OK;
    for (int l = 0; st == FORGE_OK && l < c->layers; l++) {
        st = load_layer(m, r, files, l);
        if (st == FORGE_OK) st = load_block(m, r, files, l);
        if (st == FORGE_OK) st = forge_paged_cache_create(k->ctx, &pc, &k->caches[l]);
    }
    if (st == FORGE_OK) st = upload(m, k, files, "model.embed_tokens.weight", c->vocab_size, c->hidden, &k->embed);
    if (st == FORGE_OK) st = upload(m, k, files, "model.norm.weight", c->hidden, 0, &k->final_norm);
    if (st == FORGE_OK) st = load_lm_head(m, r, files);
    return st;
}

/* The split over opt->tensor_parallel ranks (0: one, whole), each rank's
 * share of the heads, the MLP and the vocabulary; a count that does not
 * divide them is refused by name. */
static forge_status split_of(const forge_model_config *c, int ranks, model_split *out) {
    if (ranks == 0) ranks = 1;
    if (ranks < 1 || ranks > MODEL_MAX_RANKS)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: tensor_parallel = %d is outside [0, %d]", fn, ranks,
                          MODEL_MAX_RANKS);
    if (c->heads % ranks)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: tensor_parallel = %d does not divide the %d attention heads", fn,
                          ranks, c->heads);
    if (c->kv_heads % ranks && ranks % c->kv_heads)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: tensor_parallel = %d neither divides nor is a multiple of the "
                          "%d KV heads", fn, ranks, c->kv_heads);
    if (c->intermediate % ranks)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: tensor_parallel = %d does not divide intermediate_size = %d", fn,
                          ranks, c->intermediate);
    *out = (model_split){ranks, c->heads / ranks, c->kv_heads >= ranks ? c->kv_heads / ranks : 1,
                         c->intermediate / ranks, (c->vocab_size + ranks - 1) / ranks};
    return FORGE_OK;
}

/* The options with their defaults filled in, checked against the config. */
static forge_status resolve_options(const forge_model_config *c, const forge_model_options *in,
                                    forge_model_options *out) {
    forge_model_options o = *in;
    if (o.page_size == 0) o.page_size = 16;
    if (o.max_seqs < 1 || o.max_tokens < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: max_seqs = %d and max_tokens = %d must be at least 1", fn,
                          o.max_seqs, o.max_tokens);
    if (o.max_seq_len == 0) o.max_seq_len = c->max_positions < o.max_tokens ? c->max_positions : o.max_tokens;
    if (o.max_seq_len < 1 || o.max_seq_len > c->max_positions)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: max_seq_len = %d is outside [1, max_position_embeddings = %d]",
                          fn, o.max_seq_len, c->max_positions);
    *out = o;
    return FORGE_OK;
}

/* The model of config cfg, its tensors from files (which it closes). */
static forge_status load(forge_context *ctx, const forge_model_config *cfg, const forge_model_options *opt,
                         model_files *files, forge_model **out) {
    forge_status st = FORGE_OK;
    if (!ctx->ops->rmsnorm)
        st = forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the %s backend does not run models yet", fn,
                        forge_backend_name(ctx->ops->kind));
    else if (ctx->ops->kind == FORGE_BACKEND_CPU && opt->dtype != FORGE_F32)
        st = forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the cpu backend runs models in fp32, not %s", fn,
                        forge_dtype_name(opt->dtype));
    forge_model *m = st == FORGE_OK ? calloc(1, sizeof *m) : NULL;
    if (st == FORGE_OK && !m) st = out_of_memory();
    if (st == FORGE_OK) {
        m->cfg = *cfg;
        st = resolve_options(cfg, opt, &m->opt);
    }
    if (st == FORGE_OK) st = split_of(cfg, opt->tensor_parallel, &m->split);
    if (st == FORGE_OK) {
        m->seen_words = ((size_t)cfg->vocab_size + 31) / 32;
        m->seen = calloc((size_t)m->opt.max_seqs * m->seen_words, sizeof *m->seen);
        m->ranks = calloc((size_t)m->split.ranks, sizeof *m->ranks);
        if (!m->seen || !m->ranks) st = out_of_memory();
    }
    if (st == FORGE_OK) st = model_ranks_start(m, ctx, fn);
    if (st == FORGE_OK) st = model_ranks_run(m, load_rank, files);
    model_files_close(files);
    if (st != FORGE_OK) {
        forge_model_free(m);
        return st;
    }
    *out = m;
    return FORGE_OK;
}

forge_status forge_model_load(forge_context *ctx, const char *dir, const forge_model_options *opt,
                              forge_model **out) {
    FORGE_CHECK_NOT_NULL(ctx, fn);
    FORGE_CHECK_NOT_NULL(dir, fn);
    FORGE_CHECK_NOT_NULL(opt, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    forge_model_config cfg;
    model_files files = {0};
    forge_status st = forge_model_config_read(dir, &cfg);
    if (st == FORGE_OK) st = model_files_open(fn, dir, &files);
    if (st != FORGE_OK) {
        model_files_close(&files);
        return st;
    }
    return load(ctx, &cfg, opt, &files, out);
}

forge_status forge_model_load_random(forge_context *ctx, const forge_model_config *cfg,
                                     const forge_model_options *opt, uint64_t seed, forge_model **out) {
    static const char name[] = "forge_model_load_random";
    FORGE_CHECK_NOT_NULL(ctx, name);
    FORGE_CHECK_NOT_NULL(cfg, name);
    FORGE_CHECK_NOT_NULL(opt, name);
    FORGE_CHECK_NOT_NULL(out, name);
    forge_status st = model_config_check(cfg, name);
    model_files files = {.random = 1, .seed = seed};
    return st == FORGE_OK ? load(ctx, cfg, opt, &files, out) : st;
}

forge_model_config forge_model_get_config(const forge_model *m) {
    forge_model_config none = {0};
    return m ? m->cfg : none;
}

/* A new sequence in every cache of rank r; the id each gave into ids[r]. */
static forge_status seq_new_rank(forge_model *m, int r, void *arg) {
    int *ids = arg;
    const model_rank *k = &m->ranks[r];
    forge_status st = FORGE_OK;
    for (int l = 0; l < m->cfg.layers && st == FORGE_OK; l++) {
        int got;
        st = forge_paged_seq_new(k->caches[l], &got);
        if (st == FORGE_OK && l > 0 && got != ids[r]) /* every cache has seen the same calls */
            st = forge_fail(FORGE_ERR_BACKEND, "forge_model_seq_new: layer %d's cache gave sequence %d, layer 0's %d",
                            l, got, ids[r]);
        if (l == 0) ids[r] = got;
    }
    return st;
}

forge_status forge_model_seq_new(forge_model *m, int *seq) {
    static const char name[] = "forge_model_seq_new";
    FORGE_CHECK_NAMED(m, "model", name);
    FORGE_CHECK_NOT_NULL(seq, name);
    if (m->broken) return model_broken(name);
    int ids[MODEL_MAX_RANKS];
    forge_status st = model_ranks_run(m, seq_new_rank, ids);
    for (int r = 1; st == FORGE_OK && r < m->split.ranks; r++)
        if (ids[r] != ids[0])
            st = forge_fail(FORGE_ERR_BACKEND, "%s: rank %d's caches gave sequence %d, rank 0's %d", name, r, ids[r],
                            ids[0]);
    if (st == FORGE_OK) {
        memset(model_seen(m, ids[0]), 0, sizeof *m->seen * m->seen_words);
        *seq = ids[0];
    }
    return st;
}

static forge_status seq_release_rank(forge_model *m, int r, void *arg) {
    const int seq = *(const int *)arg;
    forge_status st = FORGE_OK;
    for (int l = 0; l < m->cfg.layers; l++) {
        const forge_status s = forge_paged_seq_release(m->ranks[r].caches[l], seq);
        if (st == FORGE_OK) st = s;
    }
    return st;
}

forge_status forge_model_seq_release(forge_model *m, int seq) {
    FORGE_CHECK_NAMED(m, "model", "forge_model_seq_release");
    return model_ranks_run(m, seq_release_rank, &seq);
}

forge_status forge_model_seq_len(const forge_model *m, int seq, int *len) {
    FORGE_CHECK_NAMED(m, "model", "forge_model_seq_len");
    return forge_paged_seq_len(m->ranks[0].caches[0], seq, len);
}
