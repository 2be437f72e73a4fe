/* SPDX-License-Identifier: Apache-2.0 */
/* layer_bench.c: a seeded random layer and batch, and its timing. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "layer_bench.h"

/* b->y = the device output of the last call, widened to floats. */
static int download_y(layer_bench *b, const char *cmd) {
    const size_t n = (size_t)b->batch * b->seq * b->cfg.hidden, es = forge_dtype_size(b->cfg.dtype);
    void *raw = malloc(n * es);
    if (!raw) return cli_error(cmd, "out of memory");
    forge_status st = forge_buffer_download(b->ctx, raw, b->dy, n * es);
    if (st == FORGE_OK) st = forge_convert(b->y, FORGE_F32, raw, b->cfg.dtype, n);
    free(raw);
    return st == FORGE_OK ? 0 : cli_fail(cmd, st);
}

int layer_bench_open(layer_bench *b, const char *cmd, forge_backend backend,
                     const forge_layer_config *cfg, int batch, int seq) {
    memset(b, 0, sizeof *b);
    b->cfg = *cfg;
    b->batch = batch;
    b->seq = seq;
    forge_status st = forge_layer_config_check(cfg); /* the options' layer, before its weights are made */
    if (st != FORGE_OK) return cli_usage(cmd, "%s", forge_last_error());
    const size_t n_x = (size_t)batch * seq * cfg->hidden, bytes = n_x * forge_dtype_size(cfg->dtype);
    b->x = malloc(n_x * sizeof *b->x);
    b->y = malloc(n_x * sizeof *b->y);
    b->seqs = malloc(sizeof *b->seqs * (size_t)batch);
    void *raw = malloc(bytes);
    if (!b->x || !b->y || !b->seqs || !raw || ref_random_layer_make(&b->w, cfg, 1) != 0) {
        free(raw);
        return cli_error(cmd, "out of memory");
    }
    ref_rng rng = ref_rng_seed(2);
    ref_rng_fill(&rng, b->x, n_x, 1.0);
    /* x in the layer's dtype, and b->x rounded to the same values */
    st = forge_convert(raw, cfg->dtype, b->x, FORGE_F32, n_x);
    if (st == FORGE_OK) st = forge_convert(b->x, FORGE_F32, raw, cfg->dtype, n_x);
    for (int i = 0; i < batch; i++) b->seqs[i] = (forge_seq){.slot = i, .pos0 = 0, .n_tokens = seq};
    if (st == FORGE_OK) st = forge_context_create(backend, &b->ctx);
    if (st == FORGE_OK) st = forge_layer_create(b->ctx, cfg, &b->w.model, &b->layer);
    if (st == FORGE_OK) st = forge_kv_cache_create(b->layer, batch, &b->cache);
    if (st == FORGE_OK) st = forge_buffer_alloc(b->ctx, bytes, &b->dx);
    if (st == FORGE_OK) st = forge_buffer_alloc(b->ctx, bytes, &b->dy);
    if (st == FORGE_OK) st = forge_buffer_upload(b->ctx, b->dx, raw, bytes);
    free(raw);
    return st == FORGE_OK ? 0 : cli_fail(cmd, st);
}

void layer_bench_close(layer_bench *b) {
    forge_buffer_free(b->ctx, b->dx);
    forge_buffer_free(b->ctx, b->dy);
    forge_kv_cache_destroy(b->cache);
    forge_layer_destroy(b->layer);
    forge_context_destroy(b->ctx);
    ref_random_layer_free(&b->w);
    free(b->x);
    free(b->y);
    free(b->seqs);
}

/* One prefill of the batch into emptied slots, by a forward call or by
 * launching `graph`. *us is its device time by the stopwatch (as
 * torch_baseline.py times PyTorch: events around the call); *wall_us (if not
 * NULL) the host's time from the call until the device is done. */
static int timed_call(layer_bench *b, const char *cmd, forge_graph *graph, double *us, double *wall_us) {
    for (int i = 0; i < b->batch; i++) forge_kv_cache_reset(b->cache, b->seqs[i].slot);
    double t0 = cli_now_us();
    forge_status st = forge_stopwatch_start(b->ctx);
    if (st == FORGE_OK)
        st = graph ? forge_graph_launch(graph)
                   : forge_layer_forward(b->layer, b->cache, b->seqs, b->batch, b->dx, b->dy);
    if (st == FORGE_OK) st = forge_stopwatch_stop(b->ctx, us);
    if (wall_us) *wall_us = cli_now_us() - t0;
    return st == FORGE_OK ? 0 : cli_fail(cmd, st);
}

int layer_bench_time(layer_bench *b, const char *cmd, int warmup, int iters, double *us,
                     double *wall_us, double stage_med[FORGE_STAGE_COUNT]) {
    double *stage = malloc(sizeof *stage * (size_t)iters * FORGE_STAGE_COUNT);
    double *col = malloc(sizeof *col * (size_t)iters);
    int rc = stage && col ? 0 : cli_error(cmd, "out of memory");
    double ignored;
    const int calls = warmup + 2 * iters;
    cli_progress_start();
    for (int i = 0; !rc && i < warmup; i++) {
        cli_progress(cmd, "call", i + 1, calls);
        rc = timed_call(b, cmd, NULL, &ignored, NULL);
    }
    for (int i = 0; !rc && i < iters; i++) {
        cli_progress(cmd, "call", warmup + i + 1, calls);
        rc = timed_call(b, cmd, NULL, &us[i], &wall_us[i]);
    }
    if (!rc) forge_layer_set_profiling(b->layer, 1);
    for (int i = 0; !rc && i < iters; i++) {
        cli_progress(cmd, "call", warmup + iters + i + 1, calls);
        rc = timed_call(b, cmd, NULL, &ignored, NULL);
        if (!rc) forge_layer_last_timings(b->layer, stage + (size_t)i * FORGE_STAGE_COUNT);
    }
    if (b->layer) forge_layer_set_profiling(b->layer, 0);
    for (int s = 0; !rc && s < FORGE_STAGE_COUNT; s++) {
        for (int i = 0; i < iters; i++) col[i] = stage[(size_t)i * FORGE_STAGE_COUNT + s];
        stage_med[s] = cli_quantile(col, iters, 0.5);
    }
    free(stage);
    free(col);
    cli_progress_done(cmd);
    if (!rc) rc = download_y(b, cmd);
    return rc;
}

int layer_bench_time_graph(layer_bench *b, const char *cmd, int warmup, int iters, double *us,
                           double *wall_us) {
    forge_graph *graph = NULL;
    forge_status st = forge_graph_create(b->layer, b->cache, b->seqs, b->batch, b->dx, b->dy, &graph);
    int rc = st == FORGE_OK ? 0 : cli_fail(cmd, st);
    double ignored;
    for (int i = 0; !rc && i < warmup; i++) rc = timed_call(b, cmd, graph, &ignored, NULL);
    for (int i = 0; !rc && i < iters; i++) rc = timed_call(b, cmd, graph, &us[i], &wall_us[i]);
    forge_graph_destroy(graph);
    return rc;
}
