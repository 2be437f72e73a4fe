/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_backend.h: the CUDA backend's host-side state, shared by its files:
 * cuda_context.c (device, stream, buffers), cuda_weights.c (a layer's
 * weights), cuda_linear.c (the projections), cuda_forward.c (the layer's
 * forward call), cuda_attention.c (attention over rows: alone, and the
 * layer's), cuda_cache.c (the KV cache's pool), cuda_paged.c (attention
 * over its pages), cuda_graph.c (graphs), cuda_model.c (the model's
 * operations), cuda_comm.c (a split model's devices and collectives),
 * cuda_errors.c (messages); cuda_backend.c holds the operations' table. */
#ifndef FORGE_CUDA_BACKEND_H
#define FORGE_CUDA_BACKEND_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "error.h"
#include "kernels/kernels.h"
#include "support.h"

#define WORKSPACE_BYTES ((size_t)32 << 20) /* shared by cuBLAS and cuBLASLt */

/* A cuBLASLt y = x W^T (+ bias) for one token count, planned once. */
typedef struct {
    int tokens; /* 0: not planned */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t w, x, y;
    cublasLtMatmulAlgo_t algo;
} lt_linear;

/* A model GEMM's plan: its dtype and shape (the token count in g). */
typedef struct {
    forge_dtype dtype;
    int in, out;
    lt_linear g;
} cuda_model_plan;

#define CUDA_MODEL_PLANS 16 /* a block's four shapes and the LM head's, at a few token counts */

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
    /* the model's operations (cuda_model.c): its GEMMs' plans by shape,
     * replaced in turn */
    cuda_model_plan plans[CUDA_MODEL_PLANS];
    int next_plan;
} cuda_ctx;

/* A layer on the device. Weights, activations and K, V are in the layer's
 * dtype; fp32 layers also use the unfused path's scores. */
typedef struct {
    void *w_qkv;        /* [qkv_dim, hidden], Q and K rows in RoPE pair order (qkv_store.cuh) */
    void *b_qkv;        /* [qkv_dim] or NULL */
    void *w_o;          /* [hidden, heads * head_dim] */
    void *b_o;          /* [hidden] or NULL */
    double *inv_freq;   /* [head_dim / 2] */
    void *q_norm, *k_norm; /* [head_dim] in RoPE pair order, with qk_norm; else NULL */
    lt_linear qkv_gemm, o_gemm;
    /* workspace, grown to the largest call reserved */
    int ws_tokens;
    void *qkv;          /* [T, qkv_dim] */
    void *q;            /* [T, heads, head_dim] */
    void *attn;         /* [T, heads * head_dim] */
    void *k_tmp, *v_tmp; /* [T, kv_heads, head_dim]: K, V of calls without a cache */
    size_t ws_scores;
    float *scores;      /* fp32 unfused: [heads, n, keys] of the largest sequence */
    unsigned ws_gen;    /* times the workspace moved: graphs that captured it re-capture */
    cudaEvent_t ev[FORGE_STAGE_COUNT + 1];
} cuda_layer;

/* cuda_errors.c: FORGE_ERR_BACKEND naming the call and CUDA's or cuBLAS's error. */
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
 * accumulated in float32. A plan is kept until the token count changes.
 * fn names the public call in messages. */
forge_status lt_linear_plan(cuda_ctx *c, lt_linear *g, forge_dtype dtype, const void *bias, int tokens, int in,
                            int out, const char *fn);
forge_status lt_linear_run(cuda_ctx *c, const lt_linear *g, void *y, const void *x, const void *w, const char *fn);
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
forge_status cuda_cache_init(forge_paged_cache *cache, const char *fn);
void cuda_cache_free(forge_paged_cache *cache);
forge_status cuda_cache_set_table(forge_paged_cache *cache, size_t at, int count, const char *fn);
forge_status cuda_cache_copy_page(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn);
forge_status cuda_cache_append(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                               const int *row0, const void *k, const void *v, const char *fn);
forge_status cuda_cache_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn);
forge_status cuda_cache_upload(forge_paged_cache *cache, int seq, int first, int count, const void *k, const void *v,
                               const char *fn);
/* cuda_forward.c */
forge_status cuda_reserve(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b);
forge_status cuda_forward(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x, void *y,
                          forge_stage *failed);
