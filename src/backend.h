/* SPDX-License-Identifier: Apache-2.0 */
/* backend.h: the interface every backend implements, and the handles' layout.
 *
 * The generic code (context.c, layer.c, kv_cache.c, graph.c) checks every
 * argument and keeps the bookkeeping (slot lengths, timings, fallbacks, self-
 * checks); a backend only allocates, copies and computes, and is called with
 * arguments already known to be valid. */
#ifndef FORGE_BACKEND_H
#define FORGE_BACKEND_H

#include <stdarg.h>

#include "forge.h"

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

struct forge_kv_cache {
    forge_context *ctx;
    int slots, kv_heads, head_dim, max_seq;
    forge_dtype dtype;
    int *len;              /* [slots] positions held by each slot          */
    forge_kv_cache *cpu;   /* CPU twin, made on the first fallback or check */
    void *impl;            /* the backend's K and V storage                */
};

/* Bookkeeping of a paged cache, kept on the host by paged_cache.c; the
 * backend holds the pool (and a mirror of the tables where it needs one). */
struct forge_paged_cache {
    forge_context *ctx;
    forge_paged_config cfg;
    int max_pages;   /* page-table entries of one sequence                  */
    int *table;      /* [max_seqs, max_pages]: page ids, in token order     */
    int *len;        /* [max_seqs]: tokens held; -1 where the id is free    */
    int *refs;       /* [n_pages]: sequences holding each page; 0 is free   */
    int *free_pages; /* [n_pages]: a stack of the free page ids             */
    int n_free;
    void *impl;      /* the backend's pool                                  */
};

/* Bytes of one token's K (or V) in a paged cache: kv_heads * head_dim
 * elements, one row of a page. */
static inline size_t forge_paged_row_bytes(const forge_paged_config *c) {
    return (size_t)c->kv_heads * (size_t)c->head_dim * forge_dtype_size(c->dtype);
}

/* How a call grew one sequence of a paged cache (paged_cache.c), kept to
 * undo it. */
typedef struct {
    int cow_old;   /* the shared partial page replaced by a copy, or -1 */
    int first_new; /* table index of the first page allocated */
    int n_new;     /* pages allocated, copy included */
} forge_page_growth;

/* Checks that live, distinct sequences seqs[i] can take n_tokens[i] >= 0
 * more tokens: max_seq_len and the free pages. */
forge_status forge_paged_check_growth(const forge_paged_cache *cache, int n, const int *seqs,
                                      const int *n_tokens, const char *fn);
/* Gives them (checked) the pages for those tokens: new pages, the shared
 * partial page copied, the backend's tables mirrored; lengths unchanged.
 * On failure it is undone. */
forge_status forge_paged_grow(forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                              forge_page_growth *g);
void forge_paged_ungrow(forge_paged_cache *cache, int n, const int *seqs, const forge_page_growth *g);

/* One forge_layer_forward_paged call, in the arrays both backends take
 * (layer_paged.c makes it): sequence i of the batch is id ids[i], owns rows
 * rows[i] .. rows[i+1]-1 of x and y, and takes n_tokens[i] tokens at
 * positions pos0[i] .., holding lens[i] = pos0[i] + n_tokens[i] after. */
