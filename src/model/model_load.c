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

void forge_model_free(forge_model *m) {
    if (!m) return;
    forge_context *ctx = m->ctx;
    for (int l = 0; m->layers && l < m->cfg.layers; l++) forge_layer_destroy(m->layers[l]);
    for (int l = 0; m->caches && l < m->cfg.layers; l++) forge_paged_cache_destroy(m->caches[l]);
    for (int l = 0; m->blocks && l < m->cfg.layers; l++) {
        model_block *b = &m->blocks[l];
        void *bufs[] = {b->attn_norm, b->mlp_norm, b->gate_up, b->down};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) forge_buffer_free(ctx, bufs[i]);
    }
    if (m->lm_head != m->embed) forge_buffer_free(ctx, m->lm_head);
    void *bufs[] = {m->embed, m->final_norm, m->x, m->a, m->y, m->gate_up, m->act, m->last, m->logits, m->ints_dev};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) forge_buffer_free(ctx, bufs[i]);
    model_graph_free(m);
    free(m->layers);
    free(m->caches);
    free(m->blocks);
    free(m->ints);
    free(m->seen);
    free(m->host_logits);
    free(m->scratch);
    forge_buffer_free(ctx, m->front_dev);
    free(m->front_host);
    free(m);
}

/* Bytes of a tensor [d0] (d1 0) or [d0, d1] in the model's dtype. */
static size_t tensor_bytes(const forge_model *m, int64_t d0, int64_t d1) {
    return (size_t)d0 * (size_t)(d1 ? d1 : 1) * forge_dtype_size(m->opt.dtype);
}

/* A tensor into backend memory at dst, [d0] or [d0, d1], straight from the
 * mapped file where it is in the model's dtype. */
static forge_status upload_to(forge_model *m, const model_files *f, const char *name, int64_t d0, int64_t d1,
                              void *dst) {
    const void *data;
    void *owned;
    forge_status st = model_tensor(f, fn, name, d0, d1, m->opt.dtype, &data, &owned);
    if (st == FORGE_OK)
        st = forge_buffer_upload(m->ctx, dst, data, tensor_bytes(m, d0, d1));
    free(owned);
    return st;
}

/* A tensor into a new backend buffer *out. */
static forge_status upload(forge_model *m, const model_files *f, const char *name, int64_t d0, int64_t d1,
                           void **out) {
    forge_status st = forge_buffer_alloc(m->ctx, tensor_bytes(m, d0, d1), out);
    return st == FORGE_OK ? upload_to(m, f, name, d0, d1, *out) : st;
}

/* The layer config of block l: a window where the config gives the block
 * one shorter than the context (a longer one masks nothing). */
static forge_layer_config layer_config(const forge_model *m, int l) {
    const forge_model_config *c = &m->cfg;
    forge_layer_config lc = forge_layer_config_default(c->hidden, c->heads, c->kv_heads, c->head_dim);
    lc.max_seq = m->opt.max_seq_len;
    lc.rope_theta = c->rope_theta;
    lc.rope_scaling = c->rope_scaling;
    lc.bias = c->bias;
    lc.dtype = m->opt.dtype;
    lc.qk_norm = c->qk_norm;
    lc.norm_eps = c->norm_eps;
    if (l >= c->max_window_layers && c->sliding_window < m->opt.max_seq_len) lc.window = c->sliding_window;
    return lc;
}

/* Block l's attention: the layer made from its weights (it copies them),
 * as they lie in the mapped file where they are in the model's dtype. */
static forge_status load_layer(forge_model *m, const model_files *f, int l) {
    const forge_model_config *c = &m->cfg;
    const forge_layer_config lc = layer_config(m, l);
    const int64_t q = (int64_t)c->heads * c->head_dim, kv = (int64_t)c->kv_heads * c->head_dim, h = c->hidden;
    static const char *parts[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
                                  "q_proj.bias",   "k_proj.bias",   "v_proj.bias",   "o_proj.bias",
                                  "q_norm.weight", "k_norm.weight"};
    const int64_t rows[] = {q, kv, kv, h, q, kv, kv, h, c->head_dim, c->head_dim};
    const int64_t cols[] = {h, h, h, q, 0, 0, 0, 0, 0, 0};
    const int wanted[] = {1, 1, 1, 1, (c->bias & FORGE_BIAS_Q) != 0, (c->bias & FORGE_BIAS_K) != 0,
                          (c->bias & FORGE_BIAS_V) != 0, (c->bias & FORGE_BIAS_O) != 0, c->qk_norm, c->qk_norm};
    const void *data[10] = {0};
    void *owned[10] = {0};
    forge_status st = FORGE_OK;
    for (int i = 0; i < 10 && st == FORGE_OK; i++) {
        if (!wanted[i]) continue;
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", l, parts[i]);
        st = model_tensor(f, fn, name, rows[i], cols[i], lc.dtype, &data[i], &owned[i]);
    }
    const forge_layer_weights w = {data[0], data[1], data[2], data[3], data[4],
                                   data[5], data[6], data[7], data[8], data[9]};
    /* no CPU twin: a model is checked whole, against transformers */
    if (st == FORGE_OK) st = forge_layer_make(m->ctx, &lc, &w, 0, &m->layers[l]);
    for (int i = 0; i < 10; i++) free(owned[i]);
    return st;
}

