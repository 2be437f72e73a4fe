/* SPDX-License-Identifier: Apache-2.0 */
/*
 * forge.h: the public C API of Forge, the attention layer of an LLM inference
 * engine (QKV projection, RoPE, KV cache, causal attention, output projection).
 *
 * Conventions
 *  - Every function that can fail returns a forge_status. On failure it writes
 *    nothing to its outputs, leaves every handle as it was, and
 *    forge_last_error() returns a message naming the problem (per thread).
 *  - Matrices are row-major. Weight matrices use Hugging Face's layout,
 *    [out_features, in_features], so y = x W^T + b.
 *  - Activations (x, y) live where the context's backend computes: host memory
 *    for the CPU backend, device memory for the CUDA backend (forge_buffer_*
 *    allocate and copy either). Weights are given in host memory.
 *  - The CUDA backend queues all work of a call on the context's stream and
 *    returns without waiting for it; forge_context_synchronize waits.
 */
#ifndef FORGE_H
#define FORGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FORGE_BUILDING) && defined(__GNUC__)
#define FORGE_API __attribute__((visibility("default")))
#else
#define FORGE_API
#endif

/* --------------------------------------------------------------- version */

/* The version of this header (CMake reads it from here: the one place). */
#define FORGE_VERSION_MAJOR 0
#define FORGE_VERSION_MINOR 2
#define FORGE_VERSION_PATCH 0

/* The version of the library that runs, "MAJOR.MINOR.PATCH": it may differ
 * from the header's when a program runs against another build. */
FORGE_API const char *forge_version(void);

/* ---------------------------------------------------------------- status */

typedef enum {
    FORGE_OK = 0,
    FORGE_ERR_INVALID_ARGUMENT, /* a NULL pointer, a size out of range      */
    FORGE_ERR_SHAPE,            /* shapes that do not fit together          */
    FORGE_ERR_DTYPE,            /* a dtype that does not match or is unknown */
    FORGE_ERR_CAPACITY,         /* a sequence past the KV cache capacity    */
    FORGE_ERR_OUT_OF_MEMORY,
    FORGE_ERR_IO,               /* a file could not be opened, read, written */
    FORGE_ERR_FORMAT,           /* a file's contents are corrupt            */
    FORGE_ERR_NOT_FOUND,        /* a named tensor is absent                 */
    FORGE_ERR_UNSUPPORTED,      /* valid, but not built or not implemented  */
    FORGE_ERR_BACKEND,          /* a library call of the backend failed     */
} forge_status;

/* A short fixed description of a status code ("invalid argument", ...). */
FORGE_API const char *forge_status_str(forge_status status);

/* The message of the last failing call on this thread, naming the argument,
 * the dimension or the file at fault. "" before any failure. */
FORGE_API const char *forge_last_error(void);

/* ---------------------------------------------------------------- dtypes */

typedef enum {
    FORGE_F32 = 0,
    FORGE_F16,
    FORGE_BF16,
} forge_dtype;

FORGE_API const char *forge_dtype_name(forge_dtype dtype); /* "fp32", "fp16", "bf16" */
FORGE_API size_t forge_dtype_size(forge_dtype dtype);      /* bytes; 0 if unknown */

/* Converts n elements between dtypes (round to nearest even when narrowing).
 * Neither pointer need be aligned; src and dst may overlap only when the
 * dtypes are the same. */
FORGE_API forge_status forge_convert(void *dst, forge_dtype dst_dtype, const void *src,
                                     forge_dtype src_dtype, size_t n);

/* ------------------------------------------------------------- backends */

typedef enum {
    FORGE_BACKEND_AUTO = 0, /* the best backend present */
    FORGE_BACKEND_CPU,
    FORGE_BACKEND_CUDA,
} forge_backend;

FORGE_API const char *forge_backend_name(forge_backend backend); /* "auto", "cpu", "cuda" */

/* FORGE_OK when contexts of this backend can be created here; otherwise
 * FORGE_ERR_UNSUPPORTED and forge_last_error() says why: a build without
 * it, no device, a GPU older than sm_80, a GPU this build has no code for.
 * AUTO is always available: it is CUDA where CUDA is, else the CPU, and
 * forge_backend_available(FORGE_BACKEND_CUDA) tells why it chose the CPU. */
FORGE_API forge_status forge_backend_available(forge_backend backend);

/* A context owns the backend's resources; layers and caches are created in one. */
typedef struct forge_context forge_context;

/* FORGE_BACKEND_AUTO picks the best backend present; asking for one that this
 * build or machine lacks is FORGE_ERR_UNSUPPORTED. */
FORGE_API forge_status forge_context_create(forge_backend backend, forge_context **out);
FORGE_API void forge_context_destroy(forge_context *ctx); /* NULL is a no-op */
FORGE_API forge_backend forge_context_backend(const forge_context *ctx);

/* CUDA: the cudaStream_t that all work of this context's calls is queued on;
 * NULL: the context's own non-blocking stream (the default). A no-op on the
 * CPU backend. A context's calls share scratch memory and must run one
 * after another: before switching streams, let the old one's work finish
 * (or order the streams with an event). */
FORGE_API forge_status forge_context_set_stream(forge_context *ctx, void *stream);

/* Waits for all work queued by this context's calls; reports a device error
 * that surfaced since. */
FORGE_API forge_status forge_context_synchronize(forge_context *ctx);

/* Device time of the work queued by this context's calls between start and
 * stop, measured as bench/torch_baseline.py measures PyTorch: CUDA
 * events on the stream (the wall clock on the CPU backend). Stop waits for
 * that work. */