typedef struct {
    const forge_seq *seqs;
    int n, total;
    int *ids, *pos0, *n_tokens, *lens;
    int *rows;                         /* [n + 1] */
    forge_paged_attention_args attn;   /* the step's attention: the layer's
                                          heads, scale and split size */
    const int *pos_dev;                /* NULL, or backend memory [n] that holds
                                          pos0 when the step runs: a graph's,
                                          replayed at new positions */
} forge_paged_step;

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
    /* Allocates cache->impl for slots x kv_heads x max_seq x head_dim, K and V. */
    forge_status (*cache_init)(forge_kv_cache *cache);
    void (*cache_free)(forge_kv_cache *cache);
    /* Copies positions [0, len) of a slot to or from host buffers laid out
     * [kv_heads, len, head_dim] (either may be NULL). */
    forge_status (*cache_read)(const forge_kv_cache *cache, int slot, int len, void *k, void *v);
    forge_status (*cache_write)(forge_kv_cache *cache, int slot, int len, const void *k,
                                const void *v);

    /* Makes room for a call of total tokens (outside any graph capture). */
    forge_status (*reserve)(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                            int n_seqs, int total);
    /* Computes y. On failure *failed is the stage at fault. With profiling on,
     * records stage times (read back by timings). */
    forge_status (*forward)(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                            int n_seqs, int total, const void *x, void *y, forge_stage *failed);
    /* Stage times of the last profiled call, in microseconds; may be NULL
     * when forward fills layer->stage_us itself. */
    forge_status (*timings)(forge_layer *layer, double us[FORGE_STAGE_COUNT]);

    /* forge_attention_forward on arguments known to be valid; *total_q and
     * *total_kv rows. */
    forge_status (*attention)(forge_context *ctx, const forge_attention_args *a, int total_q,
                              int total_kv);

    /* Paged caches (paged_cache.c checks and keeps the tables; NULL where
     * the backend has none). paged_init allocates cache->impl: K and V of
     * n_pages pages, each [page_size, kv_heads, head_dim] in the dtype. */
    forge_status (*paged_init)(forge_paged_cache *cache);
    void (*paged_free)(forge_paged_cache *cache);
    /* Entries [first, first + count) of seq's host table changed: mirror
     * them; NULL where the backend reads the host tables. */
    forge_status (*paged_set_table)(forge_paged_cache *cache, int seq, int first, int count);
    /* Token rows [0, tokens) of page src to page dst: copy on write. */
    forge_status (*paged_copy_page)(forge_paged_cache *cache, int dst, int src, int tokens);
    /* For i < n: n_tokens[i] rows of k and v (from row row0[i]) to sequence
     * seqs[i] at positions pos0[i] ..; its table holds the pages. */
    forge_status (*paged_write)(forge_paged_cache *cache, int n, const int *seqs, const int *pos0,
                                const int *n_tokens, const int *row0, const void *k, const void *v);
    /* Positions [0, len) of seq to host buffers [len, kv_heads, head_dim]. */
    forge_status (*paged_read)(const forge_paged_cache *cache, int seq, int len, void *k, void *v);
    /* forge_paged_attention on arguments known to be valid (scale resolved),
     * sequence seqs[b] holding lens[b] tokens: the cache's lengths, or a
     * layer call's lengths once its tokens are in. */
    forge_status (*paged_attention)(forge_paged_cache *cache, const forge_paged_attention_args *a,
                                    const int *lens, int total_q);
    /* The split size it chooses for valid arguments with split_size 0; NULL
     * where it reads each sequence whole. */
    int (*paged_split_size)(const forge_paged_cache *cache, const forge_paged_attention_args *a,
                            const int *lens);
    /* The layer over a paged cache: makes room for a step (outside any
     * graph capture; may be NULL), then computes it as forward does, on
     * valid arguments whose pages are in place and lengths not advanced. */
    forge_status (*reserve_paged)(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step);
    forge_status (*forward_paged)(forge_layer *layer, forge_paged_cache *cache, const forge_paged_step *step,
                                  const void *x, void *y, forge_stage *failed);

    /* Graphs; NULL where a graph is a recorded plain call (graph.c). */
    forge_status (*graph_capture)(forge_graph *graph);
    forge_status (*graph_launch)(forge_graph *graph);
    void (*graph_free)(forge_graph *graph);
};

struct forge_graph {
    forge_layer *layer;
    forge_kv_cache *cache;
    forge_paged_cache *paged; /* a recorded forge_layer_forward_paged (cache NULL) */
    forge_seq *seqs;
    int n_seqs, total;
    const void *x;
    void *y;
    void *impl;
};

extern const forge_backend_ops forge_cpu_backend;

