/* SPDX-License-Identifier: Apache-2.0 */
/* backend.h: the interface every backend implements, and the handles it
 * works on.
 *
 * The core (core.h) checks every argument and keeps the bookkeeping (page
 * tables, lengths, timings, fallbacks, self-checks); a backend only
 * allocates, copies and computes, on arguments already known to be valid,
 * and calls nothing of the core: only the leaf utilities (error.h,
 * dtype.h, support.h, clock.h). */
#ifndef FORGE_BACKEND_H
#define FORGE_BACKEND_H

#include <stdarg.h>

#include "forge.h"
#include "sample_front.h"

typedef struct forge_backend_ops forge_backend_ops;

/* Every matrix dimension and leading dimension must fit a BLAS int; so does
 * a call's token count. */
#define FORGE_MAX_DIM (1 << 24)

struct forge_context {
    const forge_backend_ops *ops;
    void *impl;                               /* the backend's handles, stream     */
    forge_fallback fallback;
    uint64_t fallback_counts[FORGE_STAGE_COUNT];
    int fallback_logged;                      /* the backend error was printed     */
    int fail_stage;                           /* test hook: stage to fail, or -1   */
    forge_kernel kernel;                      /* flash kernel choice (CUDA)        */
    forge_context *cpu;                       /* CPU twin for fallback and checks  */
    double stopwatch_start_us;                /* wall clock, where the backend has no stopwatch */
};

struct forge_layer {
    forge_context *ctx;
    forge_layer_config cfg;
    forge_attention attention;
    int paged_split;                    /* split size of paged calls, 0: chosen   */
    int profiling;                      /* time the stages of forward calls       */
    int has_timings;                    /* a profiled call has run                */
    double stage_us[FORGE_STAGE_COUNT]; /* CPU: of the last profiled call         */
    double selfcheck_fraction, selfcheck_credit;
    forge_selfcheck selfcheck;
    forge_layer *cpu;                   /* CPU twin (non-CPU backends)            */
    void *impl;                         /* the backend's weights, workspace       */
};

/* The KV cache: K and V of n_pages pages, each [page_size, kv_heads,
 * head_dim] in the dtype, in one pool that the backend holds; token p of
 * sequence s is row p % page_size of page table[s][p / page_size]. The
 * bookkeeping is kept on the host by paged_cache.c. A pinned cache
 * (forge_kv_cache's slots) gives each sequence its pages for life, in
 * order, so that each sequence's rows lie one after another. */
struct forge_paged_cache {
    forge_context *ctx;
    forge_paged_config cfg;
    int max_pages;   /* page-table entries of one sequence                  */
    int pinned;      /* every sequence live, holding its max_pages pages    */
    int *table;      /* [max_seqs, max_pages]: page ids, in token order     */
    int *len;        /* [max_seqs]: tokens held; -1 where the id is free    */
    int *refs;       /* [n_pages]: sequences holding each page; 0 is free   */
    int *free_pages; /* [n_pages]: a stack of the free page ids             */
    int n_free;
    void *impl;      /* the backend's pool                                  */
};

/* Bytes of one token's K (or V): kv_heads * head_dim elements, one row of a
 * page. */
static inline size_t forge_paged_row_bytes(const forge_paged_config *c) {
    return (size_t)c->kv_heads * (size_t)c->head_dim * forge_dtype_size(c->dtype);
}

/* One forward call's batch, in the arrays every backend takes (the core
 * makes it): sequence i is id ids[i] of the cache (a row of its page
 * tables), owns rows rows[i] .. rows[i+1]-1 of x and y, and takes
 * n_tokens[i] tokens at positions pos0[i] ..; its queries see lens[i]
 * keys: pos0[i] + n_tokens[i] with a cache, its own n_tokens[i] without. */
typedef struct {
    const char *fn;                    /* the public call, for messages */
    int n, total;
    int *ids, *pos0, *n_tokens, *lens;
    int *rows;                         /* [n + 1] */
    forge_paged_attention_args attn;   /* the call's attention over the cache:
                                          the layer's heads, scale, split size,
                                          window and soft cap */
    const int *pos_dev;                /* NULL, or backend memory [n] that holds
                                          pos0 when the call runs: a graph's,
                                          replayed at new positions */
} forge_batch;

struct forge_graph {
    forge_layer *layer;
    forge_paged_cache *cache;  /* NULL: a call without a cache                  */
    forge_kv_cache *slots;     /* the slot cache it was recorded on, or NULL    */
    forge_seq *seqs;
    int n_seqs, total;
    const void *x;
    void *y;
    void *impl;
};

struct forge_backend_ops {
    forge_backend kind;
    forge_status (*context_init)(forge_context *ctx); /* may be NULL */
    void (*context_free)(forge_context *ctx);          /* may be NULL */
    forge_status (*set_stream)(forge_context *ctx, void *stream);
    forge_status (*synchronize)(forge_context *ctx);
    /* A stopwatch on the stream; NULL: the wall clock (context.c). */
    forge_status (*stopwatch_start)(forge_context *ctx);
    forge_status (*stopwatch_stop)(forge_context *ctx, double *us);
    forge_status (*buffer_alloc)(forge_context *ctx, size_t bytes, void **out);
    void (*buffer_free)(forge_context *ctx, void *p);
    /* host <-> backend copies; to_host 1: dst is host memory */
    forge_status (*buffer_copy)(forge_context *ctx, void *dst, const void *src, size_t bytes,
                                int to_host);