FORGE_API forge_status forge_stopwatch_start(forge_context *ctx);
FORGE_API forge_status forge_stopwatch_stop(forge_context *ctx, double *us);

/* What a forward call does when a backend stage fails. */
typedef enum {
    FORGE_FALLBACK_ERROR = 0, /* return the error (the default)                     */
    FORGE_FALLBACK_CPU,       /* rerun the call on the CPU backend, count it, log the
                                 backend's error once on stderr                      */
} forge_fallback;

FORGE_API forge_status forge_context_set_fallback(forge_context *ctx, forge_fallback policy);

/* Which flash-attention kernel this context's CUDA calls run (attention
 * alone and 16-bit layers); the CPU backend has one and ignores this. */
typedef enum {
    FORGE_KERNEL_AUTO = 0, /* the Hopper kernel on sm_90 (where the build has
                              sm_90 in its architectures) at its head dims
                              (forge_support_row()), else the portable one     */
    FORGE_KERNEL_PORTABLE, /* the portable mma.sync kernel at every head dim: what
                              GPUs before Hopper run, for comparing the two        */
} forge_kernel;

FORGE_API forge_status forge_context_set_kernel(forge_context *ctx, forge_kernel kernel);

/* ------------------------------------------------------------- buffers */

/* Memory where the context's backend computes (device memory for CUDA). */
FORGE_API forge_status forge_buffer_alloc(forge_context *ctx, size_t bytes, void **out);
FORGE_API void forge_buffer_free(forge_context *ctx, void *buffer); /* NULL is a no-op */
/* Copies between host memory and such a buffer; waits for queued work first. */
FORGE_API forge_status forge_buffer_upload(forge_context *ctx, void *dst, const void *src,
                                           size_t bytes);
FORGE_API forge_status forge_buffer_download(forge_context *ctx, void *dst, const void *src,
                                             size_t bytes);

/* -------------------------------------------------------- layer config */

typedef enum {
    FORGE_ROPE_HALF = 0,    /* Llama: rotate_half, pairs (i, i + head_dim/2) */
    FORGE_ROPE_INTERLEAVED, /* GPT-J: pairs (2i, 2i + 1)                     */
    FORGE_ROPE_NONE,        /* no rotary embedding                           */
} forge_rope_style;

/* Which projections carry a bias (bit mask). */
enum {
    FORGE_BIAS_Q = 1 << 0,
    FORGE_BIAS_K = 1 << 1,
    FORGE_BIAS_V = 1 << 2,
    FORGE_BIAS_O = 1 << 3,
};

/* How RoPE's frequencies are stretched for contexts longer than training's
 * (config.json's rope_scaling). */
typedef enum {
    FORGE_ROPE_SCALING_NONE = 0,
    FORGE_ROPE_SCALING_LLAMA3, /* Llama 3.1's: low frequencies / factor, high kept,
                                  the band between blended                      */
} forge_rope_scaling_type;

typedef struct {
    forge_rope_scaling_type type;
    float factor;                /* > 1                                          */
    float low_freq_factor;       /* wavelengths past original / low are divided  */
    float high_freq_factor;      /* > low_freq_factor; shorter than original /
                                    high are kept                                */
    int original_max_positions;  /* the context length trained on               */
} forge_rope_scaling;

typedef struct {
    int hidden;       /* model width: columns of x and y                       */
    int heads;        /* query heads                                           */
    int kv_heads;     /* key/value heads; divides heads (GQA; 1 is MQA)        */
    int head_dim;     /* even when RoPE is on                                  */
    int max_seq;      /* positions 0 .. max_seq-1: the KV cache capacity        */
    float rope_theta; /* RoPE base, 10000 in Llama 2                           */
    forge_rope_style rope_style;
    unsigned bias;    /* FORGE_BIAS_* bits                                     */
    forge_dtype dtype; /* of weights, x, y, cache; the head dims each dtype
                          takes on CUDA: forge_support_row()             */
    forge_rope_scaling rope_scaling; /* zeros: none                             */
    int qk_norm;      /* 1: RMSNorm over each head of Q and of K before RoPE,
                         weighted by q_norm and k_norm (Qwen 3)                   */
    float norm_eps;   /* its epsilon, with qk_norm                               */
    int window;       /* > 0: each token attends only to itself and the window - 1
                         positions before it (a sliding window); 0: to all before */
    float softcap;    /* > 0: scores capped as forge_attention_args' softcap      */
} forge_layer_config;

/* A config with Llama's defaults: half-rotation RoPE, theta 10000, no biases,
 * float32, max_seq 4096. */
FORGE_API forge_layer_config forge_layer_config_default(int hidden, int heads, int kv_heads,
                                                        int head_dim);

/* Checks a config; FORGE_OK or an error naming the bad field. */
FORGE_API forge_status forge_layer_config_check(const forge_layer_config *cfg);

/* -------------------------------------------------------------- weights */

/* Host pointers in cfg.dtype, in Hugging Face layout. A bias pointer must be
 * set exactly when cfg.bias has its bit. The layer copies them. */
typedef struct {
    const void *q_proj; /* [heads    * head_dim, hidden] */
    const void *k_proj; /* [kv_heads * head_dim, hidden] */
    const void *v_proj; /* [kv_heads * head_dim, hidden] */
    const void *o_proj; /* [hidden, heads * head_dim]    */
    const void *q_bias; /* [heads    * head_dim] or NULL */
    const void *k_bias; /* [kv_heads * head_dim] or NULL */
    const void *v_bias; /* [kv_heads * head_dim] or NULL */
    const void *o_bias; /* [hidden] or NULL              */
    const void *q_norm; /* [head_dim] with cfg.qk_norm, else NULL */
    const void *k_norm; /* [head_dim] with cfg.qk_norm, else NULL */
} forge_layer_weights;

