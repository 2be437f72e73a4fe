/* SPDX-License-Identifier: Apache-2.0 */
/* kernels.h: the CUDA backend's kernels, as seen from its C host code. Each
 * launcher queues its kernel on the given stream and returns the launch's
 * error (cudaGetLastError). */
#ifndef FORGE_CUDA_KERNELS_H
#define FORGE_CUDA_KERNELS_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Checks of the current device (device.cu): the PTX version of the code it
 * runs, or the error when the build has none for it
 * (cudaErrorNoKernelImageForDevice); and whether kernels may overlap by
 * programmatic dependent launch, from its compute capability's major and
 * that PTX version. */
cudaError_t fcuda_device_check(int *ptx_version);
void fcuda_pdl_enable(int major, int ptx_version);

/* Sequences handled by one launch. Passed by value as a kernel parameter, so
 * that a forward call makes no host copy and can be captured in a graph;
 * larger batches take several launches. */
#define FCUDA_MAX_SEQS 64

typedef struct {
    int n;                        /* sequences in this launch                      */
    int tok0[FCUDA_MAX_SEQS + 1]; /* sequence i owns tokens tok0[i] .. tok0[i+1]-1 */
    int pos0[FCUDA_MAX_SEQS];     /* position of its first token                   */
    int slot[FCUDA_MAX_SEQS];     /* its KV cache slot                              */
    int max_tokens;               /* the most tokens of one sequence                */
} fcuda_batch;

/* Where K and V of a sequence live, as on the CPU backend: its cache slot,
 * [kv_heads, max_seq, head_dim] from position 0, or without a cache the
 * call's scratch, [kv_heads, n_tokens, head_dim] from its first token, at
 * token offset tok0 * kv_heads * head_dim. */
typedef struct {
    float *k, *v;  /* cache [slots, kv_heads, max_seq, head_dim] or scratch [T * kv_heads * head_dim] */
    int use_cache;
    int max_seq;
} fcuda_kv;

typedef struct {
    const float *qkv;       /* [T, (heads + 2 kv_heads) * head_dim], biases added   */
    float *q;               /* per sequence [heads, n, head_dim] at heads * tok0 * head_dim */
    const double *inv_freq; /* [head_dim / 2] RoPE frequencies                      */
    fcuda_kv kv;
    int heads, kv_heads, head_dim;
    int rope_style; /* forge_rope_style */
} fcuda_split_args;

/* The GEMMs of linear_small.cu serve calls of at most this many tokens whose
 * weight matrix has at most this many elements; larger ones go to cuBLASLt. */
#define FCUDA_SMALL_TOKENS 64
#define FCUDA_SMALL_WEIGHTS ((size_t)1 << 22)

int fcuda_linear_small_fits(int tokens, int in, int out);
/* y [tokens, out] = x [tokens, in] W^T + bias (bias may be NULL). */
cudaError_t fcuda_linear_small(const float *x, const float *w, const float *bias, float *y,
                               int tokens, int in, int out, cudaStream_t stream);
/* The QKV projection of a whole small call (every sequence in b, from token
 * 0), split, rotated and stored as fcuda_split_rope would; a->qkv unused. */
cudaError_t fcuda_qkv_small(const float *x, const float *w, const float *bias, int in,
                            const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream);

/* Splits qkv (Q and K rows in RoPE pair order, see qkv_store.cuh), rotates
 * Q and K, writes Q to q and K, V to their place. */
cudaError_t fcuda_split_rope(const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream);

typedef struct {
    const float *q; /* as written by fcuda_split_rope */
    fcuda_kv kv;
    float *out;     /* [T, heads * head_dim] */
    int heads, kv_heads, head_dim;
    float scale;    /* 1 / sqrt(head_dim) */
} fcuda_attn_args;

/* 1 when the flash kernel is built for this head dim. */
int fcuda_flash_supported(int head_dim);
/* Sets the kernels' shared-memory limits; once per process, before any launch. */
cudaError_t fcuda_flash_init(void);
/* Causal flash attention (online softmax, K/V tiles in shared memory). */
cudaError_t fcuda_flash_attention(const fcuda_attn_args *a, const fcuda_batch *b,
                                  cudaStream_t stream);

