/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_layer.c: the CPU backend's layer: its weights, its workspace, and its
 * forward call, the one way every call goes:
 *   qkv = x Wqkv^T + b          one OpenBLAS GEMM over all tokens of the batch
 *   RMSNorm over each head of Q and K (qk_norm), RoPE on Q and K, rounded to the layer's dtype; K and V of the new
 *   tokens into the cache's pages (or, without a cache, kept in scratch)
 *   attention, per sequence, over its keys (a decode step's read where they lie
 *   in an fp32 cache's pages, others gathered from the pages)
 *   y   = attn Wo^T + b
 * It computes in float32; a layer in fp16 or bf16 takes weights, x and y in
 * that dtype and rounds to it the tensors a GPU stores in it (Q, K, V, the
 * cache and the attention output), so that it models a 16-bit layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cpu_attention.h"
#include "cpu_cache.h"
#include "cpu_layer.h"
#include "cpu_ops.h"
#include "cpu_rope.h"
#include "dtype.h"
#include "error.h"
#include "rope_freq.h"
#include "window.h"

static int qkv_dim(const forge_layer_config *c) { return (c->heads + 2 * c->kv_heads) * c->head_dim; }

void cpu_layer_free(forge_layer *layer) {
    cpu_layer *l = layer->impl;
    if (!l) return;
    free(l->w_qkv);
    free(l->b_qkv);
    free(l->w_o);
    free(l->b_o);
    free(l->q_norm);
    free(l->k_norm);
    free(l->inv_freq);
    free(l->rope);
    free(l->qkv);
    free(l->attn);
    free(l->k_tmp);
    free(l->v_tmp);
    free(l->io);
    free(l->scores);
    free(l->gathered);
    free(l);
    layer->impl = NULL;
}

/* n weights of src in dtype, widened to float; zeros when src is NULL. */
static void load_weights(float *dst, const void *src, forge_dtype dtype, size_t n) {
    if (src) forge_convert(dst, FORGE_F32, src, dtype, n);
    else memset(dst, 0, n * sizeof *dst);
}

forge_status cpu_layer_init(forge_layer *layer, const forge_layer_weights *w) {
    const forge_layer_config *c = &layer->cfg;
    size_t hidden = (size_t)c->hidden, q_out = (size_t)c->heads * c->head_dim,
           kv_out = (size_t)c->kv_heads * c->head_dim;
    cpu_layer *l = calloc(1, sizeof *l);
    if (!l) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_create: out of memory");
    layer->impl = l;
    int qkv_bias = (c->bias & (FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V)) != 0;
    l->w_qkv = malloc((q_out + 2 * kv_out) * hidden * sizeof(float));
    l->w_o = malloc(hidden * q_out * sizeof(float));
    l->rope = malloc((size_t)c->head_dim * sizeof(float));
    l->inv_freq = malloc((size_t)(c->head_dim / 2 + 1) * sizeof(double));
    if (qkv_bias) l->b_qkv = malloc((q_out + 2 * kv_out) * sizeof(float));
    if (c->bias & FORGE_BIAS_O) l->b_o = malloc(hidden * sizeof(float));
    if (c->qk_norm) l->q_norm = malloc((size_t)c->head_dim * sizeof(float)), l->k_norm = malloc((size_t)c->head_dim * sizeof(float));
    if (!l->w_qkv || !l->w_o || !l->rope || !l->inv_freq || (qkv_bias && !l->b_qkv) ||
        ((c->bias & FORGE_BIAS_O) && !l->b_o) || (c->qk_norm && (!l->q_norm || !l->k_norm))) {
        cpu_layer_free(layer);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_create: out of memory for weights");
    }
    forge_rope_inv_freq(c, l->inv_freq);
    load_weights(l->w_qkv, w->q_proj, c->dtype, q_out * hidden);
    load_weights(l->w_qkv + q_out * hidden, w->k_proj, c->dtype, kv_out * hidden);
    load_weights(l->w_qkv + (q_out + kv_out) * hidden, w->v_proj, c->dtype, kv_out * hidden);
    load_weights(l->w_o, w->o_proj, c->dtype, hidden * q_out);
    if (qkv_bias) {
        load_weights(l->b_qkv, w->q_bias, c->dtype, q_out);
        load_weights(l->b_qkv + q_out, w->k_bias, c->dtype, kv_out);
        load_weights(l->b_qkv + q_out + kv_out, w->v_bias, c->dtype, kv_out);
    }
    if (l->b_o) load_weights(l->b_o, w->o_bias, c->dtype, hidden);
    if (c->qk_norm) {
        load_weights(l->q_norm, w->q_norm, c->dtype, (size_t)c->head_dim);
        load_weights(l->k_norm, w->k_norm, c->dtype, (size_t)c->head_dim);
    }
    return FORGE_OK;
}

/* Grows *p to n floats; on failure *p is kept and 0 returned. */
static int grow(float **p, size_t n) {
    float *q = realloc(*p, n * sizeof **p);
    if (!q) return 0;
    *p = q;
    return 1;
}

static forge_status workspace(cpu_layer *l, const forge_layer_config *c, const char *fn, int tokens, long n_scores,
                              long gathered) {
    size_t q_out = (size_t)c->heads * c->head_dim, kv_out = (size_t)c->kv_heads * c->head_dim;
    if (tokens > l->ws_tokens) {
        size_t t = (size_t)tokens;
        if (!grow(&l->qkv, t * (size_t)qkv_dim(c)) || !grow(&l->attn, t * q_out) ||
            !grow(&l->k_tmp, t * kv_out) || !grow(&l->v_tmp, t * kv_out) ||
            (c->dtype != FORGE_F32 && !grow(&l->io, t * (size_t)c->hidden)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %d tokens of workspace", fn,
                              tokens);
        l->ws_tokens = tokens;
    }
    if (n_scores > l->ws_scores) {
        if (!grow(&l->scores, (size_t)n_scores))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld attention scores", fn,
                              n_scores);
        l->ws_scores = n_scores;
    }
    if (gathered > l->ws_gathered) {
        if (!grow(&l->gathered, (size_t)gathered))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld keys and values", fn, gathered);
        l->ws_gathered = gathered;
    }
    return FORGE_OK;
}

/* With profiling on, t[i] = now; at the last stage, the stage times. */
static void stage_mark(forge_layer *layer, double *t, int i) {
    if (!layer->profiling) return;
    t[i] = forge_now_us();
    if (i == FORGE_STAGE_COUNT)
        for (int s = 0; s < FORGE_STAGE_COUNT; s++) layer->stage_us[s] = t[s + 1] - t[s];
}


static void project(forge_layer *layer, int total, const void *x) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    /* a 16-bit layer's x passes through l->io in float */
    if (c->dtype != FORGE_F32) forge_convert(l->io, FORGE_F32, x, c->dtype, (size_t)total * c->hidden);
    cpu_linear(l->qkv, c->dtype == FORGE_F32 ? x : l->io, l->w_qkv, l->b_qkv, total, c->hidden, qkv_dim(c));
}