/* ---------------------------------------------------------------- layer */

typedef struct forge_layer forge_layer;

FORGE_API forge_status forge_layer_create(forge_context *ctx, const forge_layer_config *cfg,
                                          const forge_layer_weights *weights, forge_layer **out);
FORGE_API void forge_layer_destroy(forge_layer *layer); /* NULL is a no-op */
FORGE_API forge_layer_config forge_layer_get_config(const forge_layer *layer);

/* ------------------------------------------------------------- KV cache */

/* K and V of one layer for `slots` independent sequences, each with room for
 * cfg.max_seq positions. Every slot starts empty. It is a paged cache (below)
 * whose sequences are the slots, each holding one page of max_seq tokens
 * for its whole life, so that a call may rewrite a slot from any position
 * up to its length. */
typedef struct forge_kv_cache forge_kv_cache;

FORGE_API forge_status forge_kv_cache_create(forge_layer *layer, int slots, forge_kv_cache **out);
FORGE_API void forge_kv_cache_destroy(forge_kv_cache *cache); /* NULL is a no-op */
FORGE_API int forge_kv_cache_slots(const forge_kv_cache *cache);

/* Positions held by a slot (the next token's position). */
FORGE_API forge_status forge_kv_cache_len(const forge_kv_cache *cache, int slot, int *len);

/* Empties a slot, for a new sequence. */
FORGE_API forge_status forge_kv_cache_reset(forge_kv_cache *cache, int slot);

/* Copies a slot's K and V (after RoPE) into host buffers of
 * kv_heads * len * head_dim elements each, laid out [kv_heads, len, head_dim]
 * in the layer's dtype. Either buffer may be NULL. */
FORGE_API forge_status forge_kv_cache_read(const forge_kv_cache *cache, int slot, void *k, void *v);

/* ------------------------------------------------------------- forward */

/* One sequence of a batch. Its tokens are rows of x, in order, after those
 * of the sequences before it. */
typedef struct {
    int slot;     /* its KV cache slot (ignored without a cache)                */
    int pos0;     /* position of its first token                               */
    int n_tokens; /* tokens it has in this call, >= 1                           */
} forge_seq;

/* Runs the layer on a batch of sequences packed into x [total_tokens, hidden],
 * total_tokens being the sum of n_tokens, and writes y [total_tokens, hidden].
 *
 * With a cache, each sequence's K and V go to its slot at positions
 * pos0 .. pos0+n_tokens-1 and its queries attend to positions [0, pos0 + i]
 * of that slot: pos0 = 0 starts a new prompt, pos0 = the slot's length
 * continues it (a one-token call is a decode step), and pos0 below it rewinds.
 * pos0 above the slot's length, two sequences in one slot, and positions at
 * or past max_seq are errors. Afterwards the slot's length is pos0+n_tokens.
 *
 * With cache NULL, each sequence attends only to its own tokens; pos0 then
 * only offsets the RoPE positions. */
FORGE_API forge_status forge_layer_forward(forge_layer *layer, forge_kv_cache *cache,
                                           const forge_seq *seqs, int n_seqs, const void *x,
                                           void *y);

/* The attention algorithm of a layer's forward calls. */
typedef enum {
    FORGE_ATTENTION_FLASH = 0, /* fused flash attention (the default); on CUDA at the
                                  head dims of forge_support_row(), else unfused         */
    FORGE_ATTENTION_UNFUSED,   /* QK^T GEMM, scale, causal mask, softmax, PV GEMM;
                                  on CUDA fp32 layers only (FORGE_ERR_UNSUPPORTED)    */
} forge_attention;

FORGE_API forge_status forge_layer_set_attention(forge_layer *layer, forge_attention path);

/* ------------------------------------------------------ attention alone */

/* Attention over a batch of sequences of different lengths packed one after
 * another (FlashAttention's varlen layout), without the layer around it.
 * Sequence b owns query rows q_offsets[b] .. q_offsets[b+1]-1 and key/value
 * rows kv_offsets[b] .. kv_offsets[b+1]-1. With `causal`, query i of a
 * sequence with n queries and m keys sees keys 0 .. m - n + i: the queries
 * continue a cached prefix of m - n keys (m = n is plain causal prefill).
 * Query heads share KV heads in groups of heads / kv_heads (GQA, MQA). */
typedef struct {
    forge_dtype dtype;     /* of q, k, v and out                                    */
    int batch;             /* sequences, >= 1                                       */
    int heads, kv_heads;   /* kv_heads divides heads                                */
    int head_dim;
    const int *q_offsets;  /* host array [batch + 1], from 0, non-decreasing         */
    const int *kv_offsets; /* host array [batch + 1], from 0, non-decreasing         */
    const void *q;         /* [q_offsets[batch], heads, head_dim], backend memory    */
    const void *k;         /* [kv_offsets[batch], kv_heads, head_dim]               */
    const void *v;         /* [kv_offsets[batch], kv_heads, head_dim]               */
    void *out;             /* [q_offsets[batch], heads, head_dim]                   */
    float *lse;            /* [heads, q_offsets[batch]] float32 or NULL: the natural
                              log of each row's softmax denominator, sum_j
                              exp(scale * q.k_j), for merging partial results;
                              -inf (and zeros in out) for a row that sees no key    */
    float scale;           /* of q.k; 0 means 1 / sqrt(head_dim)                    */
    int causal;            /* 0 or 1                                                */
    int window;            /* > 0, with causal: a sliding window, as Hugging Face's
                              sliding_window: query i sees only the last `window`
                              keys up to its own, keys m - n + i - window + 1 ..
                              m - n + i; 0: no window                               */
    float softcap;         /* > 0: each score s = scale * q.k becomes softcap *
                              tanh(s / softcap) before the softmax and the lse
                              (Gemma 2's attn_logit_softcapping); 0: off            */
} forge_attention_args;