/* Attention on tensor cores (flash_mma.cu, flash_wgmma.cu), FlashAttention's
 * varlen layout: sequence s of a launch owns query rows q0[s] .. q0[s+1]-1
 * and key rows k0[s] .. k0[s]+nk[s]-1 (packed one after another, or each in
 * its KV cache slot). */
typedef struct {
    int n;
    int q0[FCUDA_MAX_SEQS + 1];
    int k0[FCUDA_MAX_SEQS];
    int nk[FCUDA_MAX_SEQS];
    int max_q; /* the most query rows of one sequence */
} fcuda_varlen;

typedef struct {
    const void *q;   /* [total_q, heads, head_dim], bf16 or fp16 */
    const void *k;   /* [total_k, kv_heads, head_dim]           */
    const void *v;   /* [total_k, kv_heads, head_dim]           */
    void *out;       /* [total_q, heads, head_dim]              */
    float *lse;      /* [heads, total_q] or NULL                */
    int total_q, total_k; /* rows of q (and out), and of k and v */
    int heads, kv_heads, head_dim;
    float scale;     /* of the scores, > 0 */
    int causal;      /* query i of n sees keys <= m - n + i of m */
    int bf16;        /* else fp16 */
    int *work;       /* the Hopper kernel's work counters (items taken,
                        producers done): FCUDA_WORK_BYTES of device memory,
                        zero before its first launch, which each launch
                        leaves zero again */
} fcuda_mma_args;

#define FCUDA_WORK_BYTES (2 * sizeof(int)) /* fcuda_mma_args.work */

/* 1 when the tensor-core kernel is built for this head dim. */
int fcuda_flash_mma_supported(int head_dim);
/* Sets the kernels' shared-memory limits; once per process, before any launch. */
cudaError_t fcuda_flash_mma_init(void);
cudaError_t fcuda_flash_mma(const fcuda_mma_args *a, const fcuda_varlen *b, cudaStream_t stream);

/* The same on Hopper's wgmma (flash_wgmma.cu, sm_90a only), head dims 64
 * and 128; a build whose architectures stop below 9.0 has none, and
 * reports no head dim supported. */
#ifdef FORGE_HAVE_SM90A
int fcuda_flash_wgmma_supported(int head_dim);
cudaError_t fcuda_flash_wgmma_init(void);
cudaError_t fcuda_flash_wgmma(const fcuda_mma_args *a, const fcuda_varlen *b, cudaStream_t stream);
#else
static inline int fcuda_flash_wgmma_supported(int head_dim) { return (void)head_dim, 0; }
static inline cudaError_t fcuda_flash_wgmma_init(void) { return cudaSuccess; }
static inline cudaError_t fcuda_flash_wgmma(const fcuda_mma_args *a, const fcuda_varlen *b, cudaStream_t stream) {
    return (void)a, (void)b, (void)stream, cudaErrorNotSupported;
}
#endif

/* Paged KV cache (paged.cu): K and V pools [n_pages, page_size, kv_heads,
 * head_dim] in the cache's dtype, and the page tables [max_seqs, max_pages]
 * (token p of sequence s: row p % page_size of page table[s][p / page_size]).
 * A launch's sequences travel as a kernel parameter. */
typedef struct {
    void *k, *v;          /* the pools                                     */
    const int *table;     /* [max_seqs, max_pages]                         */
    int kv_heads, head_dim, page_size, max_pages;
    int dtype;            /* forge_dtype                                   */
} fcuda_pool;

typedef struct {
    int n;                      /* sequences in this launch                  */
    int seq[FCUDA_MAX_SEQS];    /* their ids: rows of the page table         */
    int pos0[FCUDA_MAX_SEQS];   /* append: the first position written        */
    int count[FCUDA_MAX_SEQS];  /* append: tokens written; attention: tokens held */
    int row0[FCUDA_MAX_SEQS + 1]; /* rows of the call's k, v (append) or q (attention) */
    int max_count;              /* append: the most tokens of one sequence   */
    int max_rows;               /* attention: the most query rows of one sequence */
    const int *pos;             /* attention: NULL, or device [n]: where each
                                   sequence's new tokens start, read when the kernel
                                   runs (a graph replays with new ones); count is
                                   then pos + its rows */
} fcuda_paged_batch;