static void rotate(forge_layer *layer, const forge_batch *b) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim, N = qkv_dim(c);
    for (int s = 0; s < b->n; s++)
        for (int i = 0; i < b->n_tokens[s]; i++) {
            float *row = l->qkv + (long)(b->rows[s] + i) * N;
            if (c->qk_norm) { /* each head of Q, then of K */
                cpu_rmsnorm(row, row, l->q_norm, H, D, c->norm_eps);
                cpu_rmsnorm(row + H * D, row + H * D, l->k_norm, Hk, D, c->norm_eps);
            }
            if (c->rope_style != FORGE_ROPE_NONE) {
                cpu_rope_angles(b->pos0[s] + i, D, l->inv_freq, l->rope);
                cpu_rope_rotate(row, H + Hk, D, c->rope_style, l->rope);
            }
            forge_round_to(c->dtype, row, (size_t)N); /* Q, K, V as a 16-bit layer stores them */
        }
}

static void output(forge_layer *layer, int total, void *y) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int wide = c->dtype == FORGE_F32, hd = c->heads * c->head_dim;
    forge_round_to(c->dtype, l->attn, (size_t)total * hd);
    cpu_linear(wide ? y : l->io, l->attn, l->w_o, l->b_o, total, hd, c->hidden);
    if (!wide) forge_convert(y, c->dtype, l->io, FORGE_F32, (size_t)total * c->hidden);
}