/* out = softmax(scale * Q K^T + mask) V for every sequence and head. On the
 * CPU any dtype and head dim; on CUDA bf16 and fp16 on tensor cores at the
 * head dims of forge_support_row(), buffers 16-byte aligned. */
FORGE_API forge_status forge_attention_forward(forge_context *ctx, const forge_attention_args *args);

/* ------------------------------------------------------ paged KV cache */

/* K and V of one layer for many sequences, in fixed-size pages drawn from
 * one pool: a sequence holds a page table (its pages in order) and grows a
 * page at a time, so sequences of any lengths share the memory. A fork
 * shares its source's pages; the partial last page is copied on the first
 * append that would write into a shared one (copy on write). The pool and
 * the tables live where the context's backend computes. */
typedef struct forge_paged_cache forge_paged_cache;

typedef struct {
    forge_dtype dtype;   /* of K and V                                          */
    int kv_heads, head_dim;
    int page_size;       /* tokens a page: 16, 32, 64, 128 or 256               */
    int n_pages;         /* pages in the pool                                   */
    int max_seqs;        /* sequences alive at once (ids 0 .. max_seqs-1)        */
    int max_seq_len;     /* tokens one sequence can hold                        */
} forge_paged_config;

FORGE_API forge_status forge_paged_cache_create(forge_context *ctx, const forge_paged_config *cfg,
                                                forge_paged_cache **out);
FORGE_API void forge_paged_cache_destroy(forge_paged_cache *cache); /* NULL is a no-op */
FORGE_API forge_paged_config forge_paged_cache_config(const forge_paged_cache *cache);
/* Pages not held by any sequence. */
FORGE_API int forge_paged_cache_free_pages(const forge_paged_cache *cache);

/* A new empty sequence: *seq is its id. */
FORGE_API forge_status forge_paged_seq_new(forge_paged_cache *cache, int *seq);
/* A new sequence holding what src holds, sharing its pages. */
FORGE_API forge_status forge_paged_seq_fork(forge_paged_cache *cache, int src, int *seq);
/* Ends a sequence: its pages go back to the pool once no fork holds them. */
FORGE_API forge_status forge_paged_seq_release(forge_paged_cache *cache, int seq);
/* Tokens a sequence holds. */
FORGE_API forge_status forge_paged_seq_len(const forge_paged_cache *cache, int seq, int *len);
/* Its page table: *n_pages ids into pages (room for max_seq_len / page_size,
 * rounded up); pages may be NULL to ask for the count alone. */
FORGE_API forge_status forge_paged_seq_pages(const forge_paged_cache *cache, int seq, int *pages,
                                             int *n_pages);

/* Appends n_tokens[i] tokens to sequence seqs[i] for each i < n: their K and
 * V are rows of k and v [sum of n_tokens, kv_heads, head_dim] (backend
 * memory, the cache's dtype), the sequences' tokens one after another. The
 * sequences are distinct. Running out of pages, or past max_seq_len, is an
 * error that leaves every sequence as it was. */
FORGE_API forge_status forge_paged_append(forge_paged_cache *cache, int n, const int *seqs,
                                          const int *n_tokens, const void *k, const void *v);

/* Copies a sequence's K and V into host buffers of len * kv_heads *
 * head_dim elements each, laid out [len, kv_heads, head_dim] in the
 * cache's dtype. Either may be NULL. */
FORGE_API forge_status forge_paged_read(const forge_paged_cache *cache, int seq, void *k, void *v);

/* Attention of new queries over paged sequences: decode (one query a
 * sequence) and chunked prefill (several). Sequence seqs[b] owns query rows
 * q_offsets[b] .. q_offsets[b+1]-1, which are its last positions: with n
 * queries over its len tokens, query i sees tokens 0 .. len - n + i (append
 * the queries' K and V first). Query heads share KV heads in groups of
 * heads / kv_heads. */
typedef struct {
    int batch;             /* sequences, >= 1                                       */
    const int *seqs;       /* host [batch], distinct or not                          */
    const int *q_offsets;  /* host [batch + 1], from 0, non-decreasing               */
    int heads;             /* query heads, a multiple of the cache's kv_heads        */
    const void *q;         /* [q_offsets[batch], heads, head_dim], the cache's dtype  */
    void *out;             /* [q_offsets[batch], heads, head_dim]                    */
    float *lse;            /* [heads, q_offsets[batch]] float32 or NULL, as in
                              forge_attention_args                                  */
    float scale;           /* of q.k; 0 means 1 / sqrt(head_dim)                     */
    int split_size;        /* tokens of a sequence one block reads before the partial
                              results merge: 0 lets the backend choose from the shape;
                              a multiple of page_size fixes it, so that a sequence's
                              result does not depend on what else is in the batch   */
    int window;            /* > 0: query i sees only tokens len - n + i - window + 1
                              .. len - n + i (a sliding window; pages wholly before
                              it are not read); 0: no window                        */
    float softcap;         /* as in forge_attention_args                             */
} forge_paged_attention_args;

FORGE_API forge_status forge_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *args);
/* The split size forge_paged_attention would use for these arguments, as
 * the cache is now: args->split_size when it is not 0, else the backend's
 * choice for this batch (the longest sequence's length where the backend
 * reads each sequence whole, as the CPU does). q and out are not read. */
