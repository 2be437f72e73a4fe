/* SPDX-License-Identifier: Apache-2.0 */
/* bench_decode.c: `forge bench decode`, one decode step of attention over a
 * paged KV cache (forge_paged_attention), the work of
 * bench/torch_baseline.py decode: B sequences of L cached tokens, one
 * query each, q [B, H, D]. The sequences grow in turns, a chunk at a time,
 * so their pages interleave as a server's do. Timed by forge_stopwatch (CUDA
 * events around each call, as torch_baseline.py times PyTorch); TB/s counts the
 * K and V bytes read, 2 * B * K * L * D * element size, as torch_baseline.py does;
 * with --window W, of the min(W, L) tokens a query sees (the pages before
 * a window are not read). --softcap C caps the scores as Gemma 2 does.
 * With --json, one object with torch_baseline.py's field names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "testdata.h"

#define CMD "bench decode"

/* Tokens a sequence grows by in one append: the host fills one chunk of
 * random K and V rows and every append reuses it. */
#define CHUNK 1024

void *random_host(size_t n, forge_dtype dtype, uint64_t seed) {
    float *f = malloc(sizeof *f * n);
    void *raw = malloc(forge_dtype_size(dtype) * n);
    if (f && raw) {
        ref_rng rng = ref_rng_seed(seed);
        ref_rng_fill(&rng, f, n, 1.0);
        forge_convert(raw, dtype, f, FORGE_F32, n);
    } else {
        free(raw);
        raw = NULL;
    }
    free(f);
    return raw;
}

/* Appends of up to CHUNK tokens to each sequence in turn, from one device
 * buffer of CHUNK * B rows. */
forge_status fill_paged(forge_context *ctx, forge_paged_cache *cache, const int *seqs, int batch, int len) {
    const forge_paged_config c = forge_paged_cache_config(cache);
    const size_t row = (size_t)c.kv_heads * c.head_dim * forge_dtype_size(c.dtype);
    const int chunk = len < CHUNK ? len : CHUNK;
    const size_t bytes = row * (size_t)chunk * batch;
    void *host = random_host(bytes / forge_dtype_size(c.dtype), c.dtype, 7), *dev = NULL;
    int *n_tokens = malloc(sizeof *n_tokens * (size_t)batch);
    forge_status st = host && n_tokens ? forge_buffer_alloc(ctx, bytes, &dev) : FORGE_ERR_OUT_OF_MEMORY;
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, dev, host, bytes);
    for (int done = 0; st == FORGE_OK && done < len; done += chunk) {
        for (int b = 0; b < batch; b++) n_tokens[b] = len - done < chunk ? len - done : chunk;
        st = forge_paged_append(cache, batch, seqs, n_tokens, dev, dev);
    }
    forge_buffer_free(ctx, dev);
    free(host);
    free(n_tokens);
    return st;
}

int paged_bench_config(const char *cmd, const cli_bench_shape *sh, int page_size, long max_len,
                       forge_paged_config *cfg) {
    if (page_size < 1) return cli_usage(cmd, "--page-size must be at least 1");
    const int64_t pages = ((int64_t)max_len + page_size - 1) / page_size * sh->batch;
    if (pages > 1 << 30) return cli_usage(cmd, "batch * kv-len / page-size is over 2^30 pages");
    *cfg = (forge_paged_config){.dtype = sh->dtype, .kv_heads = sh->kv_heads, .head_dim = sh->head_dim,
                                .page_size = page_size, .n_pages = (int)pages, .max_seqs = sh->batch,
                                .max_seq_len = (int)max_len};
    return 0;
}

