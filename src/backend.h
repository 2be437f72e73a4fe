/* backend.h: the interface every backend implements, and the handles' layout.
 *
 * The generic code (layer.c, kv_cache.c) checks every argument and keeps the
 * bookkeeping (slot lengths, timings); a backend only allocates and computes,
 * and is called with arguments already known to be valid. */
#ifndef FORGE_BACKEND_H
#define FORGE_BACKEND_H

#include "forge.h"

typedef struct forge_backend_ops forge_backend_ops;

struct forge_context {
    const forge_backend_ops *ops;
};

struct forge_layer {
    forge_context *ctx;
    forge_layer_config cfg;
    int profiling;                      /* time the stages of forward calls */
    int has_timings;                    /* stage_us holds a profiled call   */
    double stage_us[FORGE_STAGE_COUNT]; /* of the last profiled call        */
    void *impl;                         /* the backend's weights, workspace */
};

struct forge_kv_cache {
    forge_context *ctx;
    int slots, kv_heads, head_dim, max_seq;
    forge_dtype dtype;
    int *len;   /* [slots] positions held by each slot */
    void *impl; /* the backend's K and V storage       */
};

struct forge_backend_ops {
    forge_backend kind;
    /* Copies the weights into layer->impl. */
    forge_status (*layer_init)(forge_layer *layer, const forge_layer_weights *w);
    void (*layer_free)(forge_layer *layer);
    /* Allocates cache->impl for slots x kv_heads x max_seq x head_dim, K and V. */
    forge_status (*cache_init)(forge_kv_cache *cache);
    void (*cache_free)(forge_kv_cache *cache);
    /* Copies positions [0, len) of a slot into host buffers (see forge.h). */
    forge_status (*cache_read)(const forge_kv_cache *cache, int slot, int len, void *k, void *v);
    /* Computes y; fills layer->stage_us when layer->profiling. */
    forge_status (*forward)(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                            int n_seqs, int total_tokens, const void *x, void *y);
};

extern const forge_backend_ops forge_cpu_backend;

#endif
