/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_backend.c: the CPU backend. Forge's fallback, and the backend that the
 * GPU is checked against besides the float64 reference. It computes in
 * float32; a layer in fp16 or bf16 takes weights, x and y in that dtype and
 * rounds to it the tensors a GPU stores in it (Q, K, V, the KV cache and
 * the attention output), so that it models a 16-bit layer's numbers.
 *
 * One forward call: qkv = x Wqkv^T + b (one OpenBLAS GEMM over all tokens of
 * the batch), then per token RoPE on its Q and K heads and the K, V copy into
 * the cache, then causal attention per sequence, then y = attn Wo^T + b. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "backend.h"
#include "dtype.h"
#include "error.h"
#include "layer.h"
#include "paged.h"
#include "rope.h"

typedef struct {
    float *k, *v; /* [slots, kv_heads, max_seq, head_dim]; a 16-bit layer's values, widened */
} cpu_cache;

static int qkv_dim(const forge_layer_config *c) { return (c->heads + 2 * c->kv_heads) * c->head_dim; }

static void cpu_layer_free(forge_layer *layer) {
    cpu_layer *l = layer->impl;
    if (!l) return;
    free(l->w_qkv);
    free(l->b_qkv);
    free(l->w_o);
    free(l->b_o);
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

static forge_status cpu_layer_init(forge_layer *layer, const forge_layer_weights *w) {
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
    if (!l->w_qkv || !l->w_o || !l->rope || !l->inv_freq || (qkv_bias && !l->b_qkv) ||
        ((c->bias & FORGE_BIAS_O) && !l->b_o)) {
        cpu_layer_free(layer);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_create: out of memory for weights");
    }
    cpu_rope_inv_freq(c->head_dim, c->rope_theta, l->inv_freq);
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
    return FORGE_OK;
}

/* Grows *p to n floats; on failure *p is kept and 0 returned. */
static int grow(float **p, size_t n) {
    float *q = realloc(*p, n * sizeof **p);
    if (!q) return 0;
    *p = q;
    return 1;
}

forge_status cpu_workspace(cpu_layer *l, const forge_layer_config *c, int tokens, long keys, long gathered) {
    size_t q_out = (size_t)c->heads * c->head_dim, kv_out = (size_t)c->kv_heads * c->head_dim;
    if (tokens > l->ws_tokens) {
        size_t t = (size_t)tokens;
        if (!grow(&l->qkv, t * (size_t)qkv_dim(c)) || !grow(&l->attn, t * q_out) ||
            !grow(&l->k_tmp, t * kv_out) || !grow(&l->v_tmp, t * kv_out) ||
            (c->dtype != FORGE_F32 && !grow(&l->io, t * (size_t)c->hidden)))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY,
                              "forge_layer_forward: out of memory for %d tokens of workspace",
                              tokens);
        l->ws_tokens = tokens;
    }
    long n_scores = CPU_ATTN_ROWS * keys;
    if (n_scores > l->ws_scores) {
        if (!grow(&l->scores, (size_t)n_scores))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY,
                              "forge_layer_forward: out of memory for %ld attention scores",
                              n_scores);
        l->ws_scores = n_scores;
    }
    if (gathered > l->ws_gathered) {
        if (!grow(&l->gathered, (size_t)gathered))
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_layer_forward_paged: out of memory for %ld keys and values",
                              gathered);
        l->ws_gathered = gathered;
    }
    return FORGE_OK;
}

/* y[t, :] = bias (or 0), then y += a W^T: a [tokens, in], W [out, in]. */
static void linear(float *y, const float *a, const float *w, const float *bias, int tokens, int in,
                   int out, int ldy) {
    if (bias)
        for (int t = 0; t < tokens; t++) memcpy(y + (long)t * ldy, bias, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, out, in, 1.0f, a, in, w, in,
                bias ? 1.0f : 0.0f, y, ldy);
}

/* Where a sequence's K and V go: its cache slot, [kv_heads, max_seq, head_dim]
 * from position 0, or without a cache the call's scratch, [kv_heads, n_tokens,
 * head_dim] from position pos0. Kv head g, position p is at
 * k + g * head_stride + (p - k_pos0) * head_dim. */
