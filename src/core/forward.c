/* SPDX-License-Identifier: Apache-2.0 */
/* forward.c: the one way a layer call runs, whichever face it came in by
 * (forge_layer_forward's slots, forge_layer_forward_paged, a graph's
 * launch): its batch, the pages of its new tokens, the backend's
 * computation, the CPU when a stage fails and the policy says so, the
 * lengths advanced, and the sampled self-check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

forge_status forge_check_paged_call(const char *fn, forge_layer *layer, forge_paged_cache *cache,
                                    const forge_seq *seqs, int n_seqs, const void *x, const void *y, int at_length,
                                    int *total) {
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(cache, fn);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(x, fn);
    FORGE_CHECK_NOT_NULL(y, fn);
    if (n_seqs < 1) return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_seqs = %d is below 1", fn, n_seqs);
    const forge_paged_config *cc = &cache->cfg;
    forge_status st = forge_check_cache_fits(fn, layer, cache);
    if (st != FORGE_OK) return st;
    if (layer->paged_split % cc->page_size != 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: the layer's paged split size %d is not a multiple of the cache's page size %d", fn,
                          layer->paged_split, cc->page_size);
    int64_t tokens = 0;
    for (int i = 0; i < n_seqs; i++) {
        const forge_seq *s = &seqs[i];
        if (s->slot < 0 || s->slot >= cc->max_seqs || cache->len[s->slot] < 0)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].slot = %d is not a live sequence of the cache",
                              fn, i, s->slot);
        if ((st = forge_check_seq(fn, seqs, i, cc->max_seq_len, "the cache's max_seq_len", &tokens)) != FORGE_OK)
            return st;
        if (at_length && s->pos0 != cache->len[s->slot])
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                              "%s: seqs[%d].pos0 = %d but sequence %d holds %d tokens: a paged call appends at the end",
                              fn, i, s->pos0, s->slot, cache->len[s->slot]);
    }
    st = forge_check_distinct(fn, &seqs[0].slot, sizeof *seqs, n_seqs, cc->max_seqs, "sequence");
    if (st == FORGE_OK) *total = (int)tokens;
    return st;
}

forge_status forge_batch_make(forge_batch *b, const char *fn, const forge_layer *layer, const forge_seq *seqs,
                              int n_seqs, int with_cache) {
    memset(b, 0, sizeof *b);
    int *mem = malloc(sizeof *mem * (5 * (size_t)n_seqs + 1));
    if (!mem) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for a batch of %d", fn, n_seqs);
    b->fn = fn;
    b->n = n_seqs;
    b->ids = mem, b->pos0 = mem + n_seqs, b->n_tokens = mem + 2 * n_seqs, b->lens = mem + 3 * n_seqs;
    b->rows = mem + 4 * n_seqs;
    b->rows[0] = 0;
    for (int i = 0; i < n_seqs; i++) {
        b->ids[i] = seqs[i].slot, b->pos0[i] = seqs[i].pos0, b->n_tokens[i] = seqs[i].n_tokens;
        b->lens[i] = with_cache ? seqs[i].pos0 + seqs[i].n_tokens : seqs[i].n_tokens;
        b->rows[i + 1] = b->rows[i] + seqs[i].n_tokens;
    }
    b->total = b->rows[n_seqs];
    *b = forge_batch_for(b, layer);
    return FORGE_OK;
}

forge_batch forge_batch_for(const forge_batch *b, const forge_layer *layer) {
    forge_batch out = *b;
    out.attn = (forge_paged_attention_args){.batch = b->n, .seqs = b->ids, .q_offsets = b->rows,
                                            .heads = layer->cfg.heads,
                                            .scale = 1.0f / sqrtf((float)layer->cfg.head_dim),
                                            .split_size = layer->paged_split, .window = layer->cfg.window,
                                            .softcap = layer->cfg.softcap};
    return out;
}

void forge_batch_free(forge_batch *b) { free(b->ids); }

/* Reruns a call whose stage failed on the layer's CPU twin and puts its
 * results where the backend would have. */
static forge_status fall_back(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x,
                              void *y, forge_stage failed) {
    forge_context *ctx = layer->ctx;
    if (!ctx->fallback_logged) {
        fprintf(stderr, "forge: %s; falling back to the CPU (logged once)\n", forge_last_error());
        ctx->fallback_logged = 1;
    }
    ctx->fallback_counts[failed]++;
    void *y_host = malloc(forge_dtype_size(layer->cfg.dtype) * (size_t)b->total * layer->cfg.hidden);
    forge_paged_cache *twin = NULL;
    forge_status st = y_host ? forge_twin_recompute(layer, cache, b, x, y_host, &twin)
                             : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "fallback: out of memory");
    if (st == FORGE_OK) st = forge_twin_copy_out(layer, cache, b, twin, y_host, y);
    else forge_paged_cache_destroy(twin);
    free(y_host);
    return st;
}

