/* SPDX-License-Identifier: Apache-2.0 */
/* bench_step.c: `forge bench step`, one batch decode step of the whole layer
 * over a paged KV cache: B sequences of L cached tokens each take one new
 * token (QKV projection, RoPE, the append into their pages, paged attention,
 * output projection; forge_layer_forward_paged). Timed two ways, each step
 * by forge_stopwatch (CUDA events around it, so that time the device waits
 * for the host counts): eager calls, and one graph (forge_graph_create_paged)
 * that each step moves with forge_graph_update, whose host work is inside
 * the timed span, and launches. update_us is that host work alone. The
 * sequences grow by a token a step. --split-size fixes the attention's split
 * (forge_layer_set_paged_split; split_size 0 in the JSON: chosen). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "testdata.h"

#define CMD "bench step"

typedef struct {
    forge_layer *layer;
    forge_paged_cache *cache;
    forge_seq *seqs; /* [batch]: one token at each sequence's length */
    int batch;
    void *x, *y;
} step_run;

/* warmup + iters steps; us[i] the device time of timed step i, and with a
 * graph upd[i] the host time of its update. */
static forge_status time_steps(forge_context *ctx, step_run *r, int *len, int graph, int warmup, int iters,
                               double *us, double *upd) {
    forge_graph *g = NULL;
    for (int b = 0; b < r->batch; b++) r->seqs[b].pos0 = len[b];
    forge_status st = graph ? forge_graph_create_paged(r->layer, r->cache, r->seqs, r->batch, r->x, r->y, &g) : FORGE_OK;
    for (int i = 0; st == FORGE_OK && i < warmup + iters; i++) {
        double t, t0 = 0.0;
        for (int b = 0; b < r->batch; b++) r->seqs[b].pos0 = len[b];
        st = forge_stopwatch_start(ctx);
        if (st == FORGE_OK && graph) {
            const double w0 = cli_now_us();
            st = forge_graph_update(g, r->seqs, r->batch);
            t0 = cli_now_us() - w0;
            if (st == FORGE_OK) st = forge_graph_launch(g);
        } else if (st == FORGE_OK) {
            st = forge_layer_forward_paged(r->layer, r->cache, r->seqs, r->batch, r->x, r->y);
        }
        if (st == FORGE_OK) st = forge_stopwatch_stop(ctx, &t);
        for (int b = 0; st == FORGE_OK && b < r->batch; b++) len[b]++;
        if (st == FORGE_OK && i >= warmup) {
            us[i - warmup] = t;
            if (graph) upd[i - warmup] = t0;
        }
    }
    forge_graph_destroy(g);
    return st;
}

