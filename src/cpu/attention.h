/* attention.h: causal attention of one sequence over its keys (CPU backend). */
#ifndef FORGE_CPU_ATTENTION_H
#define FORGE_CPU_ATTENTION_H

/* Query rows handled by one QK^T GEMM; scores need rows x keys floats. */
#define CPU_ATTN_ROWS 64

typedef struct {
    const float *q;   /* query i, head h at q + i * q_stride + h * head_dim          */
    int q_stride;
    const float *k;   /* key j of kv head g at k + g * kv_head_stride + j * head_dim */
    const float *v;   /* value likewise                                             */
    long kv_head_stride;
    float *out;       /* output i, head h at out + i * out_stride + h * head_dim      */
    int out_stride;
    int n_queries;    /* queries at positions q_pos0 .. q_pos0 + n_queries - 1        */
    int q_pos0;
    int k_pos0;       /* key j sits at position k_pos0 + j; query p sees keys <= p    */
    int heads, kv_heads, head_dim;
} cpu_attention_args;

/* softmax(Q K^T / sqrt(head_dim) + causal mask) V, for every head;
 * scores: CPU_ATTN_ROWS * (q_pos0 + n_queries - k_pos0) floats of scratch. */
void cpu_attention(const cpu_attention_args *a, float *scores);

#endif