/* Block l's norms and MLP; gate and up side by side as one matrix. */
static forge_status load_block(forge_model *m, const model_files *f, int l) {
    const forge_model_config *c = &m->cfg;
    model_block *b = &m->blocks[l];
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    forge_status st = upload(m, f, name, c->hidden, 0, &b->attn_norm);
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    if (st == FORGE_OK) st = upload(m, f, name, c->hidden, 0, &b->mlp_norm);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
    if (st == FORGE_OK) st = upload(m, f, name, c->hidden, c->intermediate, &b->down);
    if (st != FORGE_OK) return st;
    const size_t half = tensor_bytes(m, c->intermediate, c->hidden);
    st = forge_buffer_alloc(m->ctx, 2 * half, &b->gate_up);
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
    if (st == FORGE_OK) st = upload_to(m, f, name, c->intermediate, c->hidden, b->gate_up);
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
    if (st == FORGE_OK) st = upload_to(m, f, name, c->intermediate, c->hidden, (char *)b->gate_up + half);
    return st;
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
        m->ctx = ctx, m->cfg = *cfg;
        st = resolve_options(cfg, opt, &m->opt);
    }
    if (st == FORGE_OK) {
        m->seen_words = ((size_t)cfg->vocab_size + 31) / 32;
        m->seen = calloc((size_t)m->opt.max_seqs * m->seen_words, sizeof *m->seen);
        m->layers = calloc((size_t)cfg->layers, sizeof *m->layers);
        m->caches = calloc((size_t)cfg->layers, sizeof *m->caches);
        m->blocks = calloc((size_t)cfg->layers, sizeof *m->blocks);
        if (!m->seen || !m->layers || !m->caches || !m->blocks) st = out_of_memory();
    }
    forge_paged_config pc = {0};
    if (st == FORGE_OK) {
        const forge_model_options *o = &m->opt;
        pc = (forge_paged_config){o->dtype, cfg->kv_heads, cfg->head_dim, o->page_size,
                                  (o->max_tokens + o->page_size - 1) / o->page_size + o->max_seqs, o->max_seqs,
                                  o->max_seq_len};
    }
    for (int l = 0; st == FORGE_OK && l < cfg->layers; l++) {
        st = load_layer(m, files, l);
        if (st == FORGE_OK) st = load_block(m, files, l);
        if (st == FORGE_OK) st = forge_paged_cache_create(ctx, &pc, &m->caches[l]);
    }
    if (st == FORGE_OK) st = upload(m, files, "model.embed_tokens.weight", cfg->vocab_size, cfg->hidden, &m->embed);
    if (st == FORGE_OK) st = upload(m, files, "model.norm.weight", cfg->hidden, 0, &m->final_norm);
    if (m) m->lm_head = m->embed;
    if (st == FORGE_OK && !cfg->tie_embeddings)
        st = upload(m, files, "lm_head.weight", cfg->vocab_size, cfg->hidden, &m->lm_head);
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

forge_status forge_model_seq_new(forge_model *m, int *seq) {
    static const char name[] = "forge_model_seq_new";
    FORGE_CHECK_NAMED(m, "model", name);
    FORGE_CHECK_NOT_NULL(seq, name);
    int id = -1;
    forge_status st = FORGE_OK;
    for (int l = 0; l < m->cfg.layers && st == FORGE_OK; l++) {
        int got;
        st = forge_paged_seq_new(m->caches[l], &got);
        if (st == FORGE_OK && l > 0 && got != id) /* every cache has seen the same calls */
            st = forge_fail(FORGE_ERR_BACKEND, "%s: layer %d's cache gave sequence %d, layer 0's %d", name, l, got, id);
        if (l == 0) id = got;
    }
    if (st == FORGE_OK) {
        memset(model_seen(m, id), 0, sizeof *m->seen * m->seen_words);
        *seq = id;
    }
    return st;
}

forge_status forge_model_seq_release(forge_model *m, int seq) {
    FORGE_CHECK_NAMED(m, "model", "forge_model_seq_release");
    forge_status st = FORGE_OK;
    for (int l = 0; l < m->cfg.layers; l++) {
        const forge_status s = forge_paged_seq_release(m->caches[l], seq);
        if (st == FORGE_OK) st = s;
    }
    return st;
}

forge_status forge_model_seq_len(const forge_model *m, int seq, int *len) {
    FORGE_CHECK_NAMED(m, "model", "forge_model_seq_len");
    return forge_paged_seq_len(m->caches[0], seq, len);
}