int bench_decode(int argc, char **argv) {
    cli_bench_shape sh = {.batch = 1, .iters = 100, .warmup = 10};
    int page_size = 16, split_size = 0, window = 0;
    double softcap = 0.0;
    cli_opt extra[] = {{"--page-size", OPT_INT, &page_size, 0}, {"--split-size", OPT_INT, &split_size, 0},
                       {"--window", OPT_INT, &window, 0}, {"--softcap", OPT_FLOAT, &softcap, 0}};
    forge_paged_config cfg;
    int parsed = cli_parse_bench_shape(CMD, "--kv-len", argc, argv, extra, 4, &sh);
    if (parsed == CLI_OK) parsed = paged_bench_config(CMD, &sh, page_size, sh.len, &cfg);
    if (parsed != CLI_OK) return parsed;
    const int batch = sh.batch, kv_len = sh.len, heads = sh.heads, kv_heads = sh.kv_heads, head_dim = sh.head_dim;
    const int iters = sh.iters, warmup = sh.warmup;
    const forge_dtype dtype = sh.dtype;
    int *seqs = malloc(sizeof *seqs * (size_t)batch), *q_offsets = malloc(sizeof *q_offsets * (size_t)(batch + 1));
    double *us = malloc(sizeof *us * (size_t)iters);
    if (!seqs || !q_offsets || !us) return cli_error(CMD, "out of memory");
    for (int b = 0; b <= batch; b++) q_offsets[b] = b;
    forge_context *ctx = NULL;
    forge_paged_cache *cache = NULL;
    void *q = NULL, *out = NULL, *q_host = NULL;
    const size_t nq = (size_t)batch * heads * head_dim, q_bytes = nq * forge_dtype_size(dtype);
    forge_status st = forge_context_create(sh.backend, &ctx);
    if (st == FORGE_OK) st = forge_paged_cache_create(ctx, &cfg, &cache);
    for (int b = 0; st == FORGE_OK && b < batch; b++) st = forge_paged_seq_new(cache, &seqs[b]);
    if (st == FORGE_OK) st = fill_paged(ctx, cache, seqs, batch, kv_len);
    if (st == FORGE_OK) st = (q_host = random_host(nq, dtype, 11)) ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, q_bytes, &q);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, q_bytes, &out);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, q, q_host, q_bytes);
    const forge_paged_attention_args a = {.batch = batch, .seqs = seqs, .q_offsets = q_offsets, .heads = heads,
                                          .q = q, .out = out, .split_size = split_size, .window = window,
                                          .softcap = (float)softcap};
    for (int i = 0; st == FORGE_OK && i < warmup + iters; i++) {
        double t;
        st = forge_stopwatch_start(ctx);
        if (st == FORGE_OK) st = forge_paged_attention(cache, &a);
        if (st == FORGE_OK) st = forge_stopwatch_stop(ctx, &t);
        if (st == FORGE_OK && i >= warmup) us[i - warmup] = t;
    }
    int used = 0; /* the split size the calls used */
    if (st == FORGE_OK) st = forge_paged_split_size(cache, &a, &used);
    int rc = st == FORGE_OK ? 0 : cli_fail(CMD, st);
    if (!rc) {
        const int seen = window > 0 && window < kv_len ? window : kv_len; /* tokens a query sees */
        const int splits = (seen + used - 1) / used;
        const double med = cli_quantile(us, iters, 0.5);
        const double bytes = 2.0 * batch * kv_heads * (double)seen * head_dim * forge_dtype_size(dtype);
        const char *impl = forge_context_backend(ctx) == FORGE_BACKEND_CUDA ? "forge-cuda" : "forge-cpu";
        if (sh.json)
            printf("{\"mode\": \"decode\", \"impl\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, \"heads\": %d, "
                   "\"kv_heads\": %d, \"head_dim\": %d, \"kv_len\": %d, \"page_size\": %d, \"split_size\": %d, "
                   "\"splits\": %d, \"split_fixed\": %s, \"window\": %d, \"softcap\": %g, \"iters\": %d, "
                   "\"us\": %.2f, \"us_p10\": %.2f, \"us_p90\": %.2f, \"TBps\": %.3f}\n",
                   impl, forge_dtype_name(dtype), batch, heads, kv_heads, head_dim, kv_len, page_size, used, splits,
                   split_size ? "true" : "false", window, softcap, iters, med, cli_quantile(us, iters, 0.1), cli_quantile(us, iters, 0.9), bytes / med / 1e6);
        else
            printf("%s decode: batch %d, kv_len %d, heads %d, kv_heads %d, head_dim %d, %s, pages of %d, "
                   "%d splits of %d (%s), window %d, softcap %g\n"
                   "  median %.2f us (p10 %.2f, p90 %.2f, %d calls): %.3f TB/s of K and V\n",
                   impl, batch, kv_len, heads, kv_heads, head_dim, forge_dtype_name(dtype), page_size,
                   splits, used, split_size ? "fixed" : "chosen", window, softcap, med, cli_quantile(us, iters, 0.1), cli_quantile(us, iters, 0.9),
                   iters, bytes / med / 1e6);
    }
    forge_buffer_free(ctx, q);
    forge_buffer_free(ctx, out);
    forge_paged_cache_destroy(cache);
    forge_context_destroy(ctx);
    free(q_host);
    free(seqs);
    free(q_offsets);
    free(us);
    return rc;
}
