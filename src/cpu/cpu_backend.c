/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_backend.c: the CPU backend, Forge's fallback and the backend that the
 * GPU is checked against besides the float64 reference: its buffers
 * (host memory), attention alone, and its operations' table, each from the
 * file of its concern (cpu_layer.c, cpu_cache.c). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_attention.h"
#include "cpu_cache.h"
#include "cpu_comm.h"
#include "cpu_layer.h"
#include "cpu_ops.h"
#include "error.h"

/* The context's workers: as many threads as OpenBLAS runs (its own are
 * idle while the attention runs), the caller being one of them; started
 * by the first decode step that shares its work (cpu_cache.c), so that
 * contexts that never run one (a GPU context's CPU twin) hold no threads. */
static forge_status cpu_context_init(forge_context *ctx) {
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "forge_context_create: out of memory");
    const int threads = openblas_get_num_threads();
    c->n_workers = (threads < CPU_ATTN_ROWS ? threads : CPU_ATTN_ROWS) - 1;
    ctx->impl = c;
    return FORGE_OK;
}

static void cpu_context_free(forge_context *ctx) {
    cpu_ctx *c = ctx->impl;
    if (c) forge_workers_stop(c->workers);
    free(c);
    ctx->impl = NULL;
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
            .window = a->window,
            .scale = a->scale,
            .softcap = a->softcap,
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

/* The model's row operations, in float32: the CPU runs fp32 models
 * (forge_model_load refuses others before any of these runs). */
static forge_status cpu_model_rmsnorm(forge_context *ctx, forge_dtype dtype, void *out, void *x, const void *res,
                                      const void *w, long rows, int dim, float eps) {
    (void)ctx, (void)dtype;
    float *xs = x;
    const float *r = res;
    for (size_t i = 0; r && i < (size_t)rows * (size_t)dim; i++) xs[i] += r[i];
    cpu_rmsnorm(out, x, w, rows, dim, eps);
    return FORGE_OK;
}

static forge_status cpu_model_linear(forge_context *ctx, forge_dtype dtype, void *y, const void *x, const void *w,
                                     long rows, int in, int out) {
    (void)ctx, (void)dtype;
    cpu_linear(y, x, w, NULL, rows, in, out);
    return FORGE_OK;
}

static forge_status cpu_model_silu_mul(forge_context *ctx, forge_dtype dtype, void *out, const void *gate_up,
                                       long rows, int inter) {
    (void)ctx, (void)dtype;
    cpu_silu_mul(out, gate_up, rows, inter);
    return FORGE_OK;
}

static forge_status cpu_model_gather_rows(forge_context *ctx, void *out, const void *table, const int32_t *ids,
                                          long rows, size_t row_bytes) {
    (void)ctx;
    for (long r = 0; r < rows; r++)
        memcpy((char *)out + (size_t)r * row_bytes, (const char *)table + (size_t)ids[r] * row_bytes, row_bytes);
    return FORGE_OK;
}

static forge_status cpu_model_argmax_rows(forge_context *ctx, forge_dtype dtype, int32_t *out, const void *x,
                                          long rows, int cols) {
    (void)ctx, (void)dtype;
    for (long r = 0; r < rows; r++) {
        const float *row = (const float *)x + (size_t)r * (size_t)cols;
        int best = 0;
        for (int i = 1; i < cols; i++) best = row[i] > row[best] ? i : best;
        out[r] = best;
    }
    return FORGE_OK;
}

static forge_status cpu_copy_2d(forge_context *ctx, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                                size_t width, size_t height) {
    (void)ctx;
    for (size_t r = 0; r < height; r++) memcpy((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width);
    return FORGE_OK;
}

const forge_backend_ops forge_cpu_backend = {
    .kind = FORGE_BACKEND_CPU,
    .context_init = cpu_context_init,
    .context_free = cpu_context_free,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_copy = cpu_buffer_copy,
    .layer_init = cpu_layer_init,
    .layer_free = cpu_layer_free,
    .cache_init = cpu_cache_init,
    .cache_free = cpu_cache_free,
    .cache_copy_page = cpu_cache_copy_page,
    .cache_append = cpu_cache_append,
    .cache_read = cpu_cache_read,
    .cache_upload = cpu_cache_upload,
    .attention = cpu_attention_forward,
    .paged_attention = cpu_paged_attention,
    .forward = cpu_forward,
    .rmsnorm = cpu_model_rmsnorm,
    .linear = cpu_model_linear,
    .silu_mul = cpu_model_silu_mul,
    .gather_rows = cpu_model_gather_rows,
    .argmax_rows = cpu_model_argmax_rows,
    .comm_create = cpu_comm_create,
    .comm_abort = cpu_comm_abort,
    .comm_free = cpu_comm_free,
    .all_reduce = cpu_all_reduce,
    .all_gather = cpu_all_gather,
    .copy_2d = cpu_copy_2d,
};
