/* SPDX-License-Identifier: Apache-2.0 */
/* layer16.c: a bf16 or fp16 layer's forward call on CUDA, everything in the
 * layer's dtype with float32 accumulation, queued on the context's stream
 * with no host copy or synchronisation:
 *   qkv  = x Wqkv^T + b        cuBLASLt, bias in the epilogue
 *   split, RoPE, K/V -> cache   split_rope_rows.cu
 *   attention                  the tensor-core flash kernels (Hopper's
 *                              wgmma one, else mma.sync), reading K and V
 *                              where they lie: in the cache slots, or in
 *                              the call's scratch without a cache
 *   y    = attn Wo^T + b       cuBLASLt */
#include <math.h>

#include "cuda_backend.h"

forge_status cuda_forward16(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                            int total, const void *x, void *y, int record, forge_stage *failed) {
    static const char fn[] = "forge_layer_forward";
    const forge_layer_config *c = &layer->cfg;
    cuda_layer *l = layer->impl;
    cuda_ctx *cx = layer->ctx->impl;
    const int bf16 = c->dtype == FORGE_BF16;
    const cuda_cache *cc = cache ? cache->impl : NULL;
    void *k = cc ? cc->k : l->k_tmp, *v = cc ? cc->v : l->v_tmp;
    forge_status st;

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_QKV, record, failed)) != FORGE_OK) return st;
    if ((st = lt_linear_run(cx, &l->qkv_gemm, l->qkv, x, l->w_qkv)) != FORGE_OK) return st;

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ROPE_CACHE, record, failed)) != FORGE_OK) return st;
    const fcuda_split_rows_args split = {.qkv = l->qkv, .q = l->q, .k = k, .v = v, .inv_freq = l->inv_freq,
                                         .use_cache = cache != NULL, .max_seq = c->max_seq, .heads = c->heads,
                                         .kv_heads = c->kv_heads, .head_dim = c->head_dim,
                                         .rope_style = (int)c->rope_style, .dtype = (int)c->dtype};
    for (int first = 0, tok0 = 0; first < n_seqs; first += FCUDA_MAX_SEQS) {
        const int count = cuda_launch_seqs(n_seqs, first);
        const fcuda_batch b = cuda_batch_of(seqs, first, count, tok0);
        CUDA_TRY(fn, fcuda_split_rope_rows(&split, &b, cx->stream));
        tok0 = b.tok0[count];
    }

    /* Sequence s's queries are rows of q from its first token; its keys
     * are rows of the whole cache from slot * max_seq (pos0 + n of them),
     * or without a cache the scratch's rows of its own tokens. */
    if ((st = cuda_stage_begin(layer, FORGE_STAGE_ATTENTION, record, failed)) != FORGE_OK) return st;
    const int kv_rows = cache ? cache->slots * c->max_seq : total;
    fcuda_mma_args m = {l->q, k, v, l->attn, NULL, total, kv_rows, c->heads, c->kv_heads, c->head_dim,
                        1.0f / sqrtf((float)c->head_dim), 1, bf16, NULL};
    for (int first = 0, tok0 = 0; first < n_seqs; first += FCUDA_MAX_SEQS) {
        const fcuda_batch sb = cuda_batch_of(seqs, first, cuda_launch_seqs(n_seqs, first), tok0);
        fcuda_varlen b = {.n = sb.n, .max_q = sb.max_tokens};
        for (int i = 0; i <= b.n; i++) b.q0[i] = sb.tok0[i];
        for (int i = 0; i < b.n; i++) {
            const int n = sb.tok0[i + 1] - sb.tok0[i];
            b.k0[i] = cache ? sb.slot[i] * c->max_seq : sb.tok0[i];
            b.nk[i] = cache ? sb.pos0[i] + n : n;
        }
        if ((st = cuda_flash_tc(layer->ctx, &m, &b, fn)) != FORGE_OK) return st;
        tok0 = sb.tok0[b.n];
    }

    if ((st = cuda_stage_begin(layer, FORGE_STAGE_OUTPUT, record, failed)) != FORGE_OK) return st;
    return lt_linear_run(cx, &l->o_gemm, y, l->attn, l->w_o);
}