FORGE_API forge_status forge_paged_split_size(const forge_paged_cache *cache, const forge_paged_attention_args *args,
                                              int *split_size);

/* The layer over a paged cache: forge_layer_forward where seqs[i].slot is a
 * sequence id of the cache and seqs[i].pos0 must be its length. Its
 * n_tokens tokens (rows of x, packed as for forge_layer_forward) are
 * appended to it, and their queries attend to all it then holds: one token
 * a sequence is a decode step, more are a prompt or a chunk of one. The
 * cache has the layer's context, dtype, kv_heads and head_dim; positions
 * are bounded by its max_seq_len, not the layer's max_seq. Running out of
 * pages is FORGE_ERR_CAPACITY and leaves every sequence as it was. The
 * split size is the layer's (forge_layer_set_paged_split). Fallback and
 * self-checks treat it as they treat forge_layer_forward. */
FORGE_API forge_status forge_layer_forward_paged(forge_layer *layer, forge_paged_cache *cache,
                                                 const forge_seq *seqs, int n_seqs, const void *x,
                                                 void *y);
/* The split size of the layer's paged calls, as forge_paged_attention_args'
 * split_size: 0 (the default) lets the backend choose it from the shape; a
 * positive size, which must be a multiple of the cache's page size at each
 * call, fixes it, so that a sequence's outputs do not depend on the lengths
 * of the others in its batch (the projections see the batch's token count:
 * keep that the same for the same bits). */
FORGE_API forge_status forge_layer_set_paged_split(forge_layer *layer, int split_size);

/* --------------------------------------------------------------- graphs */

/* One forward call of fixed shape, recorded once and replayed: on CUDA a CUDA
 * graph (a whole layer in one launch), on the CPU a plain call. */
typedef struct forge_graph forge_graph;

/* Records forward(layer, cache, seqs, n_seqs, x, y) without running it. The
 * arguments are checked as a forward call's, against the cache as it is now. */
FORGE_API forge_status forge_graph_create(forge_layer *layer, forge_kv_cache *cache,
                                          const forge_seq *seqs, int n_seqs, const void *x,
                                          void *y, forge_graph **out);
/* Records forge_layer_forward_paged(layer, cache, seqs, n_seqs, x, y), its
 * positions checked against the cache at launch. A batch decode loop:
 * forge_graph_update with each sequence's new length as pos0, then
 * forge_graph_launch, which finds the new tokens' pages, replays the
 * recorded call and advances the lengths. */
FORGE_API forge_status forge_graph_create_paged(forge_layer *layer, forge_paged_cache *cache,
                                                const forge_seq *seqs, int n_seqs, const void *x,
                                                void *y, forge_graph **out);
/* Moves the recorded call to new positions: seqs must have the graph's slots
 * and token counts, in order. A decode loop replays one graph per step. */
FORGE_API forge_status forge_graph_update(forge_graph *graph, const forge_seq *seqs, int n_seqs);
/* Runs the recorded call, as forward would, with the same checks. */
FORGE_API forge_status forge_graph_launch(forge_graph *graph);
FORGE_API void forge_graph_destroy(forge_graph *graph); /* NULL is a no-op */

/* ------------------------------------------------------------ self-check */

/* Divergence of the checked calls from the CPU backend. */
typedef struct {
    uint64_t calls;     /* forward calls since self-check was enabled     */
    uint64_t checked;   /* of which recomputed on the CPU                 */
    double rel_l2;      /* largest relative L2 error of a checked call    */
    double max_abs;     /* largest absolute error of a checked call       */
    uint64_t nonfinite; /* NaN or Inf outputs, summed over checked calls  */
} forge_selfcheck;

/* Recomputes about `fraction` (0 to 1; 0 turns it off) of forward calls on the
 * CPU backend and records the divergence. It waits for each checked call. */
FORGE_API forge_status forge_layer_set_selfcheck(forge_layer *layer, double fraction);
FORGE_API forge_status forge_layer_get_selfcheck(const forge_layer *layer, forge_selfcheck *out);

/* ------------------------------------------------------------ profiling */

typedef enum {
    FORGE_STAGE_QKV = 0,   /* QKV projection GEMM and its bias          */
    FORGE_STAGE_ROPE_CACHE,/* split, RoPE on Q and K, KV cache write    */
    FORGE_STAGE_ATTENTION, /* QK^T, scale, mask, softmax, times V        */
    FORGE_STAGE_OUTPUT,    /* output projection GEMM and its bias        */
    FORGE_STAGE_COUNT
} forge_stage;

FORGE_API const char *forge_stage_name(forge_stage stage);

/* Per-stage timing of forward calls, off by default; off costs nothing. */
FORGE_API forge_status forge_layer_set_profiling(forge_layer *layer, int enabled);

/* Stage times in microseconds of the last forward call made with profiling on
 * (on CUDA, device time between events; this waits for that call). A CUDA
 * graph's launch is not timed: after one, there are none until the next
 * forward call. */
FORGE_API forge_status forge_layer_last_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]);

/* Forward calls that fell back to the CPU, by the stage that failed. */
FORGE_API forge_status forge_context_fallback_counts(const forge_context *ctx,
                                                     uint64_t counts[FORGE_STAGE_COUNT]);

/* ---------------------------------------------------------- safetensors */

#define FORGE_ST_MAX_DIMS 8

/* One tensor of a safetensors file. */
typedef struct {
    const char *name;
    forge_dtype dtype;
    int ndim;
    int64_t shape[FORGE_ST_MAX_DIMS];
    const void *data; /* nbytes bytes, little-endian, not necessarily aligned */
    size_t nbytes;
} forge_tensor;