typedef struct {
    float *k, *v;
    long head_stride;
    int k_pos0;
} kv_place;

static kv_place kv_place_of(const cpu_layer *l, const forge_kv_cache *cache,
                            const forge_layer_config *c, const forge_seq *sq, int t0) {
    const long D = c->head_dim;
    if (cache) {
        const cpu_cache *cc = cache->impl;
        long off = (long)sq->slot * c->kv_heads * c->max_seq * D;
        return (kv_place){cc->k + off, cc->v + off, c->max_seq * D, 0};
    }
    long off = (long)t0 * c->kv_heads * D;
    return (kv_place){l->k_tmp + off, l->v_tmp + off, sq->n_tokens * D, sq->pos0};
}

void cpu_stage_mark(forge_layer *layer, double *t, int i) {
    if (!layer->profiling) return;
    t[i] = forge_now_us();
    if (i == FORGE_STAGE_COUNT)
        for (int s = 0; s < FORGE_STAGE_COUNT; s++) layer->stage_us[s] = t[s + 1] - t[s];
}

void cpu_project(forge_layer *layer, int total, const void *x) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    /* a 16-bit layer's x passes through l->io in float */
    if (c->dtype != FORGE_F32) forge_convert(l->io, FORGE_F32, x, c->dtype, (size_t)total * c->hidden);
    linear(l->qkv, c->dtype == FORGE_F32 ? x : l->io, l->w_qkv, l->b_qkv, total, c->hidden, qkv_dim(c), qkv_dim(c));
}

void cpu_rotate(forge_layer *layer, const forge_seq *seqs, int n_seqs) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim, N = qkv_dim(c);
    for (int s = 0, t0 = 0; s < n_seqs; t0 += seqs[s].n_tokens, s++)
        for (int i = 0; i < seqs[s].n_tokens; i++) {
            float *row = l->qkv + (long)(t0 + i) * N;
            if (c->rope_style != FORGE_ROPE_NONE) {
                cpu_rope_angles(seqs[s].pos0 + i, D, l->inv_freq, l->rope);
                cpu_rope_rotate(row, H + Hk, D, c->rope_style, l->rope);
            }
            forge_round_to(c->dtype, row, (size_t)N); /* Q, K, V as a 16-bit layer stores them */
        }
}

void cpu_output(forge_layer *layer, int total, void *y) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int wide = c->dtype == FORGE_F32, hd = c->heads * c->head_dim;
    forge_round_to(c->dtype, l->attn, (size_t)total * hd);
    linear(wide ? y : l->io, l->attn, l->w_o, l->b_o, total, hd, c->hidden, c->hidden);
    if (!wide) forge_convert(y, c->dtype, l->io, FORGE_F32, (size_t)total * c->hidden);
}

static forge_status cpu_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                int n_seqs, int total, const void *x, void *y, forge_stage *failed) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim, N = qkv_dim(c);
    long max_keys = 0;
    for (int s = 0; s < n_seqs; s++) {
        long keys = cache ? seqs[s].pos0 + seqs[s].n_tokens : seqs[s].n_tokens;
        max_keys = keys > max_keys ? keys : max_keys;
    }
    forge_status st = cpu_workspace(l, c, total, max_keys, 0);
    if (st != FORGE_OK) return st;
    (void)failed; /* past the workspace, nothing here can fail */
    double t[FORGE_STAGE_COUNT + 1];
    cpu_stage_mark(layer, t, 0);
    cpu_project(layer, total, x);
    cpu_stage_mark(layer, t, 1);

    /* RoPE, then K and V to their place */
    cpu_rotate(layer, seqs, n_seqs);
    for (int s = 0, t0 = 0; s < n_seqs; t0 += seqs[s].n_tokens, s++) {
        const forge_seq *sq = &seqs[s];
        kv_place kv = kv_place_of(l, cache, c, sq, t0);
        for (int i = 0; i < sq->n_tokens; i++) {
            const float *row = l->qkv + (long)(t0 + i) * N;
            for (int g = 0; g < Hk; g++) {
                long dst = g * kv.head_stride + (long)(sq->pos0 + i - kv.k_pos0) * D;
                memcpy(kv.k + dst, row + (H + g) * D, (size_t)D * sizeof(float));
                memcpy(kv.v + dst, row + (H + Hk + g) * D, (size_t)D * sizeof(float));
            }
        }
    }
    cpu_stage_mark(layer, t, 2);

    for (int s = 0, t0 = 0; s < n_seqs; t0 += seqs[s].n_tokens, s++) {
        const forge_seq *sq = &seqs[s];
        kv_place kv = kv_place_of(l, cache, c, sq, t0);
        cpu_attention_args a = {
            .q = l->qkv + (long)t0 * N,
            .q_stride = N,
            .k = kv.k,
            .v = kv.v,
            .kv_head_stride = kv.head_stride,
            .k_stride = D,
            .n_keys = sq->pos0 + sq->n_tokens - kv.k_pos0,
            .out = l->attn + (long)t0 * H * D,
            .out_stride = H * D,
            .n_queries = sq->n_tokens,
            .q_pos0 = sq->pos0,
            .k_pos0 = kv.k_pos0,
            .causal = 1,
            .scale = 1.0f / sqrtf((float)D),
            .heads = H,
            .kv_heads = Hk,
            .head_dim = D,
        };
        cpu_attention(&a, l->scores);
    }
    cpu_stage_mark(layer, t, 3);
    cpu_output(layer, total, y);
    cpu_stage_mark(layer, t, 4);
    return FORGE_OK;
}