    /* Copies the weights into layer->impl. */
    forge_status (*layer_init)(forge_layer *layer, const forge_layer_weights *w);
    void (*layer_free)(forge_layer *layer);

    /* The KV cache's pool: cache_init allocates cache->impl (fn: the public
     * call, for messages). */
    forge_status (*cache_init)(forge_paged_cache *cache, const char *fn);
    void (*cache_free)(forge_paged_cache *cache);
    /* The cache's operations below name the public call fn in messages. */
    /* Entries [at, at + count) of the host tables (flat, [max_seqs,
     * max_pages]) changed: mirror them; NULL where the backend reads the
     * host tables. */
    forge_status (*cache_set_table)(forge_paged_cache *cache, size_t at, int count, const char *fn);
    /* Token rows [0, tokens) of page src to page dst: copy on write. */
    forge_status (*cache_copy_page)(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn);
    /* For i < n: n_tokens[i] rows of k and v (backend memory, from row
     * row0[i]) to sequence seqs[i] at positions pos0[i] ..; its table holds
     * the pages. */
    forge_status (*cache_append)(forge_paged_cache *cache, int n, const int *seqs, const int *pos0,
                                 const int *n_tokens, const int *row0, const void *k, const void *v, const char *fn);
    /* Positions [0, len) of seq to host buffers [len, kv_heads, head_dim]
     * (either may be NULL); and count rows of host buffers to positions
     * first .. of seq. */
    forge_status (*cache_read)(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn);
    forge_status (*cache_upload)(forge_paged_cache *cache, int seq, int first, int count, const void *k,
                                 const void *v, const char *fn);

    /* forge_attention_forward on arguments known to be valid; *total_q and
     * *total_kv rows. */
    forge_status (*attention)(forge_context *ctx, const forge_attention_args *a, int total_q,
                              int total_kv);
    /* forge_paged_attention on valid arguments (scale resolved), sequence
     * seqs[b] holding lens[b] tokens; the layer's attention too, whose
     * pos_dev may be a graph's (forge_batch), read when the call runs (its
     * sequences then hold pos_dev[b] + their query rows). fn names the
     * public call in messages. */
    forge_status (*paged_attention)(forge_paged_cache *cache, const forge_paged_attention_args *a,
                                    const int *lens, int total_q, const int *pos_dev, const char *fn);
    /* The split size it chooses for valid arguments with split_size 0; NULL
     * where it reads each sequence whole. */
    int (*paged_split_size)(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                            const int *lens);

    /* The layer: makes room for a call (outside any graph capture; may be
     * NULL), then computes it: projections, RoPE, K and V of the new tokens
     * into the cache (cache NULL: the call's scratch), attention, output.
     * The pages of the new tokens are in place and the lengths not yet
     * advanced. On failure *failed is the stage at fault. With profiling
     * on, records stage times (read back by timings). */
    forge_status (*reserve)(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b);
    forge_status (*forward)(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b,
                            const void *x, void *y, forge_stage *failed);
    /* Stage times of the last profiled call, in microseconds; may be NULL
     * when forward fills layer->stage_us itself. */
    forge_status (*timings)(forge_layer *layer, double us[FORGE_STAGE_COUNT]);

    /* Graphs; NULL where a graph is a recorded plain call (graph.c).
     * Capture records the graph's call, whose batch is b; launch replays
     * it at graph->seqs' positions, b being the call's batch there (for a
     * capture anew, where a buffer it recorded has moved). */
    forge_status (*graph_capture)(forge_graph *graph, const forge_batch *b);
    forge_status (*graph_launch)(forge_graph *graph, const forge_batch *b);
    void (*graph_free)(forge_graph *graph);

    /* Recordings of any work (a model's whole step, src/model); NULL where
     * the backend records nothing. What is queued on the context between
     * record_begin and record_end becomes *rec, made anew or updated in
     * place (rec NULL: the recording is dropped, after a failure); replay
     * runs it. A layer call recorded so, its batch's pos_dev set, serves
     * while call_stamp gives the stamp it gave then (the buffers the call
     * reads have not moved) and its sequences hold at most the *reach it
     * gave then. */
    forge_status (*record_begin)(forge_context *ctx, const char *fn);
    forge_status (*record_end)(forge_context *ctx, void **rec, const char *fn);
    forge_status (*replay)(forge_context *ctx, void *rec, const char *fn);
    void (*record_free)(void *rec);
    uint64_t (*call_stamp)(const forge_layer *layer, const forge_paged_cache *cache, const forge_batch *b,
                           int *reach);

