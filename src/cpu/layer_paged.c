/* SPDX-License-Identifier: Apache-2.0 */
/* layer_paged.c: the CPU backend's layer call over a paged cache. The
 * contiguous call's projection, rotation and output (cpu_backend.c); K and
 * V of the new tokens go into their pages in the cache's dtype, and each
 * sequence's queries attend to its K and V gathered from the pages. */
#include <math.h>

#include "attention.h"
#include "dtype.h"
#include "layer.h"
#include "paged.h"

forge_status cpu_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step,
                               const void *x, void *y, forge_stage *failed) {
    const forge_layer_config *c = &layer->cfg;
    cpu_layer *l = layer->impl;
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim, N = (H + 2 * Hk) * D;
    const size_t es = forge_dtype_size(c->dtype);
    long max_keys = 0;
    for (int s = 0; s < step->n; s++) max_keys = step->lens[s] > max_keys ? step->lens[s] : max_keys;
    forge_status st = cpu_workspace(l, c, step->total, max_keys, 2 * max_keys * Hk * D);
    if (st != FORGE_OK) return st;
    (void)failed; /* past the workspace, nothing here can fail */
    double t[FORGE_STAGE_COUNT + 1];
    cpu_stage_mark(layer, t, 0);
    cpu_project(layer, step->total, x);
    cpu_stage_mark(layer, t, 1);

    /* RoPE, then K and V rows in the cache's dtype (k_tmp and v_tmp hold
     * as many floats) into the pages */
    cpu_rotate(layer, step->seqs, step->n);
    unsigned char *k = (unsigned char *)l->k_tmp, *v = (unsigned char *)l->v_tmp;
    for (int t0 = 0; t0 < step->total; t0++) {
        const float *row = l->qkv + (long)t0 * N;
        forge_convert(k + (size_t)t0 * Hk * D * es, c->dtype, row + H * D, FORGE_F32, (size_t)Hk * D);
        forge_convert(v + (size_t)t0 * Hk * D * es, c->dtype, row + (H + Hk) * D, FORGE_F32, (size_t)Hk * D);
    }
    cpu_paged_write(cache, step->n, step->ids, step->pos0, step->n_tokens, step->rows, k, v);
    cpu_stage_mark(layer, t, 2);

    float *gk = l->gathered, *gv = l->gathered + max_keys * Hk * D;
    for (int s = 0; s < step->n; s++) {
        cpu_paged_gather(cache, step->ids[s], step->lens[s], gk, gv);
        const int t0 = step->rows[s];
        cpu_attention_args a = {
            .q = l->qkv + (long)t0 * N,
            .q_stride = N,
            .k = gk,
            .v = gv,
            .kv_head_stride = D,
            .k_stride = Hk * D,
            .n_keys = step->lens[s],
            .out = l->attn + (long)t0 * H * D,
            .out_stride = H * D,
            .n_queries = step->n_tokens[s],
            .q_pos0 = step->pos0[s],
            .k_pos0 = 0,
            .causal = 1,
            .scale = step->attn.scale,
            .heads = H,
            .kv_heads = Hk,
            .head_dim = D,
        };
        cpu_attention(&a, l->scores);
    }
    cpu_stage_mark(layer, t, 3);
    cpu_output(layer, step->total, y);
    cpu_stage_mark(layer, t, 4);
    return FORGE_OK;
}