/* An open safetensors file, mapped into memory read-only and checked: header
 * length, JSON, dtypes (F32, F16, BF16), shapes, and data offsets that must
 * tile the data section exactly (no overlap, no gap, none out of range). */
typedef struct forge_safetensors forge_safetensors;

FORGE_API forge_status forge_st_open(const char *path, forge_safetensors **out);
/* The same checks on a file image in memory (copied). */
FORGE_API forge_status forge_st_parse(const void *bytes, size_t len, forge_safetensors **out);
FORGE_API void forge_st_close(forge_safetensors *st); /* NULL is a no-op */

FORGE_API int forge_st_count(const forge_safetensors *st);
/* The i-th tensor, in file order; pointers stay valid until forge_st_close. */
FORGE_API forge_status forge_st_tensor(const forge_safetensors *st, int i, forge_tensor *out);
FORGE_API forge_status forge_st_find(const forge_safetensors *st, const char *name,
                                     forge_tensor *out);

/* The file's __metadata__ (string to string): count, and the i-th pair. */
FORGE_API int forge_st_metadata_count(const forge_safetensors *st);
FORGE_API forge_status forge_st_metadata(const forge_safetensors *st, int i, const char **key,
                                         const char **value);

/* Writes tensors (names unique) and optional metadata pairs
 * (meta[2i] = key, meta[2i+1] = value) to path. */
FORGE_API forge_status forge_st_write(const char *path, const forge_tensor *tensors, int n,
                                      const char *const *meta, int n_meta);

/* ------------------------------------------------------------ tokenizer */

/* A Hugging Face tokenizer, run as Hugging Face's `tokenizers` library runs
 * its tokenizer.json (Tokenizer.from_file(path).encode(text,
 * add_special_tokens)), which transformers' AutoTokenizer may not for every
 * tokenizer class: Forge follows the file. */
typedef struct forge_tokenizer forge_tokenizer;

/* path: a tokenizer.json file, or a model directory holding one. A
 * component the file names that Forge does not implement (a normalizer,
 * pre-tokenizer, model option, post-processor or decoder) is
 * FORGE_ERR_UNSUPPORTED, naming it; a file that is not a tokenizer is
 * FORGE_ERR_FORMAT. Implemented: BPE, byte-level (Llama 3, Qwen, GPT-2,
 * DeepSeek V3) and SentencePiece-style (byte_fallback, fuse_unk: Llama 2,
 * Gemma); normalizers NFC, NFKC, Lowercase, Prepend, Replace; pre-tokenizers
 * Split, ByteLevel, Metaspace, Digits, Punctuation; post-processors
 * ByteLevel, TemplateProcessing; decoders ByteLevel, Metaspace, Replace,
 * ByteFallback, Fuse, Strip; Sequence of each. A loaded tokenizer is read
 * only: threads may share it. */
FORGE_API forge_status forge_tokenizer_load(const char *path, forge_tokenizer **out);
FORGE_API void forge_tokenizer_free(forge_tokenizer *tok); /* NULL is a no-op */
/* Ids 0 .. size-1, added tokens included; 0 for NULL. */
FORGE_API int forge_tokenizer_vocab_size(const forge_tokenizer *tok);

/* The ids of len bytes of UTF-8 text (not NUL-terminated; text may be NULL
 * when len is 0), with the post-processor's special tokens (BOS ...) when
 * add_special is 1, as Hugging Face's add_special_tokens. *n_ids is the
 * count; when it is past cap the call is FORGE_ERR_CAPACITY and writes no
 * id (call with cap 0 to learn the count). Text that is not valid UTF-8
 * is FORGE_ERR_INVALID_ARGUMENT, naming the byte: Hugging Face takes only
 * strings, which are valid. */
FORGE_API forge_status forge_tokenizer_encode(const forge_tokenizer *tok, const char *text, size_t len,
                                              int add_special, int32_t *ids, size_t cap, size_t *n_ids);

/* The token of an id as the vocabulary spells it (for byte-level models in
 * ByteLevel's alphabet: " the" is "Ġthe"), NUL-terminated and valid until
 * forge_tokenizer_free; NULL for an id outside the vocabulary. And the id
 * of such a token, or -1. */
FORGE_API const char *forge_tokenizer_piece(const forge_tokenizer *tok, int32_t id);
FORGE_API int32_t forge_tokenizer_token_id(const forge_tokenizer *tok, const char *piece);

/* The ids a generation loop needs, from the files beside tokenizer.json:
 * tokenizer_config.json's bos_token and eos_token, and generation_config.json's
 * eos_token_id (one id or a list: generation stops at any). -1 and 0 where
 * a file or an entry is absent; eos_ids holds eos first when there is no
 * list. */
#define FORGE_MAX_EOS 8
typedef struct {
    int32_t bos, eos;
    int n_eos;
    int32_t eos_ids[FORGE_MAX_EOS];
} forge_special_ids;

FORGE_API forge_status forge_tokenizer_special_ids(const forge_tokenizer *tok, forge_special_ids *out);

/* The text of n ids, as Hugging Face's decode(ids, skip_special_tokens):
 * UTF-8 (a byte sequence that is not becomes U+FFFD, as there), NUL-
 * terminated, into text[cap]; *len is its bytes without the NUL, and when
 * len + 1 is past cap the call is FORGE_ERR_CAPACITY and writes nothing. An
 * id outside the vocabulary is FORGE_ERR_INVALID_ARGUMENT, naming it
 * (Hugging Face skips it). */