int bench_step(int argc, char **argv) {
    cli_bench_shape sh = {.batch = 1, .iters = 100, .warmup = 10};
    int hidden = 0, page_size = 16, split_size = 0;
    cli_opt extra[] = {{"--hidden", OPT_INT, &hidden, 0},
                       {"--page-size", OPT_INT, &page_size, 0},
                       {"--split-size", OPT_INT, &split_size, 0}};
    int parsed = cli_parse_bench_shape(CMD, "--kv-len", argc, argv, extra, 3, &sh);
    if (parsed != CLI_OK) return parsed;
    if (hidden < 0 || hidden > 1 << 24) return cli_usage(CMD, "--hidden = %d is outside 0 .. 2^24", hidden);
    const int64_t max_len = (int64_t)sh.len + 2 * ((int64_t)sh.warmup + sh.iters); /* eager steps, then graph steps */
    if (max_len > 1 << 30)
        return cli_usage(CMD, "--kv-len and the steps reach %lld tokens, over 2^30", (long long)max_len);
    forge_paged_config pc;
    if ((parsed = paged_bench_config(CMD, &sh, page_size, (long)max_len, &pc)) != CLI_OK) return parsed;
    const int batch = sh.batch, kv_len = sh.len, heads = sh.heads, kv_heads = sh.kv_heads, head_dim = sh.head_dim;
    const int iters = sh.iters, warmup = sh.warmup;
    const forge_dtype dtype = sh.dtype;
    if (!hidden) hidden = heads * head_dim;

    forge_layer_config cfg = forge_layer_config_default(hidden, heads, kv_heads, head_dim);
    cfg.dtype = dtype;
    if (forge_layer_config_check(&cfg) != FORGE_OK) /* before its weights are made */
        return cli_usage(CMD, "%s", forge_last_error());
    ref_random_layer w;
    int made = ref_random_layer_make(&w, &cfg, 1) == 0;
    int *ids = malloc(sizeof *ids * (size_t)batch), *len = malloc(sizeof *len * (size_t)batch);
    double *us = malloc(sizeof *us * 3 * (size_t)iters);
    step_run r = {.batch = batch, .seqs = malloc(sizeof *r.seqs * (size_t)batch)};
    if (!made || !ids || !len || !us || !r.seqs) return cli_error(CMD, "out of memory");
    forge_context *ctx = NULL;
    void *x_host = NULL;
    const size_t x_bytes = (size_t)batch * hidden * forge_dtype_size(dtype);
    forge_status st = forge_context_create(sh.backend, &ctx);
    if (st == FORGE_OK) st = forge_layer_create(ctx, &cfg, &w.model, &r.layer);
    if (st == FORGE_OK) st = forge_layer_set_paged_split(r.layer, split_size);
    if (st == FORGE_OK) st = forge_paged_cache_create(ctx, &pc, &r.cache);
    for (int b = 0; st == FORGE_OK && b < batch; b++) st = forge_paged_seq_new(r.cache, &ids[b]);
    if (st == FORGE_OK) st = fill_paged(ctx, r.cache, ids, batch, kv_len);
    if (st == FORGE_OK) st = (x_host = random_host(x_bytes / forge_dtype_size(dtype), dtype, 3)) ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, x_bytes, &r.x);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, x_bytes, &r.y);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, r.x, x_host, x_bytes);
    for (int b = 0; b < batch; b++) r.seqs[b] = (forge_seq){.slot = ids[b], .pos0 = 0, .n_tokens = 1}, len[b] = kv_len;
    double *eager = us, *graph = us + iters, *update = us + 2 * iters;
    if (st == FORGE_OK) st = time_steps(ctx, &r, len, 0, warmup, iters, eager, NULL);
    if (st == FORGE_OK) st = time_steps(ctx, &r, len, 1, warmup, iters, graph, update);
    int rc = st == FORGE_OK ? 0 : cli_fail(CMD, st);
    if (!rc) {
        const char *impl = forge_context_backend(ctx) == FORGE_BACKEND_CUDA ? "forge-cuda" : "forge-cpu";
        const double e = cli_quantile(eager, iters, 0.5), g = cli_quantile(graph, iters, 0.5);
        const double u = cli_quantile(update, iters, 0.5);
        if (sh.json)
            printf("{\"mode\": \"decode_step\", \"impl\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, \"heads\": %d, "
                   "\"kv_heads\": %d, \"head_dim\": %d, \"hidden\": %d, \"kv_len\": %d, \"page_size\": %d, "
                   "\"split_size\": %d, \"iters\": %d, \"eager_us\": %.2f, \"eager_us_p90\": %.2f, \"graph_us\": %.2f, "
                   "\"graph_us_p90\": %.2f, \"update_us\": %.2f}\n",
                   impl, forge_dtype_name(dtype), batch, heads, kv_heads, head_dim, hidden, kv_len, page_size,
                   split_size, iters, e, cli_quantile(eager, iters, 0.9), g, cli_quantile(graph, iters, 0.9), u);
        else
            printf("%s decode step: batch %d, kv_len %d, heads %d, kv_heads %d, head_dim %d, hidden %d, %s, pages of %d\n"
                   "  eager: median %.2f us (p90 %.2f, %d steps)\n"
                   "  graph: median %.2f us (p90 %.2f), of which the update's host work %.2f us\n",
                   impl, batch, kv_len, heads, kv_heads, head_dim, hidden, forge_dtype_name(dtype), page_size, e,
                   cli_quantile(eager, iters, 0.9), iters, g, cli_quantile(graph, iters, 0.9), u);
    }
    forge_buffer_free(ctx, r.x);
    forge_buffer_free(ctx, r.y);
    forge_paged_cache_destroy(r.cache);
    forge_layer_destroy(r.layer);
    forge_context_destroy(ctx);
    ref_random_layer_free(&w);
    free(x_host);
    free(ids);
    free(len);
    free(us);
    free(r.seqs);
    return rc;
}
