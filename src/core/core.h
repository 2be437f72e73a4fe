/* SPDX-License-Identifier: Apache-2.0 */
/* core.h: what the core's files share, above the backend interface. No
 * backend includes this. */
#ifndef FORGE_CORE_H
#define FORGE_CORE_H

#include "backend.h"

/* The slot cache of forge.h: a face over a pinned paged cache whose slots
 * are its sequences, each holding one page of max_seq tokens (kv_cache.c). */
struct forge_kv_cache {
    forge_paged_cache *pages;
};

/* The CUDA backend's module, loaded once (cuda_load.c), or an error that
 * says why it cannot be had: not built, not found, its CUDA libraries
 * missing (the message begins with fn). */
forge_status forge_cuda_module_get(const char *fn, const forge_module **out);

/* ------------------------------------------------------ the paged cache */

/* Makes a cache of a checked config (forge_paged_cache_create) or, pinned,
 * of any page size, every sequence live from the start (forge_kv_cache). */
forge_status forge_paged_make(forge_context *ctx, const forge_paged_config *cfg, int pinned, const char *fn,
                              forge_paged_cache **out);

/* FORGE_OK when seq is a live sequence of the cache (not NULL), else an
 * error naming fn. */
forge_status forge_paged_check_live(const forge_paged_cache *cache, int seq, const char *fn);

/* How a call grew one sequence (forge_paged_grow), kept to undo it. */
typedef struct {
    int cow_old;   /* the shared partial page replaced by a copy, or -1 */
    int first_new; /* table index of the first page allocated */
    int n_new;     /* pages allocated, copy included */
} forge_page_growth;

/* Checks that live, distinct sequences seqs[i] can take n_tokens[i] >= 0
 * more tokens: max_seq_len and the free pages. */
forge_status forge_paged_check_room(const forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                                    const char *fn);
/* Gives them (room checked) the pages for those tokens: new pages, the
 * shared partial page copied, the backend's tables mirrored; lengths
 * unchanged. On failure it is undone. Nothing to do in a pinned cache. */
forge_status forge_paged_grow(forge_paged_cache *cache, int n, const int *seqs, const int *n_tokens,
                              forge_page_growth *g, const char *fn);
void forge_paged_ungrow(forge_paged_cache *cache, int n, const int *seqs, const forge_page_growth *g, const char *fn);

/* ----------------------------------------------------- checks of a call */

/* seqs[i]'s n_tokens, pos0, its last position against max_pos (named
 * max_name in the message) and the batch's tokens so far (*tokens,
 * advanced). */
forge_status forge_check_seq(const char *fn, const forge_seq *seqs, int i, int max_pos, const char *max_name,
                             int64_t *tokens);
/* No id among ids[0 .. n) twice (each below n_ids); `what` names them. */
forge_status forge_check_distinct(const char *fn, const int *ids, size_t stride, int n, int n_ids, const char *what);

/* The cache is of the layer's context, dtype, kv_heads and head_dim. */
forge_status forge_check_cache_fits(const char *fn, const forge_layer *layer, const forge_paged_cache *cache);
/* Offsets of a batch (`name` in messages): from 0, non-decreasing; *total =
 * offsets[batch]. */
forge_status forge_check_offsets(const char *fn, const char *name, const int *offsets, int batch, int *total);
/* An attention scale: finite and >= 0 (0: 1 / sqrt(head_dim)). */
forge_status forge_check_scale(const char *fn, float scale);
/* A sliding window (>= 0) and a soft cap (finite, >= 0); owner prefixes
 * their names in messages ("args->"). */
forge_status forge_check_score_options(const char *fn, const char *owner, int window, float softcap);

/* A call of forge_layer_forward, checked (kv_cache.c; cache may be NULL):
 * *total = the batch's tokens. */
forge_status forge_check_slot_call(const char *fn, forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                   int n_seqs, const void *x, const void *y, int *total);
/* A call of forge_layer_forward_paged, checked; at_length: each pos0 must
 * be its sequence's length now. */
forge_status forge_check_paged_call(const char *fn, forge_layer *layer, forge_paged_cache *cache,
                                    const forge_seq *seqs, int n_seqs, const void *x, const void *y, int at_length,
                                    int *total);

/* ------------------------------------------------------ running a call */

/* The batch of a checked call (forward.c); with_cache: its queries see the
 * cached prefix. */
forge_status forge_batch_make(forge_batch *b, const char *fn, const forge_layer *layer, const forge_seq *seqs,
                              int n_seqs, int with_cache);
void forge_batch_free(forge_batch *b);
/* The batch as layer's calls see it (sharing b's arrays): its attention
 * with the layer's heads, scale, split size, window and soft cap, which
 * differ between the layers of a stack (a window in some layers only). */
forge_batch forge_batch_for(const forge_batch *b, const forge_layer *layer);

/* Runs a checked call of the public function fn (forward.c): the pages of its new tokens, the
 * backend's computation (graph: by replaying that graph, recorded for the
 * call), the CPU on a failed stage where the policy says so, the lengths
 * advanced, the sampled self-check; on failure the pages are given back. */
forge_status forge_run(const char *fn, forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                       int n_seqs, const void *x, void *y, forge_graph *graph);

/* A layer made with a CPU twin for fallbacks and self-checks (twin, on a
 * context that has a CPU twin: forge_layer_create) or without. */
forge_status forge_layer_make(forge_context *ctx, const forge_layer_config *cfg, const forge_layer_weights *weights,
                              int twin, forge_layer **out);

/* One step of a stack of layers over caches of their own holding the
 * same sequences (layer_stack.c), in three parts so that the caller's work
 * runs between the layers and a backend may record the whole as one graph:
 * begin takes every cache's pages for the new tokens and reserves every
 * layer's workspace (the calls' arguments already checked); forward runs
 * layer l (pos_dev: NULL, or backend memory holding each sequence's pos0
 * when it runs, as in forge_batch); end advances the lengths (ok) or gives
 * the pages back, and frees. begin's failure has ended the step. */
typedef struct {
    const char *fn;
    forge_layer **layers;
    forge_paged_cache **caches;
    forge_batch b;
    forge_page_growth *growth; /* [layers][b.n] */
    int n_grown;               /* caches whose pages were taken */
} forge_stack_step;

forge_status forge_stack_begin(forge_stack_step *s, const char *fn, forge_layer **layers,
                               forge_paged_cache **caches, int n_layers, const forge_seq *seqs, int n_seqs);
forge_status forge_stack_forward(forge_stack_step *s, int l, const void *x, void *y, const int *pos_dev);
void forge_stack_end(forge_stack_step *s, int ok);

/* Recomputes a call of a non-CPU layer on its CPU twin (cpu_twin.c): x and
 * each sequence's cached prefix [0, pos0) copied in, y_host [total, hidden]
 * (host memory, the layer's dtype) out; with keep, the twin's cache is
 * kept in *twin for forge_twin_copy_out, else destroyed. */
forge_status forge_twin_recompute(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x,
                                  void *y_host, forge_paged_cache **twin);
/* Copies y_host out to y and the new tokens' K and V from the twin's
 * cache into the backend's: the call's results, as if the backend had
 * made them. Destroys the twin's cache. */
forge_status forge_twin_copy_out(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b,
                                 forge_paged_cache *twin, const void *y_host, void *y);

#endif