FORGE_API forge_status forge_tokenizer_decode(const forge_tokenizer *tok, const int32_t *ids, size_t n,
                                              int skip_special, char *text, size_t cap, size_t *len);

/* Decoding a generation loop's ids one at a time: each push gives the text
 * the id completes, "" while it ends inside a UTF-8 character or adds
 * nothing yet; the pushes' texts put together are the decode of all the
 * ids, never half a character, no text dropped or repeated. The text is
 * valid until the next push. */
typedef struct forge_token_stream forge_token_stream;
FORGE_API forge_status forge_token_stream_create(const forge_tokenizer *tok, int skip_special,
                                                 forge_token_stream **out);
FORGE_API forge_status forge_token_stream_push(forge_token_stream *stream, int32_t id, const char **text);
FORGE_API void forge_token_stream_free(forge_token_stream *stream); /* NULL is a no-op */

/* ---------------------------------------------------------------- model */

/* The architectures of config.json's "architectures" that Forge runs. */
typedef enum {
    FORGE_ARCH_LLAMA = 0, /* LlamaForCausalLM: Llama 2, 3, 3.1, 3.2, TinyLlama, SmolLM2 */
    FORGE_ARCH_QWEN2,     /* Qwen2ForCausalLM: biases on Q, K and V                    */
    FORGE_ARCH_QWEN3,     /* Qwen3ForCausalLM: RMSNorm over each head of Q and K       */
    FORGE_ARCH_MISTRAL,   /* MistralForCausalLM: a sliding window in every layer      */
} forge_arch;

/* A Hugging Face model directory's config.json, as Forge reads it. */
typedef struct {
    forge_arch arch;
    int vocab_size;
    int hidden, intermediate; /* hidden_size, intermediate_size (the MLP's width) */
    int layers;
    int heads, kv_heads, head_dim;
    int max_positions;        /* max_position_embeddings                         */
    float norm_eps;           /* rms_norm_eps                                    */
    float rope_theta;
    forge_rope_scaling rope_scaling;
    int tie_embeddings;       /* the LM head is the token embedding              */
    unsigned bias;            /* FORGE_BIAS_* of the attention's projections      */
    int qk_norm;
    int sliding_window;       /* the window of the layers that have one; 0: none */
    int max_window_layers;    /* layers from this one on have it (Qwen's
                                 max_window_layers); 0: every layer (Mistral)    */
    forge_dtype dtype;        /* the weights' dtype as config.json names it      */
} forge_model_config;

/* Reads dir/config.json. A field that changes the math and that Forge does
 * not implement (another architecture, hidden_act, rope_scaling type, an MLP
 * bias ...) is FORGE_ERR_UNSUPPORTED, naming it; a missing or malformed
 * field is FORGE_ERR_FORMAT, naming it. */
FORGE_API forge_status forge_model_config_read(const char *dir, forge_model_config *out);

typedef struct forge_model forge_model;

typedef struct {
    forge_dtype dtype;   /* weights and activations; the CPU backend runs FORGE_F32  */
    int max_seqs;        /* sequences alive at once                                 */
    int max_tokens;      /* the KV cache: tokens held by all sequences together     */
    int max_seq_len;     /* tokens one sequence may hold; 0: max_positions, or
                            max_tokens when that is smaller                         */
    int page_size;       /* the cache's page, 16 to 256 tokens; 0: 16               */
    int tensor_parallel; /* ranks the model is split over, Megatron's way (heads,
                            MLP columns, LM head rows): the context's device and
                            the next ones, a thread each, summing through the
                            backend's collectives (1: one rank through them, a
                            check of NCCL on one GPU); 0: whole, not split      */
} forge_model_options;

/* Loads a model directory: config.json, then model.safetensors or the
 * shards model.safetensors.index.json names (mapped, each tensor checked for
 * its shape and converted to opt->dtype where the file's differs). The
 * context's backend computes: the CPU in fp32, CUDA in any dtype at the
 * head dims its layer takes. Split over opt->tensor_parallel ranks, each
 * rank takes heads / ranks query heads (the count must divide heads, and
 * divide or be a multiple of kv_heads) and intermediate / ranks of the
 * MLP's columns (it must divide intermediate): a split that does not fit
 * is FORGE_ERR_UNSUPPORTED naming the count. On CUDA rank r runs on the
 * device r places after the context's (NCCL, loaded at run time: libnccl.so.2,
 * or the file FORGE_NCCL names); the CPU backend runs its ranks as threads
 * that sum between them, for tests of the split. */
FORGE_API forge_status forge_model_load(forge_context *ctx, const char *dir, const forge_model_options *opt,
                                        forge_model **out);
/* A model of config cfg whose weights are drawn from seed (norms 1, the
 * rest uniform with standard deviation 0.02; a block of a million values
 * drawn a tensor, repeated through it), nothing read from files: for
 * benchmarks of a model's shape. cfg's numbers are checked as config.json's
 * are. */
FORGE_API forge_status forge_model_load_random(forge_context *ctx, const forge_model_config *cfg,
                                               const forge_model_options *opt, uint64_t seed, forge_model **out);
/* The config of a well-known model by name ("llama3-8b", "llama3.2-1b",
 * "qwen3-8b", ...), as its config.json has it; an unknown name is
 * FORGE_ERR_NOT_FOUND, listing the known ones. forge_model_shape_name(i)
 * is the i-th name, NULL past the last. */
FORGE_API forge_status forge_model_shape(const char *name, forge_model_config *out);
FORGE_API const char *forge_model_shape_name(int i);
FORGE_API void forge_model_free(forge_model *model); /* NULL is a no-op */
FORGE_API forge_model_config forge_model_get_config(const forge_model *model);