static forge_status cpu_cache_init(forge_kv_cache *cache) {
    size_t n = (size_t)cache->slots * cache->kv_heads * cache->max_seq * cache->head_dim;
    cpu_cache *cc = calloc(1, sizeof *cc);
    if (cc) {
        cc->k = calloc(n, sizeof(float));
        cc->v = calloc(n, sizeof(float));
    }
    if (!cc || !cc->k || !cc->v) {
        if (cc) {
            free(cc->k);
            free(cc->v);
        }
        free(cc);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY,
                          "forge_kv_cache_create: out of memory for %d slots (%zu K and V elements)",
                          cache->slots, 2 * n);
    }
    cache->impl = cc;
    return FORGE_OK;
}

static void cpu_cache_free(forge_kv_cache *cache) {
    cpu_cache *cc = cache->impl;
    if (!cc) return;
    free(cc->k);
    free(cc->v);
    free(cc);
}

static forge_status cpu_cache_read(const forge_kv_cache *cache, int slot, int len, void *k,
                                   void *v) {
    const cpu_cache *cc = cache->impl;
    const size_t D = (size_t)cache->head_dim, stride = (size_t)cache->max_seq * D;
    const size_t slot_off = (size_t)slot * cache->kv_heads * stride;
    for (int g = 0; g < cache->kv_heads; g++) {
        size_t src = slot_off + g * stride, dst = (size_t)g * len * D;
        const size_t es = forge_dtype_size(cache->dtype);
        if (k) forge_convert((char *)k + dst * es, cache->dtype, cc->k + src, FORGE_F32, (size_t)len * D);
        if (v) forge_convert((char *)v + dst * es, cache->dtype, cc->v + src, FORGE_F32, (size_t)len * D);
    }
    return FORGE_OK;
}

static forge_status cpu_cache_write(forge_kv_cache *cache, int slot, int len, const void *k,
                                    const void *v) {
    cpu_cache *cc = cache->impl;
    const size_t D = (size_t)cache->head_dim, stride = (size_t)cache->max_seq * D;
    const size_t slot_off = (size_t)slot * cache->kv_heads * stride;
    for (int g = 0; g < cache->kv_heads; g++) {
        size_t dst = slot_off + g * stride, src = (size_t)g * len * D;
        const size_t es = forge_dtype_size(cache->dtype);
        if (k) forge_convert(cc->k + dst, FORGE_F32, (const char *)k + src * es, cache->dtype, (size_t)len * D);
        if (v) forge_convert(cc->v + dst, FORGE_F32, (const char *)v + src * es, cache->dtype, (size_t)len * D);
    }
    return FORGE_OK;
}

static forge_status cpu_buffer_alloc(forge_context *ctx, size_t bytes, void **out) {
    void *p = malloc(bytes);
    if (!p) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_buffer_alloc: %zu bytes", bytes);
    *out = p;
    return FORGE_OK;
}

