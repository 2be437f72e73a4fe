/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_cache.h: the CPU backend's KV cache (cpu_cache.c): the pool in host
 * memory, in the cache's dtype; the backend reads the host page tables. */
#ifndef FORGE_CPU_CACHE_H
#define FORGE_CPU_CACHE_H

#include "backend.h"
#include "workers.h"

forge_status cpu_cache_init(forge_paged_cache *cache, const char *fn);
void cpu_cache_free(forge_paged_cache *cache);
forge_status cpu_cache_copy_page(forge_paged_cache *cache, int dst, int src, int tokens, const char *fn);
forge_status cpu_cache_append(forge_paged_cache *cache, int n, const int *seqs, const int *pos0, const int *n_tokens,
                              const int *row0, const void *k, const void *v, const char *fn);
forge_status cpu_cache_read(const forge_paged_cache *cache, int seq, int len, void *k, void *v, const char *fn);
forge_status cpu_cache_upload(forge_paged_cache *cache, int seq, int first, int count, const void *k, const void *v,
                              const char *fn);
/* Whether a sequence's n_queries are read where its tokens lie
 * (cpu_cache_attend) rather than gathered: an fp32 pool and one query (a
 * decode step), where the gather of its K and V costs about what the
 * attention does; more queries share one gather and a GEMM. */
int cpu_cache_in_place(const forge_paged_cache *cache, int n_queries);
/* The CPU context (ctx->impl): threads beside the caller's that share a
 * decode step's attention, one fewer than OpenBLAS's, started when first
 * needed (NULL until then; n_workers 0: none; where they could not be
 * started, the step runs on the caller's thread alone). */
typedef struct {
    forge_workers *workers;
    int n_workers;
} cpu_ctx;

/* Decode rows a cpu_decode_batch holds before it runs them; and the work
 * (rows x heads x keys) from which the workers share it. */
#define CPU_DECODE_CHUNK 64
#define CPU_KEYS_WORTH_THREADS 4096L

/* A decode row: sequence seq's one query, its last of len tokens; q and
 * out [heads, head_dim]; each head's log-sum-exp at lse[h * lse_stride]
 * (lse NULL: none). */
typedef struct {
    int seq, len;
    const float *q;
    float *out, *lse;
} cpu_decode_row;

/* Attention of decode rows (cpu_cache_in_place) over their tokens where
 * they lie, page by page, the (row, head) pairs shared among the context's
 * workers and the caller: a call's rows added one by one (a full chunk
 * runs then), the rest run by cpu_decode_flush. scores:
 * cpu_cache_attend_scratch floats for the longest row's len. The loops
 * are those cpu_attention runs on one row, so that the results are those
 * of the same call over gathered rows, bit for bit. */
typedef struct {
    const forge_paged_cache *cache;
    int heads, window;
    float scale, softcap;
    long lse_stride;
    float *scores;
    int n;
    cpu_decode_row rows[CPU_DECODE_CHUNK];
} cpu_decode_batch;

long cpu_cache_attend_scratch(const forge_paged_cache *cache, long longest);
void cpu_decode_add(cpu_decode_batch *d, cpu_decode_row row);
void cpu_decode_flush(cpu_decode_batch *d);
forge_status cpu_paged_attention(forge_paged_cache *cache, const forge_paged_attention_args *a, const int *lens,
                                 int total_q, const int *pos_dev, const char *fn);
/* Positions [first, len) of seq, widened to float32, into k and v [len -
 * first, kv_heads, head_dim]. */
void cpu_cache_gather(const forge_paged_cache *cache, int seq, int first, int len, float *k, float *v);

#endif