forge_status cuda_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]);
/* cuda_attention.c */
forge_status cuda_attention(forge_context *ctx, const forge_attention_args *a, int total_q, int total_kv);
/* cuda_paged.c */
forge_status cuda_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                  int total_q, const int *pos_dev, const char *fn);
int cuda_paged_split_size(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens);
/* cuda_model.c: the model's operations */
forge_status cuda_model_rmsnorm(forge_context *ctx, forge_dtype dtype, void *out, void *x, const void *res,
                                const void *w, long rows, int dim, float eps);
forge_status cuda_model_linear(forge_context *ctx, forge_dtype dtype, void *y, const void *x, const void *w, long rows,
                               int in, int out);
forge_status cuda_model_silu_mul(forge_context *ctx, forge_dtype dtype, void *out, const void *gate_up, long rows,
                                 int inter);
forge_status cuda_model_gather_rows(forge_context *ctx, void *out, const void *table, const int32_t *ids, long rows,
                                    size_t row_bytes);
forge_status cuda_model_argmax_rows(forge_context *ctx, forge_dtype dtype, int32_t *out, const void *x, long rows,
                                    int cols);
forge_status cuda_model_sample_front(forge_context *ctx, forge_dtype dtype, void *out, const void *logits,
                                     const forge_sample_row *settings, const uint32_t *seen, long rows, int vocab,
                                     int cap);
void cuda_model_free(cuda_ctx *c);
/* cuda_comm.c: a split model's ranks (NCCL) */
forge_status cuda_use_device(const forge_context *ctx, int offset, const char *fn);
forge_status cuda_comm_create(forge_context **ctxs, int n, void **comms, const char *fn);
void cuda_comm_abort(void *comm);
void cuda_comm_free(void *comm);
forge_status cuda_all_reduce(forge_context *ctx, void *comm, forge_dtype dtype, void *buf, size_t count);
forge_status cuda_all_gather(forge_context *ctx, void *comm, forge_dtype dtype, void *out, const void *in,
                             size_t count);
forge_status cuda_copy_2d(forge_context *ctx, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                          size_t width, size_t height);
/* cuda_graph.c */
forge_status cuda_graph_capture(forge_graph *graph, const forge_batch *b);
forge_status cuda_graph_launch(forge_graph *graph, const forge_batch *b);
void cuda_graph_free(forge_graph *graph);
forge_status cuda_record_begin(forge_context *ctx, const char *fn);
forge_status cuda_record_end(forge_context *ctx, void **rec, const char *fn);
forge_status cuda_replay(forge_context *ctx, void *rec, const char *fn);
void cuda_record_free(void *rec);
uint64_t cuda_call_stamp(const forge_layer *layer, const forge_paged_cache *cache, const forge_batch *b, int *reach);

/* cuda_attention.c, for the layer: its attention over rows (a call
 * without a cache, or a pinned cache, whose sequences' rows lie one after
 * another), the kernel chosen from the dtype and the layer's path. */
forge_status cuda_attend_rows(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b);
/* An fp32 layer's attention is unfused: asked for, or no flash kernel for its head dim. */
int cuda_unfused(const forge_layer *layer);

/* cuda_cache.c, for the kernels that write into or read the pages. */
typedef struct {
    fcuda_pool pool;   /* K, V and the tables, in device memory */
    float *part;       /* split attention's partial results, grown to the largest call */
    size_t part_bytes;
    unsigned part_gen; /* times part moved: graphs that captured it re-capture */
    int rows;          /* (query, head) rows a block of the paged attention kernel takes */
    int resident;      /* its blocks the GPU holds at once */
} cuda_pool;

/* cuda_paged.c, for the layer and graphs: grows the split results' buffer
 * for a call (an error while the stream is capturing); and the length
 * every sequence of such a call may reach and still be read whole by the
 * grid chosen for these lengths: a graph recorded at lens serves longer
 * sequences up to it. */
forge_status cuda_paged_reserve(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                int total_q, const char *fn);
int cuda_paged_reach(const forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens);

/* cuda_linear.c, for the forward: y = x W^T + bias of a projection of `tokens` tokens: linear_small.cu's
 * GEMM where it serves (small fp32 calls), else cuBLASLt's planned one. */
int cuda_small_gemm(const forge_layer *layer, int tokens, int in, int out);
forge_status cuda_linear(forge_layer *layer, const lt_linear *plan, void *y, const void *x, const void *w,
                         const void *bias, int tokens, int in, int out, const char *fn);

#endif
