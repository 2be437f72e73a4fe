/* SPDX-License-Identifier: Apache-2.0 */
/* kernels.h: the CUDA backend's kernels, as seen from its C host code. Each
 * launcher queues its kernel on the given stream and returns the launch's
 * error (cudaGetLastError). */
#ifndef FORGE_CUDA_KERNELS_H
#define FORGE_CUDA_KERNELS_H

#include <cuda_runtime_api.h>

#include "forge.h"

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
    int seq[FCUDA_MAX_SEQS];      /* its id: its row of the page tables            */
    int max_tokens;               /* the most tokens of one sequence                */
} fcuda_batch;

/* The split of a QKV projection's output (split_rope.cu, and the epilogue of
 * linear_small.cu's QKV form): token t of qkv [T, (heads + 2 kv_heads) *
 * head_dim] (Q and K rows in RoPE pair order, qkv_store.cuh) becomes row t
 * of q [T, heads, head_dim], rotated, and row r of k and v [rows, kv_heads,
 * head_dim], the one layout of K and V: in a KV cache's pool (table not
 * NULL), r = table[seq][position / page_size] * page_size + position %
 * page_size; in a call's scratch, r = t. */
typedef struct {
    const void *qkv;
    void *q, *k, *v;
    const double *inv_freq; /* [head_dim / 2] RoPE frequencies */
    const int *table;       /* the cache's page tables [seqs, max_pages], or NULL */
    int page_size, max_pages;
    int heads, kv_heads, head_dim;
    forge_rope_style rope_style;
    forge_dtype dtype;
    const int *pos; /* NULL, or device [n]: the launch's sequences' pos0, read
                       when the kernel runs (a graph replays with new ones) */
} fcuda_split_args;

cudaError_t fcuda_split_rope(const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream);

/* model_ops.cu: a model's row operations in dtype (backend.h's model
 * operations). RMSNorm of rows of dim elements, `group` of them side by
 * side every `stride` elements (one a row: group 1, stride dim; in place
 * when out is x), the residual res first added into x where res is not
 * NULL (group 1 only); out [rows, inter] = silu(gate) * up of gate_up
 * [rows, 2 * inter]; out's rows the table's rows ids[i] (device ids). */
cudaError_t fcuda_rmsnorm(forge_dtype dtype, void *out, void *x, const void *res, const void *w, long rows, int dim,
                          float eps, int group, long stride, cudaStream_t stream);
cudaError_t fcuda_silu_mul(forge_dtype dtype, void *out, const void *gate_up, long rows, int inter, cudaStream_t stream);
cudaError_t fcuda_gather_rows(void *out, const void *table, const int *ids, long rows, size_t row_bytes,
                              cudaStream_t stream);
/* out[r] = the index of the first largest element of row r of x [rows, cols]. */
cudaError_t fcuda_argmax_rows(forge_dtype dtype, int *out, const void *x, long rows, int cols, cudaStream_t stream);
/* Each row's candidates for a draw (backend.h's sample_front; settings are
 * forge_sample_row, of sample_front.h). */
cudaError_t fcuda_sample_front(forge_dtype dtype, void *out, const void *logits, const void *settings,
                               const uint32_t *seen, long rows, int vocab, int cap, cudaStream_t stream);

/* The GEMMs of linear_small.cu serve calls of at most this many tokens whose
 * weight matrix has at most this many elements; larger ones go to cuBLASLt. */
#define FCUDA_SMALL_TOKENS 64
#define FCUDA_SMALL_WEIGHTS ((size_t)1 << 22)

int fcuda_linear_small_fits(int tokens, int in, int out);
/* y [tokens, out] = x [tokens, in] W^T + bias (bias may be NULL), float32. */
cudaError_t fcuda_linear_small(const float *x, const float *w, const float *bias, float *y,
                               int tokens, int in, int out, cudaStream_t stream);
/* The QKV projection of a whole small float32 call (every sequence in b,
 * from token 0), split, rotated and stored as fcuda_split_rope would;
 * a->qkv unused. */
cudaError_t fcuda_qkv_small(const float *x, const float *w, const float *bias, int in,
                            const fcuda_split_args *a, const fcuda_batch *b, cudaStream_t stream);