static void cpu_buffer_free(forge_context *ctx, void *p) { free(p); }

static forge_status cpu_buffer_copy(forge_context *ctx, void *dst, const void *src, size_t bytes,
                                    int to_host) {
    memmove(dst, src, bytes);
    return FORGE_OK;
}

/* forge_attention_forward: q, k, v widened to float32 (when they are not),
 * each sequence computed by cpu_attention, out narrowed back. */
static forge_status cpu_attention_forward(forge_context *ctx, const forge_attention_args *a, int total_q,
                                          int total_kv) {
    static const char fn[] = "forge_attention_forward";
    const int H = a->heads, Hk = a->kv_heads, D = a->head_dim, wide = a->dtype == FORGE_F32;
    const size_t nq = (size_t)total_q * H * D, nkv = (size_t)total_kv * Hk * D;
    int max_keys = 0;
    for (int b = 0; b < a->batch; b++) {
        const int keys = a->kv_offsets[b + 1] - a->kv_offsets[b];
        max_keys = keys > max_keys ? keys : max_keys;
    }
    /* no keys at all: k and v may be NULL, and are never read */
    static const float no_keys[1];
    float *q = wide ? (float *)a->q : malloc(nq * sizeof *q);
    float *k = wide ? (float *)(nkv ? a->k : no_keys) : malloc((nkv ? nkv : 1) * sizeof *k);
    float *v = wide ? (float *)(nkv ? a->v : no_keys) : malloc((nkv ? nkv : 1) * sizeof *v);
    float *out = wide ? (float *)a->out : malloc(nq * sizeof *out);
    float *scores = malloc(sizeof *scores * (size_t)CPU_ATTN_ROWS * (max_keys ? max_keys : 1));
    forge_status st = q && k && v && out && scores ? FORGE_OK
                                                   : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK && !wide) {
        forge_convert(q, FORGE_F32, a->q, a->dtype, nq);
        forge_convert(k, FORGE_F32, a->k, a->dtype, nkv);
        forge_convert(v, FORGE_F32, a->v, a->dtype, nkv);
    }
    for (int b = 0; st == FORGE_OK && b < a->batch; b++) {
        const int q0 = a->q_offsets[b], k0 = a->kv_offsets[b];
        const int n = a->q_offsets[b + 1] - q0, m = a->kv_offsets[b + 1] - k0;
        cpu_attention_args c = {
            .q = q + (size_t)q0 * H * D,
            .q_stride = H * D,
            .k = k + (size_t)k0 * Hk * D,
            .v = v + (size_t)k0 * Hk * D,
            .kv_head_stride = D,
            .k_stride = Hk * D,
            .n_keys = m,
            .out = out + (size_t)q0 * H * D,
            .out_stride = H * D,
            .lse = a->lse ? a->lse + q0 : NULL,
            .lse_stride = total_q,
            .n_queries = n,
            .q_pos0 = m - n, /* the queries are the last n positions of m */
            .k_pos0 = 0,
            .causal = a->causal,
            .scale = a->scale,
            .heads = H,
            .kv_heads = Hk,
            .head_dim = D,
        };
        cpu_attention(&c, scores);
    }
    if (st == FORGE_OK && !wide) forge_convert(a->out, a->dtype, out, FORGE_F32, nq);
    if (!wide) {
        free(q);
        free(k);
        free(v);
        free(out);
    }
    free(scores);
    return st;
}

const forge_backend_ops forge_cpu_backend = {
    .kind = FORGE_BACKEND_CPU,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_copy = cpu_buffer_copy,
    .layer_init = cpu_layer_init,
    .layer_free = cpu_layer_free,
    .cache_init = cpu_cache_init,
    .cache_free = cpu_cache_free,
    .cache_read = cpu_cache_read,
    .cache_write = cpu_cache_write,
    .forward = cpu_forward,
    .attention = cpu_attention_forward,
    .paged_init = cpu_paged_init,
    .paged_free = cpu_paged_free,
    .paged_copy_page = cpu_paged_copy_page,
    .paged_write = cpu_paged_write,
    .paged_read = cpu_paged_read,
    .paged_attention = cpu_paged_attention,
    .forward_paged = cpu_forward_paged,
};