/* ------------------------------------------ backends loaded at run time */

/* The CUDA backend is a module of its own (libforge-llm-cuda.so, with the
 * CUDA libraries it links), loaded when a context first asks for it, so
 * that one build of Forge runs where CUDA is absent. The core exports only
 * the public API, so the module is lent the core functions it calls. */
typedef struct {
    const char *build_id; /* FORGE_BUILD_ID: a module of another build is refused */
    forge_status (*vfail)(forge_status status, const char *fmt, va_list ap);
    forge_status (*paged_step_make)(forge_paged_step *step, const forge_layer *layer, const forge_seq *seqs,
                                    int n_seqs);
    void (*paged_step_free)(forge_paged_step *step);
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

/* The CUDA backend's module, loaded once (cuda_load.c), or an error that
 * says why it cannot be had: not built, not found, its CUDA libraries
 * missing (the message begins with fn). */
forge_status forge_cuda_module_get(const char *fn, const forge_module **out);

/* In the module (src/cuda): its ops and its device check. */
extern const forge_backend_ops forge_cuda_backend;
forge_status forge_cuda_available(const char *fn);

/* The monotonic wall clock in microseconds (context.c). */
double forge_now_us(void);

/* The checks of seqs[i] that every layer call makes (layer.c): n_tokens,
 * pos0, its last position against max_pos (named max_name in the message)
 * and the batch's tokens so far (*tokens, advanced). */
forge_status forge_check_seq(const char *fn, const forge_seq *seqs, int i, int max_pos, const char *max_name,
                             int64_t *tokens);
/* No slot (slots below n_slots) twice among seqs; `what` names the slots. */
forge_status forge_check_distinct(const char *fn, const forge_seq *seqs, int n_seqs, int n_slots, const char *what);
/* Checks a forward call's arguments (layer.c); *total = the batch's tokens. */
forge_status forge_check_forward(const char *fn, forge_layer *layer, forge_kv_cache *cache,
                                 const forge_seq *seqs, int n_seqs, const void *x, const void *y,
                                 int *total);

/* Fills a step for a checked batch (layer_paged.c); q, out unset. */
forge_status forge_paged_step_make(forge_paged_step *step, const forge_layer *layer, const forge_seq *seqs,
                                   int n_seqs);
void forge_paged_step_free(forge_paged_step *step);

/* Runs a checked paged forward call (seqs at their lengths): finds pages
 * for the new tokens, runs it (graph: by replaying that graph, recorded
 * for it), advances the lengths; undoes the pages on failure. */
forge_status forge_run_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                     int n_seqs, const void *x, void *y, forge_graph *graph);
/* Checks a paged forward call's arguments; at_length: each pos0 must be
 * its sequence's length now. *total = the batch's tokens. */
forge_status forge_check_forward_paged(const char *fn, forge_layer *layer, forge_paged_cache *cache,
                                       const forge_seq *seqs, int n_seqs, const void *x, const void *y,
                                       int at_length, int *total);

/* Runs a checked forward call: reserve, compute, fall back to the CPU if the
 * policy says so, update the slots, self-check (layer.c). */
forge_status forge_run_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                               int n_seqs, int total, const void *x, void *y);
/* The bookkeeping after a call: slot lengths, and whether it was timed
 * (a graph's launch is not). */
void forge_commit_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                          int n_seqs, int timed);

/* Recomputes a call of a non-CPU layer on its CPU twin (cpu_twin.c): copies x
 * and the cached prefix [0, pos0) of each slot in, and runs the twin into
 * y_host [total, hidden] (host memory, in the layer's dtype). */
forge_status forge_cpu_recompute(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                 int n_seqs, int total, const void *x, void *y_host);
/* Copies y_host out to y and the twin's slots [0, pos0 + n_tokens) into the
 * backend's cache: the call's results, as if the backend had made them. */
forge_status forge_cpu_copy_out(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                int n_seqs, int total, const void *y_host, void *y);

#endif
