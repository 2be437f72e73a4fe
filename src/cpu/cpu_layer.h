/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_layer.h: the CPU backend's layer (cpu_layer.c). */
#ifndef FORGE_CPU_LAYER_H
#define FORGE_CPU_LAYER_H

#include "backend.h"

typedef struct {
    float *w_qkv;  /* [qkv_dim, hidden]: q_proj, k_proj, v_proj rows stacked    */
    float *b_qkv;  /* [qkv_dim], NULL when none of q, k, v has a bias          */
    float *w_o;    /* [hidden, heads * head_dim]                                */
    float *b_o;    /* [hidden] or NULL                                          */
    float *q_norm, *k_norm; /* [head_dim] each with qk_norm, else NULL       */
    double *inv_freq; /* [head_dim / 2]: RoPE frequencies                        */
    float *rope;   /* [head_dim]: cos and sin of one position                    */
    /* workspace, grown to the largest call so far */
    int ws_tokens;
    float *qkv;    /* [ws_tokens, qkv_dim]                                      */
    float *attn;   /* [ws_tokens, heads * head_dim]                             */
    float *k_tmp;  /* [ws_tokens * kv_heads * head_dim]: the call's K and V */
    float *v_tmp;
    float *io;     /* [ws_tokens, hidden]: x, then y, in float (16-bit layers) */
    long ws_scores;
    float *scores; /* [ws_scores]: CPU_ATTN_ROWS x keys                          */
    long ws_gathered;
    float *gathered; /* [ws_gathered]: K then V of one sequence, from the cache, widened */
} cpu_layer;

forge_status cpu_layer_init(forge_layer *layer, const forge_layer_weights *w);
void cpu_layer_free(forge_layer *layer);
forge_status cpu_forward(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x, void *y,
                         forge_stage *failed);

#endif