/* Sequences of the model's cache: a new empty one (*seq its id), its end
 * (its pages back to the pool), and the tokens it holds. */
FORGE_API forge_status forge_model_seq_new(forge_model *model, int *seq);
FORGE_API forge_status forge_model_seq_release(forge_model *model, int seq);
FORGE_API forge_status forge_model_seq_len(const forge_model *model, int seq, int *len);

/* One sequence's tokens in a step: appended to it, at its length on. */
typedef struct {
    int seq;
    int n_tokens;          /* >= 1: a prompt, a chunk of one, or one decode token */
    const int32_t *tokens; /* [n_tokens], ids below vocab_size                    */
} forge_model_input;

/* One forward step of a batch of distinct sequences (prompts and decode
 * steps mixed): their tokens go through the model and into the cache, and
 * logits [n, vocab_size] (host float32) receive the next-token logits of
 * each sequence's last token; with all_logits, [sum of n_tokens, vocab_size]
 * for every token, in order. A token past the sequence's room or running
 * out of pages is FORGE_ERR_CAPACITY, and a bad id FORGE_ERR_INVALID_ARGUMENT;
 * either leaves every sequence as it was. */
FORGE_API forge_status forge_model_step(forge_model *model, const forge_model_input *in, int n, int all_logits,
                                        float *logits);

/* As forge_model_step without all_logits, but each sequence's greedy next
 * token into next[n] (the first largest of its logits, chosen on the
 * device): no logits leave the backend. */
FORGE_API forge_status forge_model_step_greedy(forge_model *model, const forge_model_input *in, int n,
                                               int32_t *next);

/* How the next token is drawn from logits, as transformers' generate does:
 * the repetition penalty over the tokens so far, then temperature, top-k,
 * top-p and min-p, then a draw from what is left. temperature 0 is greedy
 * (the first largest logit). */
typedef struct {
    float temperature;    /* 0: greedy                                  */
    int top_k;            /* 0: off                                     */
    float top_p;          /* 1: off                                     */
    float min_p;          /* 0: off                                     */
    float repeat_penalty; /* 1: off; > 1 makes seen tokens less likely  */
    uint64_t seed;        /* the same seed draws the same tokens        */
} forge_sampling;

/* Greedy: temperature 0, the rest off. */
FORGE_API forge_sampling forge_sampling_greedy(void);

/* The sampling a model directory's generation_config.json asks for, as
 * transformers' generate reads it: greedy unless do_sample is true; then its
 * temperature (1), top_k (50), top_p (1), min_p (off) and
 * repetition_penalty (1), transformers' defaults where absent. Greedy when
 * the file is absent. */
FORGE_API forge_status forge_sampling_read(const char *dir, forge_sampling *out);

/* As forge_model_step_greedy, but each sequence's next token drawn as
 * sampling[i] says (a setting for each input): the repetition penalty over
 * every token the sequence has taken in (its prompt and what it generated,
 * through any step call), then the warpers and a draw seeded by
 * sampling[i].seed and the sequence's length, so that a sequence draws the
 * same tokens whatever else shares its steps. A bad setting is
 * FORGE_ERR_INVALID_ARGUMENT before anything runs. A batch that is all
 * greedy without a penalty is chosen on the device; otherwise the logits
 * of the n rows come to the host and are drawn from there. */
FORGE_API forge_status forge_model_step_sample(forge_model *model, const forge_model_input *in, int n,
                                               const forge_sampling *sampling, int32_t *next);

/* Called with each generated token; a non-zero return stops generation. */
typedef int (*forge_token_fn)(void *user, int32_t token);

/* Generates up to max_new tokens after the prompt in a sequence of its own
 * (released at the end), stopping after a token of stop[n_stop]; out (may
 * be NULL) receives the generated ids, *n_out their count. */
FORGE_API forge_status forge_model_generate(forge_model *model, const int32_t *prompt, int n_prompt, int max_new,
                                            const forge_sampling *sampling, const int32_t *stop, int n_stop,
                                            forge_token_fn on_token, void *user, int32_t *out, int *n_out);

/* -------------------------------------------------------------- support */

/* What runs where: which kernel computes an operation, on which GPUs, for
 * which dtypes and head dims. The README's support table is this table as
 * `forge support` prints it, and a test keeps the two the same; the kernels'
 * own lists of head dims are tested against it. */
typedef struct {
    const char *operation; /* "attention alone, 16-bit layers", "paged attention", ...    */
    forge_backend backend;
    int min_sm;            /* CUDA: the compute capability it needs x 10 (80: sm_80);
                              90 rows run on 9.0 alone, in builds for sm_90         */
    unsigned dtypes;       /* bit 1 << d for each forge_dtype d                       */
    int n_head_dims;       /* head dims it takes, in head_dims; 0: any up to 256      */
    int head_dims[8];
    const char *kernel;    /* what runs: "Hopper wgmma", "portable mma.sync", ...     */
    unsigned options;      /* the FORGE_ATTN_* options of the scores it takes         */
} forge_support;

/* Options of the attention's scores, beyond the causal mask. */
enum {
    FORGE_ATTN_WINDOW = 1 << 0,  /* a sliding window (window > 0)  */
    FORGE_ATTN_SOFTCAP = 1 << 1, /* soft-capping (softcap > 0)     */
};

FORGE_API int forge_support_count(void);
/* Row i (0 <= i < forge_support_count()), or NULL. */
FORGE_API const forge_support *forge_support_row(int i);

#ifdef __cplusplus
}
#endif

#endif /* FORGE_H */