/* Recomputes the call on the CPU twin and records how far y is from it. */
static forge_status self_check(forge_layer *layer, forge_paged_cache *cache, const forge_batch *b, const void *x,
                               const void *y) {
    const forge_dtype dt = layer->cfg.dtype;
    const size_t n = (size_t)b->total * layer->cfg.hidden;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    void *raw = malloc(n * forge_dtype_size(dt));
    forge_status st = want && got && raw ? FORGE_OK
                                         : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "self-check: out of memory");
    if (st == FORGE_OK) st = forge_twin_recompute(layer, cache, b, x, raw, NULL);
    if (st == FORGE_OK) st = forge_convert(want, FORGE_F32, raw, dt, n);
    if (st == FORGE_OK) st = layer->ctx->ops->buffer_copy(layer->ctx, raw, y, n * forge_dtype_size(dt), 1);
    if (st == FORGE_OK) st = forge_convert(got, FORGE_F32, raw, dt, n);
    if (st == FORGE_OK) {
        forge_selfcheck *r = &layer->selfcheck;
        double diff2 = 0.0, want2 = 0.0, max_abs = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(got[i])) {
                r->nonfinite++;
                continue;
            }
            double d = fabs((double)got[i] - want[i]);
            max_abs = d > max_abs ? d : max_abs;
            diff2 += d * d;
            want2 += (double)want[i] * want[i];
        }
        double rel = want2 > 0.0 ? sqrt(diff2 / want2) : sqrt(diff2);
        r->checked++;
        r->rel_l2 = rel > r->rel_l2 ? rel : r->rel_l2;
        r->max_abs = max_abs > r->max_abs ? max_abs : r->max_abs;
    }
    free(want);
    free(got);
    free(raw);
    return st;
}

forge_status forge_run(const char *fn, forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                       int n_seqs, const void *x, void *y, forge_graph *graph) {
    forge_context *ctx = layer->ctx;
    const forge_backend_ops *ops = ctx->ops;
    forge_batch b;
    forge_status st = forge_batch_make(&b, fn, layer, seqs, n_seqs, cache != NULL);
    if (st != FORGE_OK) return st;
    forge_page_growth *g = NULL;
    if (cache) {
        g = malloc(sizeof *g * (size_t)n_seqs);
        st = g ? forge_paged_check_room(cache, n_seqs, b.ids, b.n_tokens, fn)
               : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (st == FORGE_OK) st = forge_paged_grow(cache, n_seqs, b.ids, b.n_tokens, g, fn);
        if (st != FORGE_OK) {
            free(g);
            forge_batch_free(&b);
            return st;
        }
    }
    const int replay = graph && ops->graph_launch;
    forge_stage failed = FORGE_STAGE_COUNT;
    if (replay) {
        st = ops->graph_launch(graph, &b);
    } else {
        if (ops->reserve) st = ops->reserve(layer, cache, &b);
        if (st == FORGE_OK) st = ops->forward(layer, cache, &b, x, y, &failed);
        if (st != FORGE_OK && failed < FORGE_STAGE_COUNT && ctx->fallback == FORGE_FALLBACK_CPU && layer->cpu)
            st = fall_back(layer, cache, &b, x, y, failed);
    }
    if (st != FORGE_OK) {
        if (cache) forge_paged_ungrow(cache, n_seqs, b.ids, g, fn);
    } else {
        for (int i = 0; cache && i < n_seqs; i++) cache->len[b.ids[i]] = b.lens[i];
        if (layer->profiling) layer->has_timings = !replay; /* a graph's launch is not timed */
        if (layer->selfcheck_fraction > 0.0 && layer->cpu) {
            layer->selfcheck.calls++;
            layer->selfcheck_credit += layer->selfcheck_fraction;
            if (layer->selfcheck_credit >= 1.0) {
                layer->selfcheck_credit -= 1.0;
                st = self_check(layer, cache, &b, x, y);
            }
        }
    }
    free(g);
    forge_batch_free(&b);
    return st;
}

forge_status forge_layer_forward_paged(forge_layer *layer, forge_paged_cache *cache, const forge_seq *seqs,
                                       int n_seqs, const void *x, void *y) {
    static const char fn[] = "forge_layer_forward_paged";
    int total = 0;
    forge_status st = forge_check_paged_call(fn, layer, cache, seqs, n_seqs, x, y, 1, &total);
    if (st != FORGE_OK) return st;
    return forge_run(fn, layer, cache, seqs, n_seqs, x, y, NULL);
}