    /* The model around the layers (src/model), on rows in backend memory of
     * dtype; NULL where the backend runs no models. rmsnorm: x += res
     * (rounded to dtype; res may be NULL), then out = the rows of x [rows,
     * dim] normalised by w; linear: y [rows, out] = x [rows, in] W^T with W
     * [out, in]; silu_mul: out [rows, inter] = silu(gate) * up of gate_up
     * [rows, 2 * inter]; gather_rows: out's rows the table's rows ids[i]
     * (ids in backend memory); argmax_rows: out[r] (backend memory) the
     * first largest element of row r of x [rows, cols]. */
    forge_status (*rmsnorm)(forge_context *ctx, forge_dtype dtype, void *out, void *x, const void *res, const void *w,
                            long rows, int dim, float eps);
    forge_status (*linear)(forge_context *ctx, forge_dtype dtype, void *y, const void *x, const void *w, long rows,
                           int in, int out);
    forge_status (*silu_mul)(forge_context *ctx, forge_dtype dtype, void *out, const void *gate_up, long rows,
                             int inter);
    forge_status (*gather_rows)(forge_context *ctx, void *out, const void *table, const int32_t *ids, long rows,
                                size_t row_bytes);
    forge_status (*argmax_rows)(forge_context *ctx, forge_dtype dtype, int32_t *out, const void *x, long rows,
                                int cols);
    /* The candidates of each row's draw over logits [rows, vocab], so that
     * only they leave the device (NULL: the logits come to the host). As
     * settings[r] says: the repetition penalty over the ids whose bit is
     * set in seen's row r ([rows][(vocab + 31) / 32] words, or NULL for
     * none); with temperature 0 the first largest as the one candidate;
     * else the scores divided by the temperature and, as candidates, a
     * start of their order (by score, then id) with every tie of its last:
     * with top-k at least its k tokens, else tokens min-p keeps holding
     * about top-p's share of the mass (all of them without top-p). Row r of
     * out is its head, then up to cap candidates in no order
     * (sample_front.h). settings, seen and out are backend memory. */
    forge_status (*sample_front)(forge_context *ctx, forge_dtype dtype, void *out, const void *logits,
                                 const forge_sample_row *settings, const uint32_t *seen, long rows, int vocab,
                                 int cap);

    /* Tensor parallelism (src/model/model_ranks.c): a model split over
     * ranks, each a context of the backend driven by a thread of its own.
     * NULL where the backend splits no model.
     * use_device: the calling thread works on the device `offset` places
     * after ctx's from now on; FORGE_ERR_UNSUPPORTED naming the count where
     * there are not that many. NULL where every rank shares one (the host).
     * comm_create: a communicator for each of the n contexts (rank r's is
     * ctxs[r]), into comms[n]; called on one thread. comm_abort (from any
     * thread, once a communicator) makes that rank's collectives, queued or
     * running, return instead of waiting for a rank that failed; after it
     * the communicator only goes to comm_free. all_reduce: buf [count] of dtype, summed over the ranks,
     * on every rank, in place. all_gather: out [ranks, count] the ranks'
     * in [count], in rank order, on every rank. Both are queued on ctx's
     * stream (recorded with it) and every rank must make the same calls.
     * copy_2d: height rows of width bytes, src_pitch bytes apart, to dst,
     * dst_pitch apart (backend memory, queued). */
    forge_status (*use_device)(const forge_context *ctx, int offset, const char *fn);
    forge_status (*comm_create)(forge_context **ctxs, int n, void **comms, const char *fn);
    void (*comm_abort)(void *comm);
    void (*comm_free)(void *comm);
    forge_status (*all_reduce)(forge_context *ctx, void *comm, forge_dtype dtype, void *buf, size_t count);
    forge_status (*all_gather)(forge_context *ctx, void *comm, forge_dtype dtype, void *out, const void *in,
                               size_t count);
    forge_status (*copy_2d)(forge_context *ctx, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                            size_t width, size_t height);
};

extern const forge_backend_ops forge_cpu_backend;

/* ------------------------------------------ backends loaded at run time */

/* The CUDA backend is a module of its own (libforge-llm-cuda.so, with the
 * CUDA libraries it links), loaded when a context first asks for it, so
 * that one build of Forge runs where CUDA is absent. The core exports only
 * the public API, so the module is lent the one leaf function it cannot
 * have a copy of: the per-thread message of forge_last_error. */
typedef struct {
    const char *build_id; /* FORGE_BUILD_ID: a module of another build is refused */
    forge_status (*vfail)(forge_status status, const char *fmt, va_list ap);
} forge_module_host;

typedef struct {
    const forge_backend_ops *ops;
    /* FORGE_OK when a device can be used, else why not (the message begins
     * with fn) */
    forge_status (*available)(const char *fn);
} forge_module;

/* The one symbol a module exports: its backend, or NULL when the host is
 * of another build. */
#define FORGE_CUDA_MODULE_ENTRY "forge_cuda_module"
typedef const forge_module *(*forge_module_entry)(const forge_module_host *host);

/* In the module (src/cuda): its ops and its device check. */
extern const forge_backend_ops forge_cuda_backend;
forge_status forge_cuda_available(const char *fn);

#endif
