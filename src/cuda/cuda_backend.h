/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_backend.h: the CUDA backend's host-side state, shared by its files:
 * cuda_context.c (device, stream, buffers), cuda_weights.c (a layer's
 * weights), cuda_cache.c (the contiguous cache), cuda_forward.c (the fp32
 * forward call and what the forward calls share), layer16.c (the bf16 and
 * fp16 forward call), cuda_attention.c (attention alone), cuda_graph.c
 * (graphs), lt_linear.c (projections through cuBLASLt), cuda_paged.c (the
 * paged KV cache), layer_paged.c (the layer over it); cuda_backend.c holds
 * the operations' table. */
#ifndef FORGE_CUDA_BACKEND_H
#define FORGE_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "error.h"
#include "kernels.h"
#include "support.h"

#define WORKSPACE_BYTES ((size_t)32 << 20) /* shared by cuBLAS and cuBLASLt */

typedef struct {
    int device;
    cudaStream_t stream;     /* the caller's, or own_stream */
    cudaStream_t own_stream; /* non-blocking, so that calls can be captured */
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *workspace;
    cudaEvent_t watch[2]; /* forge_stopwatch_start, _stop */
    int hopper;           /* compute capability 9.0: the sm_90a kernels run */
    int *work;            /* the Hopper attention kernel's work counters (FCUDA_WORK_BYTES) */
    int sms;              /* multiprocessors */
} cuda_ctx;

/* A cuBLASLt y = x W^T (+ bias) for one token count, planned once. */
typedef struct {
    int tokens; /* 0: not planned */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t w, x, y;
    cublasLtMatmulAlgo_t algo;
} lt_linear;

/* A layer on the device. Weights, activations and K, V are in the layer's
 * dtype; fp32 layers also use the unfused path's buffers. */
typedef struct {
    void *w_qkv;        /* [qkv_dim, hidden], Q and K rows in RoPE pair order (qkv_store.cuh) */
    void *b_qkv;        /* [qkv_dim] or NULL */
    void *w_o;          /* [hidden, heads * head_dim] */
    void *b_o;          /* [hidden] or NULL */
    double *inv_freq;   /* [head_dim / 2] */
    lt_linear qkv_gemm, o_gemm;
    /* workspace, grown to the largest call reserved */
    int ws_tokens;
    void *qkv;          /* [T, qkv_dim] */
    void *q;            /* fp32: per sequence [heads, n, head_dim]; 16-bit: [T, heads, head_dim] */
    void *attn;         /* [T, heads * head_dim] */
    void *k_tmp, *v_tmp; /* [T * kv_heads * head_dim]: K, V of cache-less calls */
    float *heads_out;   /* fp32 unfused: [T * heads * head_dim], head-major */
    size_t ws_scores;
    float *scores;      /* fp32 unfused: heads * n * keys of the largest sequence */
    unsigned ws_gen;    /* times the workspace moved: graphs that captured it re-capture */
    cudaEvent_t ev[FORGE_STAGE_COUNT + 1];
} cuda_layer;

/* K and V of a cache: fp32 [slots, kv_heads, max_seq, head_dim], the rows
 * the CUDA-core kernels read; bf16 and fp16 [slots, max_seq, kv_heads,
 * head_dim], the tensor-core kernels' token-major rows. */
typedef struct {
    void *k, *v;
} cuda_cache;

forge_status cuda_err(const char *where, const char *what, cudaError_t e);
forge_status blas_err(const char *where, const char *what, cublasStatus_t e);

#define CUDA_TRY(where, call)                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess) return cuda_err(where, #call, e_);                                \
    } while (0)

