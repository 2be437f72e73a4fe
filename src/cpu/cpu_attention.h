/* SPDX-License-Identifier: Apache-2.0 */
/* attention.h: attention of one sequence over its keys (CPU backend). */
#ifndef FORGE_CPU_ATTENTION_H
#define FORGE_CPU_ATTENTION_H

/* Query rows handled by one QK^T GEMM; scores need rows x keys floats. */
#define CPU_ATTN_ROWS 64

typedef struct {
    const float *q;   /* query i, head h at q + i * q_stride + h * head_dim               */
    int q_stride;
    const float *k;   /* key j of kv head g at k + g * kv_head_stride + j * k_stride      */
    const float *v;   /* value likewise                                                  */
    long kv_head_stride;
    int k_stride;
    int n_keys;       /* keys 0 .. n_keys-1 exist                                        */
    float *out;       /* output i, head h at out + i * out_stride + h * head_dim           */
    int out_stride;
    float *lse;       /* NULL, or row i of head h's log-sum-exp at lse + h * lse_stride + i */
    long lse_stride;
    int n_queries;    /* queries at positions q_pos0 .. q_pos0 + n_queries - 1             */
    int q_pos0;
    int k_pos0;       /* key j sits at position k_pos0 + j                                */
    int causal;       /* query p sees keys at positions <= p; else every key              */
    int window;       /* > 0 (with causal): query p sees only positions > p - window      */
    float scale;      /* of the scores                                                    */
    float softcap;    /* > 0: scores s become softcap * tanh(s / softcap)                 */
    int heads, kv_heads, head_dim;
} cpu_attention_args;

/* softmax(cap(scale * Q K^T) + mask) V for every head; a row that sees no key gets
 * zeros (and a log-sum-exp of -inf). scores: CPU_ATTN_ROWS * n_keys floats
 * of scratch. */
void cpu_attention(const cpu_attention_args *a, float *scores);

/* One KV head of a sequence where its tokens lie in a paged pool: token p
 * at row (pages[p / page_size] * page_size + p % page_size) of rows
 * row_stride floats apart, the head's K and V at k and v within a row. */
typedef struct {
    const float *k, *v;
    const int *pages;
    int page_size;
    long row_stride;
} cpu_paged_head;

/* One query row q [head_dim] over tokens [first, end) of a paged head:
 * out [head_dim] = softmax(cap(scale * q K^T)) V, read where the tokens
 * lie; returns the log-sum-exp (-inf with no token, out then zeros).
 * scores: end - first floats of scratch. */
float cpu_attend_row(const float *q, const cpu_paged_head *kv, int first, int end, int head_dim, float scale,
                     float softcap, float *scores, float *out);

#endif
