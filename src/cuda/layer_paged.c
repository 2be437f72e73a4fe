/* SPDX-License-Identifier: Apache-2.0 */
/* layer_paged.c: the CUDA backend's layer call over a paged cache, queued on
 * the context's stream with no host copy or synchronisation (so that a
 * graph can record it), in the layer's dtype with float32 accumulation:
 *   qkv  = x Wqkv^T + b         cuBLASLt (linear_small.cu for small fp32 calls)
 *   split, RoPE, K, V -> pages  split_rope_rows.cu: Q as token rows, K and V
 *                               straight into the sequences' pages
 *   attention                   paged attention (split, merged), the
 *                               sequences' lengths counting the new tokens
 *   y    = attn Wo^T + b        as qkv */
#include "cuda_backend.h"

forge_status cuda_reserve_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step) {
    forge_status st = cuda_reserve(layer, NULL, step->seqs, step->n, step->total);
    return st == FORGE_OK ? cuda_paged_reserve(cache, &step->attn, step->lens, step->total) : st;
}

forge_status cuda_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step,
                                const void *x, void *y, forge_stage *failed) {
    static const char fn[] = "forge_layer_forward_paged";
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    const int qkv_dim = (c->heads + 2 * c->kv_heads) * c->head_dim, hd = c->heads * c->head_dim;
    int record = 0;
    forge_status st = cuda_forward_begin(layer, x, y, &record);
    if (st != FORGE_OK) return st;
    if ((st = cuda_stage_begin(layer, FORGE_STAGE_QKV, record, failed)) != FORGE_OK) return st;
    if ((st = cuda_linear(layer, &l->qkv_gemm, l->qkv, x, l->w_qkv, l->b_qkv, step->total, c->hidden, qkv_dim)) != FORGE_OK)
        return st;

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ROPE_CACHE, record, failed)) != FORGE_OK) return st;
    const fcuda_pool *pool = cuda_paged_pool(cache);
    fcuda_split_rows_args split = {.qkv = l->qkv, .q = l->q, .k = pool->k, .v = pool->v, .inv_freq = l->inv_freq,
                                   .table = pool->table, .page_size = pool->page_size, .max_pages = pool->max_pages,
                                   .heads = c->heads, .kv_heads = c->kv_heads, .head_dim = c->head_dim,
                                   .rope_style = (int)c->rope_style, .dtype = (int)c->dtype};
    for (int first = 0; first < step->n; first += FCUDA_MAX_SEQS) {
        const int count = cuda_launch_seqs(step->n, first);
        const fcuda_batch b = cuda_batch_of(step->seqs, first, count, step->rows[first]); /* slot: the sequence id */
        split.pos = step->pos_dev ? step->pos_dev + first : NULL;
        CUDA_TRY(fn, fcuda_split_rope_rows(&split, &b, cx->stream));
    }

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ATTENTION, record, failed)) != FORGE_OK) return st;
    forge_paged_attention_args attn = step->attn;
    attn.q = l->q, attn.out = l->attn;
    if ((st = cuda_paged_attend(cache, &attn, step->lens, step->pos_dev, step->total)) != FORGE_OK) return st;

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_OUTPUT, record, failed)) != FORGE_OK) return st;
    if ((st = cuda_linear(layer, &l->o_gemm, y, l->attn, l->w_o, l->b_o, step->total, hd, c->hidden)) != FORGE_OK)
        return st;
    return cuda_forward_end(layer, record, failed);
}