#define BLAS_TRY(where, call)                                                                    \
    do {                                                                                         \
        cublasStatus_t e_ = (call);                                                              \
        if (e_ != CUBLAS_STATUS_SUCCESS) return blas_err(where, #call, e_);                      \
    } while (0)

/* lt_linear.c: y [tokens, out] = x [tokens, in] W^T (+ bias), all in dtype,
 * accumulated in float32. A plan is kept until the token count changes. */
forge_status lt_linear_plan(cuda_ctx *c, lt_linear *g, forge_dtype dtype, const void *bias, int tokens, int in,
                            int out);
forge_status lt_linear_run(cuda_ctx *c, const lt_linear *g, void *y, const void *x, const void *w);
void lt_linear_free(lt_linear *g);

/* Sequences in the launch that starts at sequence `first` of n: batches
 * go FCUDA_MAX_SEQS to a launch. */
static inline int cuda_launch_seqs(int n, int first) {
    return n - first < FCUDA_MAX_SEQS ? n - first : FCUDA_MAX_SEQS;
}

/* The backend's operations (backend.h), by file: */
/* cuda_context.c */
forge_status cuda_context_init(forge_context *ctx);
void cuda_context_free(forge_context *ctx);
forge_status cuda_set_stream(forge_context *ctx, void *stream);
forge_status cuda_synchronize(forge_context *ctx);
forge_status cuda_stopwatch_start(forge_context *ctx);
forge_status cuda_stopwatch_stop(forge_context *ctx, double *us);
forge_status cuda_buffer_alloc(forge_context *ctx, size_t bytes, void **out);
void cuda_buffer_free(forge_context *ctx, void *p);
forge_status cuda_buffer_copy(forge_context *ctx, void *dst, const void *src, size_t bytes, int to_host);
/* cuda_weights.c */
forge_status cuda_layer_init(forge_layer *layer, const forge_layer_weights *w);
void cuda_layer_free(forge_layer *layer);
/* cuda_cache.c */
forge_status cuda_cache_init(forge_kv_cache *cache);
void cuda_cache_free(forge_kv_cache *cache);
forge_status cuda_cache_read(const forge_kv_cache *cache, int slot, int len, void *k, void *v);
forge_status cuda_cache_write(forge_kv_cache *cache, int slot, int len, const void *k, const void *v);
/* cuda_forward.c */
forge_status cuda_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs, int total,
                          const void *x, void *y, forge_stage *failed);
forge_status cuda_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]);
/* cuda_attention.c */
forge_status cuda_attention(forge_context *ctx, const forge_attention_args *a, int total_q, int total_kv);
/* cuda_graph.c */
forge_status cuda_graph_capture(forge_graph *graph);
forge_status cuda_graph_launch(forge_graph *graph);
void cuda_graph_free(forge_graph *graph);

/* cuda_forward.c, for layer16.c, layer_paged.c and cuda_graph.c */
/* backend.h's reserve */
forge_status cuda_reserve(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs, int total);
/* y = x W^T + bias of a projection of `tokens` tokens: linear_small.cu's
 * GEMM where it serves (small fp32 calls), else cuBLASLt's planned one. */
forge_status cuda_linear(forge_layer *layer, const lt_linear *plan, void *y, const void *x, const void *w,
                         const void *bias, int tokens, int in, int out);
/* A forward call's start: x and y must be device memory; *record: time the
 * stages (profiling on, the stream not capturing). Its end: the last event. */
forge_status cuda_forward_begin(forge_layer *layer, const void *x, const void *y, int *record);
forge_status cuda_forward_end(forge_layer *layer, int record, forge_stage *failed);
/* The sequences [first, first + count) as one launch's parameters. */
fcuda_batch cuda_batch_of(const forge_seq *seqs, int first, int count, int tok0);
/* Starts a stage of a forward call: fails it when the test hook asks, and
 * records its event when profiling. */
forge_status cuda_stage_begin(forge_layer *layer, forge_stage stage, int record, forge_stage *failed);
/* Queues tensor-core attention: Hopper's kernel where it serves the head
 * dim and the context has not asked for the portable one, else mma.sync. */
forge_status cuda_flash_tc(forge_context *ctx, fcuda_mma_args *m, const fcuda_varlen *b, const char *fn);

/* cuda_paged.c: the paged cache's backend operations (backend.h) */
forge_status cuda_paged_init(forge_paged_cache *cache);
void cuda_paged_free(forge_paged_cache *cache);
forge_status cuda_paged_set_table(forge_paged_cache *cache, int seq, int first, int count);
forge_status cuda_paged_copy_page(forge_paged_cache *cache, int dst, int src, int tokens);
forge_status cuda_paged_write(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                              const int *row0, const void *k, const void *v);
forge_status cuda_paged_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v);
forge_status cuda_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                  int total_q);
int cuda_paged_split_size(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens);
/* Grows the split results' buffer for the call (an error while the stream
 * is capturing); the generation counts its moves. */
forge_status cuda_paged_reserve(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                int total_q);
unsigned cuda_paged_generation(const forge_paged_cache *cache);
/* The pool and tables, for kernels that write into the pages. */
const fcuda_pool *cuda_paged_pool(const forge_paged_cache *cache);
/* The attention with pos_dev (device [n] or NULL, see fcuda_paged_batch.pos):
 * the positions read when the kernels run. */
forge_status cuda_paged_attend(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                               const int *pos_dev, int total_q);
/* The length every sequence of such a call may reach and still be read
 * whole by the grid chosen for these lengths: a graph recorded at lens
 * serves longer sequences up to it. */
int cuda_paged_reach(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens);

/* layer_paged.c: the layer over a paged cache (backend.h) */
forge_status cuda_reserve_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step);
forge_status cuda_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step,
                                const void *x, void *y, forge_stage *failed);

/* layer16.c: cuda_forward for bf16 and fp16 layers */
forge_status cuda_forward16(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                            int total, const void *x, void *y, int record, forge_stage *failed);

#endif