forge_status cpu_forward(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x, void *y,
                         forge_stage *failed) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim, N = qkv_dim(c);
    const size_t es = forge_dtype_size(c->dtype), kv = (size_t)Hk * D;
    long max_keys = 0;
    for (int s = 0; s < b->n; s++) max_keys = b->lens[s] > max_keys ? b->lens[s] : max_keys;
    /* scores: a block of query rows over the keys, or the decode rows' */
    long n_scores = CPU_ATTN_ROWS * max_keys, decode = cache ? cpu_cache_attend_scratch(cache, max_keys) : 0;
    forge_status st = workspace(l, c, b->fn, b->total, n_scores > decode ? n_scores : decode,
                                cache ? 2 * max_keys * (long)kv : 0);
    if (st != FORGE_OK) return st;
    if (layer->ctx->fail_stage >= 0) { /* the test hook: a stage fails as a device's would */
        *failed = (forge_stage)layer->ctx->fail_stage;
        return forge_fail(FORGE_ERR_BACKEND, "%s: %s: injected failure (test hook)", b->fn, forge_stage_name(*failed));
    }
    /* past the workspace and the hook, nothing here can fail */
    double t[FORGE_STAGE_COUNT + 1];
    stage_mark(layer, t, 0);
    project(layer, b->total, x);
    stage_mark(layer, t, 1);

    /* RoPE; then K and V rows: in float32 in the scratch, and with a cache
     * in its dtype (the scratch holds as many bytes) into its pages */
    rotate(layer, b);
    for (int t0 = 0; t0 < b->total; t0++) {
        const float *row = l->qkv + (long)t0 * N;
        if (cache) {
            forge_convert((char *)l->k_tmp + t0 * kv * es, c->dtype, row + H * D, FORGE_F32, kv);
            forge_convert((char *)l->v_tmp + t0 * kv * es, c->dtype, row + (H + Hk) * D, FORGE_F32, kv);
        } else {
            memcpy(l->k_tmp + t0 * kv, row + H * D, kv * sizeof(float));
            memcpy(l->v_tmp + t0 * kv, row + (H + Hk) * D, kv * sizeof(float));
        }
    }
    if (cache) cpu_cache_append(cache, b->n, b->ids, b->pos0, b->n_tokens, b->rows, l->k_tmp, l->v_tmp, b->fn);
    stage_mark(layer, t, 2);

    /* decode steps' queries read where their keys lie; others' keys
     * gathered (only with a cache, and there only from the window's start) */
    if (cache) {
        cpu_decode_batch d = {.cache = cache, .heads = H, .window = b->attn.window, .scale = b->attn.scale,
                              .softcap = b->attn.softcap, .scores = l->scores};
        for (int s = 0; s < b->n; s++)
            if (cpu_cache_in_place(cache, b->n_tokens[s]))
                cpu_decode_add(&d, (cpu_decode_row){b->ids[s], b->lens[s], l->qkv + (long)b->rows[s] * N,
                                                    l->attn + (long)b->rows[s] * H * D, NULL});
        cpu_decode_flush(&d);
    }
    float *gk = l->gathered, *gv = cache ? l->gathered + max_keys * kv : NULL;
    for (int s = 0; s < b->n; s++) {
        const int t0 = b->rows[s], first = cache ? forge_window_start(b->lens[s], b->n_tokens[s], b->attn.window) : 0;
        if (cache && cpu_cache_in_place(cache, b->n_tokens[s])) continue;
        if (cache) cpu_cache_gather(cache, b->ids[s], first, b->lens[s], gk, gv);
        cpu_attention_args a = {
            .q = l->qkv + (long)t0 * N,
            .q_stride = N,
            .k = cache ? gk : l->k_tmp + t0 * kv,
            .v = cache ? gv : l->v_tmp + t0 * kv,
            .kv_head_stride = D,
            .k_stride = Hk * D,
            .n_keys = b->lens[s] - first,
            .out = l->attn + (long)t0 * H * D,
            .out_stride = H * D,
            .n_queries = b->n_tokens[s],
            .q_pos0 = b->lens[s] - b->n_tokens[s], /* the queries are the last keys */
            .k_pos0 = first,
            .causal = 1,
            .window = b->attn.window,
            .scale = b->attn.scale,
            .softcap = b->attn.softcap,
            .heads = H,
            .kv_heads = Hk,
            .head_dim = D,
        };
        cpu_attention(&a, l->scores);
    }
    stage_mark(layer, t, 3);
    output(layer, b->total, y);
    stage_mark(layer, t, 4);
    return FORGE_OK;
}