/* Attention over K and V rows that lie one after another for each sequence
 * (a call's scratch, or a KV cache whose sequences each hold one page),
 * FlashAttention's varlen layout: sequence s of a launch owns query rows
 * q0[s] .. q0[s+1]-1 and key rows k0[s] .. k0[s]+nk[s]-1. The kernels: on
 * tensor cores in bf16 and fp16 (flash_mma.cu, and Hopper's
 * flash_wgmma.cu), on CUDA cores in float32 (flash_attention.cu). */
typedef struct {
    int n;
    int q0[FCUDA_MAX_SEQS + 1];
    int k0[FCUDA_MAX_SEQS];
    int nk[FCUDA_MAX_SEQS];
    int max_q; /* the most query rows of one sequence */
} fcuda_varlen;

typedef struct {
    const void *q;   /* [total_q, heads, head_dim]              */
    const void *k;   /* [total_k, kv_heads, head_dim]           */
    const void *v;   /* [total_k, kv_heads, head_dim]           */
    void *out;       /* [total_q, heads, head_dim]              */
    float *lse;      /* [heads, total_q] or NULL                */
    int total_q, total_k; /* rows of q (and out), and of k and v */
    int heads, kv_heads, head_dim;
    float scale;     /* of the scores, > 0 */
    int causal;      /* query i of n sees keys <= m - n + i of m */
    forge_dtype dtype; /* of q, k, v and out */
    int *work;       /* the Hopper kernel's work counters (items taken,
                        producers done): FCUDA_WORK_BYTES of device memory,
                        zero before its first launch, which each launch
                        leaves zero again */
    int window;      /* > 0 (causal): query i sees only keys > m - n + i - window;
                        the Hopper kernel takes none */
} fcuda_attn_args;

#define FCUDA_WORK_BYTES (2 * sizeof(int)) /* fcuda_attn_args.work */

/* float32, causal, without lse (flash_attention.cu): 1 when built for this
 * head dim; the kernels' shared-memory limits, set once per process before
 * any launch; the launch. */
int fcuda_flash_f32_supported(int head_dim);
cudaError_t fcuda_flash_f32_init(void);
cudaError_t fcuda_flash_f32(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream);

/* 1 when the tensor-core kernel is built for this head dim. */
int fcuda_flash_mma_supported(int head_dim);
/* Sets the kernels' shared-memory limits; once per process, before any launch. */
cudaError_t fcuda_flash_mma_init(void);
cudaError_t fcuda_flash_mma(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream);

/* The same on Hopper's wgmma (flash_wgmma.cu, sm_90a only), head dims 64
 * and 128; a build whose architectures stop below 9.0 has none, and
 * reports no head dim supported. */
#ifdef FORGE_HAVE_SM90A
int fcuda_flash_wgmma_supported(int head_dim);
cudaError_t fcuda_flash_wgmma_init(void);
cudaError_t fcuda_flash_wgmma(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream);
#else
static inline int fcuda_flash_wgmma_supported(int head_dim) { return (void)head_dim, 0; }
static inline cudaError_t fcuda_flash_wgmma_init(void) { return cudaSuccess; }
static inline cudaError_t fcuda_flash_wgmma(const fcuda_attn_args *a, const fcuda_varlen *b, cudaStream_t stream) {
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
    forge_dtype dtype;
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
    int window;      /* > 0: a sliding window; the splits then cover each
                        sequence's tokens from its first query's window on */
} fcuda_paged_args;

/* (query, head) rows of one KV head's group that a block of the attention
 * kernel takes, and how many of its blocks an SM holds, for a pool's dtype
 * and head dim: the launch's grid and the split size follow from them. */
int fcuda_paged_rows(forge_dtype dtype, int head_dim);
cudaError_t fcuda_paged_blocks_per_sm(forge_dtype dtype, int head_dim, int *blocks);

/* Attention of each sequence's last row0[i+1] - row0[i] positions over its
 * count[i] tokens (causal), each KV head read once for its group of query
 * heads; sequences longer than split_size are read by several blocks whose
 * partial results a second kernel merges by log-sum-exp. */
cudaError_t fcuda_paged_attention(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b,
                                  cudaStream_t stream);

/* The unfused path's softmax, one sequence: scores [rows, keys] with row r
 * the query r % n_queries at position q_pos0 + r % n_queries and key j at
 * k_pos0 + j, already scaled; becomes the causal softmax (within the last
 * `window` positions up to the query's, where window > 0), masked entries 0. */
cudaError_t fcuda_softmax_causal(float *scores, int rows, int n_queries, int keys, int q_pos0,
                                 int k_pos0, int window, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
