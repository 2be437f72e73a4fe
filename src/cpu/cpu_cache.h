/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_cache.h: the CPU backend's KV cache (cpu_cache.c): the pool in host
 * memory, in the cache's dtype; the backend reads the host page tables. */
#ifndef FORGE_CPU_CACHE_H
#define FORGE_CPU_CACHE_H

#include "backend.h"

forge_status cpu_cache_init(forge_paged_cache *cache, const char *fn);
void cpu_cache_free(forge_paged_cache *cache);
forge_status cpu_cache_copy_page(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn);
forge_status cpu_cache_append(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                              const int *row0, const void *k, const void *v, const char *fn);
forge_status cpu_cache_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn);
forge_status cpu_cache_upload(forge_paged_cache *cache, int seq, int first, int count, const void *k, const void *v,
                              const char *fn);
forge_status cpu_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                 int total_q, const int *pos_dev, const char *fn);
/* Positions [first, len) of seq, widened to float32, into k and v [len -
 * first, kv_heads, head_dim]. */
void cpu_cache_gather(const forge_paged_cache *cache, int seq, int first, int len, float *k, float *v);

#endif