/* 1 when the paged kernels are built for this head dim. */
int fcuda_paged_supported(int head_dim);
cudaError_t fcuda_paged_init(void);
/* K and V rows row0[i] .. of k and v [rows, kv_heads, head_dim] to sequence
 * seq[i] at positions pos0[i] .. pos0[i] + count[i] - 1 (16-byte aligned). */
cudaError_t fcuda_paged_write(const fcuda_pool *p, const fcuda_paged_batch *b, const void *k, const void *v,
                              cudaStream_t stream);

typedef struct {
    const void *q;   /* [total_q, heads, head_dim]: sequence i's rows row0[i] .. row0[i+1]-1 */
    void *out;       /* [total_q, heads, head_dim] */
    float *lse;      /* [heads, total_q] or NULL */
    float *part;     /* splits > 1: [total_q, heads, splits, head_dim], partial outputs (normalised) */
    float *part_lse; /* splits > 1: [total_q, heads, splits], their log-sum-exps */
    int total_q, heads;
    int split_size;  /* tokens of a sequence a block reads */
    int splits;      /* the most splits of one sequence */
    float scale;
} fcuda_paged_args;

/* (query, head) rows of one KV head's group that a block of the attention
 * kernel takes, and how many of its blocks an SM holds, for a pool's dtype
 * and head dim: the launch's grid and the split size follow from them. */
int fcuda_paged_rows(int dtype, int head_dim);
cudaError_t fcuda_paged_blocks_per_sm(int dtype, int head_dim, int *blocks);

/* Attention of each sequence's last row0[i+1] - row0[i] positions over its
 * count[i] tokens (causal), each KV head read once for its group of query
 * heads; sequences longer than split_size are read by several blocks whose
 * partial results a second kernel merges by log-sum-exp. */
cudaError_t fcuda_paged_attention(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b,
                                  cudaStream_t stream);

/* The split into rows (split_rope_rows.cu) of a bf16 or fp16 layer, or of
 * any layer over a paged cache: token t of qkv [T, (heads + 2 kv_heads) *
 * head_dim] (Q and K rows in RoPE pair order) becomes row t of q [T, heads,
 * head_dim], rotated, and row r of k and v [rows, kv_heads, head_dim]: with
 * a cache, r = slot * max_seq + position (the cache is [slots, max_seq,
 * kv_heads, head_dim]); with a paged one (table not NULL; k and v its
 * pools, slot its sequence id), r = table[slot][position / page_size] *
 * page_size + position % page_size; without, r = t. Head dims are
 * multiples of 8. */
typedef struct {
    const void *qkv;
    void *q, *k, *v;
    const double *inv_freq; /* [head_dim / 2] RoPE frequencies */
    int use_cache, max_seq;
    const int *table;       /* a paged cache's page tables, or NULL */
    int page_size, max_pages;
    int heads, kv_heads, head_dim;
    int rope_style; /* forge_rope_style */
    int dtype;      /* forge_dtype */
    const int *pos; /* NULL, or device [n]: the launch's sequences' pos0, read
                       when the kernel runs (a graph replays with new ones) */
} fcuda_split_rows_args;

cudaError_t fcuda_split_rope_rows(const fcuda_split_rows_args *a, const fcuda_batch *b, cudaStream_t stream);

/* Unfused path, one sequence: scores [rows, keys] with row r the query
 * r % n_queries at position q_pos0 + r % n_queries and key j at k_pos0 + j,
 * already scaled; becomes the causal softmax, masked entries 0. */
cudaError_t fcuda_softmax_causal(float *scores, int rows, int n_queries, int keys, int q_pos0,
                                 int k_pos0, cudaStream_t stream);
/* Per sequence [heads, n, head_dim] at heads * tok0 * head_dim -> out [T, heads * head_dim]. */
cudaError_t fcuda_flatten(const float *heads_out, float *out, int heads, int head_dim,
                          const fcuda_batch *b, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
