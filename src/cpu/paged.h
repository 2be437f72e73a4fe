/* SPDX-License-Identifier: Apache-2.0 */
/* paged.h: the CPU backend's paged KV cache (paged.c): the pool in host
 * memory, in the cache's dtype; the backend reads the host page tables. */
#ifndef FORGE_CPU_PAGED_H
#define FORGE_CPU_PAGED_H

#include "backend.h"

forge_status cpu_paged_init(forge_paged_cache *cache);
void cpu_paged_free(forge_paged_cache *cache);
forge_status cpu_paged_copy_page(forge_paged_cache *cache, int dst, int src, int tokens);
forge_status cpu_paged_write(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                             const int *row0, const void *k, const void *v);
forge_status cpu_paged_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v);
forge_status cpu_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                 int total_q);
/* Positions [0, len) of seq, K and V widened to float32 rows [len, kv_heads, head_dim]. */
void cpu_paged_gather(const forge_paged_cache *cache, int seq, int len, float *k, float *v);

#endif
