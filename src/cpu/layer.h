/* SPDX-License-Identifier: Apache-2.0 */
/* layer.h: the CPU backend's layer (cpu_backend.c) and the stages of a
 * forward call that its contiguous and paged calls share. */
#ifndef FORGE_CPU_LAYER_H
#define FORGE_CPU_LAYER_H

#include "backend.h"

typedef struct {
    float *w_qkv;  /* [qkv_dim, hidden]: q_proj, k_proj, v_proj rows stacked    */
    float *b_qkv;  /* [qkv_dim], NULL when none of q, k, v has a bias          */
    float *w_o;    /* [hidden, heads * head_dim]                                */
    float *b_o;    /* [hidden] or NULL                                          */
    double *inv_freq; /* [head_dim / 2]: RoPE frequencies                        */
    float *rope;   /* [head_dim]: cos and sin of one position                    */
    /* workspace, grown to the largest call so far */
    int ws_tokens;
    float *qkv;    /* [ws_tokens, qkv_dim]                                      */
    float *attn;   /* [ws_tokens, heads * head_dim]                             */
    float *k_tmp;  /* [ws_tokens * kv_heads * head_dim]: K, V of cache-less calls */
    float *v_tmp;
    float *io;     /* [ws_tokens, hidden]: x, then y, in float (16-bit layers) */
    long ws_scores;
    float *scores; /* [ws_scores]: CPU_ATTN_ROWS x keys                          */
    long ws_gathered;
    float *gathered; /* [ws_gathered]: K then V of one paged sequence, widened   */
} cpu_layer;

/* Grows the workspace for a call of `tokens` tokens whose longest sequence
 * sees `keys` keys; `gathered` floats for paged K and V. */
forge_status cpu_workspace(cpu_layer *l, const forge_layer_config *c, int tokens, long keys, long gathered);

/* qkv = x Wqkv^T + b. */
void cpu_project(forge_layer *layer, int total, const void *x);
/* Each token's qkv row rotated at its position (sequence s's tokens at
 * seqs[s].pos0 ..) and rounded to the layer's dtype. */
void cpu_rotate(forge_layer *layer, const forge_seq *seqs, int n_seqs);
/* y = attn Wo^T + b, attn rounded to the layer's dtype first. */
void cpu_output(forge_layer *layer, int total, void *y);

/* With profiling on, t[i] = now; at the last stage, the stage times. */
void cpu_stage_mark(forge_layer *layer, double *t, int i);

/* forge_layer_forward_paged's computation (layer_paged.c). */
forge_status cpu_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step,
                               const void *x, void *y, forge_stage *failed);

#endif
