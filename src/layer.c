/* SPDX-License-Identifier: Apache-2.0 */
/* layer.c: layer config checks, layer handles, and the argument checks of a
 * forward call that every backend shares. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "error.h"

forge_layer_config forge_layer_config_default(int hidden, int heads, int kv_heads, int head_dim) {
    forge_layer_config cfg = {
        .hidden = hidden,
        .heads = heads,
        .kv_heads = kv_heads,
        .head_dim = head_dim,
        .max_seq = 4096,
        .rope_theta = 10000.0f,
        .rope_style = FORGE_ROPE_HALF,
        .bias = 0,
        .dtype = FORGE_F32,
    };
    return cfg;
}

forge_status forge_layer_config_check(const forge_layer_config *cfg) {
    static const char fn[] = "forge_layer_config_check";
    FORGE_CHECK_NOT_NULL(cfg, fn);
    const struct { const char *name; int value; } sizes[] = {
        {"hidden", cfg->hidden},     {"heads", cfg->heads},
        {"kv_heads", cfg->kv_heads}, {"head_dim", cfg->head_dim},
        {"max_seq", cfg->max_seq},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value < 1 || sizes[i].value > FORGE_MAX_DIM)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s = %d is outside [1, %d]", fn,
                              sizes[i].name, sizes[i].value, FORGE_MAX_DIM);
    if (cfg->heads % cfg->kv_heads != 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: heads = %d is not a multiple of kv_heads = %d", fn, cfg->heads,
                          cfg->kv_heads);
    if ((int64_t)(cfg->heads + 2 * (int64_t)cfg->kv_heads) * cfg->head_dim > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: (heads + 2 * kv_heads) * head_dim = %lld exceeds %d", fn,
                          (long long)(cfg->heads + 2 * (int64_t)cfg->kv_heads) * cfg->head_dim,
                          FORGE_MAX_DIM);
    if (cfg->rope_style != FORGE_ROPE_HALF && cfg->rope_style != FORGE_ROPE_INTERLEAVED &&
        cfg->rope_style != FORGE_ROPE_NONE)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: unknown rope_style %d", fn,
                          (int)cfg->rope_style);
    if (cfg->rope_style != FORGE_ROPE_NONE) {
        if (cfg->head_dim % 2 != 0)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                              "%s: head_dim = %d is odd; RoPE rotates pairs and needs it even",
                              fn, cfg->head_dim);
        if (!(cfg->rope_theta > 1.0f) || isinf(cfg->rope_theta))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                              "%s: rope_theta = %g must be finite and greater than 1", fn,
                              (double)cfg->rope_theta);
    }
    if (cfg->bias & ~(unsigned)(FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: unknown bias bits 0x%x", fn,
                          cfg->bias);
    if (forge_dtype_size(cfg->dtype) == 0)
        return forge_fail(FORGE_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)cfg->dtype);
    return FORGE_OK;
}

static forge_status check_weights(const forge_layer_config *cfg, const forge_layer_weights *w) {
    static const char fn[] = "forge_layer_create";
    const struct { const char *name; const void *p; } mats[] = {
        {"q_proj", w->q_proj}, {"k_proj", w->k_proj}, {"v_proj", w->v_proj}, {"o_proj", w->o_proj},
    };
    for (int i = 0; i < 4; i++)
        if (!mats[i].p)
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: weights->%s is NULL", fn,
                              mats[i].name);
    const struct { const char *name; unsigned bit; const void *p; } biases[] = {
        {"q_bias", FORGE_BIAS_Q, w->q_bias}, {"k_bias", FORGE_BIAS_K, w->k_bias},
        {"v_bias", FORGE_BIAS_V, w->v_bias}, {"o_bias", FORGE_BIAS_O, w->o_bias},
    };
    for (int i = 0; i < 4; i++) {
        int want = (cfg->bias & biases[i].bit) != 0;
        if (want != (biases[i].p != NULL))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                              "%s: config.bias %s %s but weights->%s is %s", fn,
                              want ? "sets" : "lacks", biases[i].name, biases[i].name,
                              biases[i].p ? "set" : "NULL");
    }
    return FORGE_OK;
}

forge_status forge_layer_create(forge_context *ctx, const forge_layer_config *cfg,
                                const forge_layer_weights *weights, forge_layer **out) {
    static const char fn[] = "forge_layer_create";
    FORGE_CHECK_NOT_NULL(ctx, fn);
    FORGE_CHECK_NOT_NULL(cfg, fn);
    FORGE_CHECK_NOT_NULL(weights, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    forge_status st = forge_layer_config_check(cfg);
    if (st != FORGE_OK) return st;
    if ((st = check_weights(cfg, weights)) != FORGE_OK) return st;
    forge_layer *layer = calloc(1, sizeof *layer);
    if (!layer) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    layer->ctx = ctx;
    layer->cfg = *cfg;
    if ((st = ctx->ops->layer_init(layer, weights)) != FORGE_OK) {
        free(layer);
        return st;
    }
    /* a CPU twin with the same weights serves fallbacks and self-checks */
    if (ctx->cpu && (st = forge_layer_create(ctx->cpu, cfg, weights, &layer->cpu)) != FORGE_OK) {
        forge_layer_destroy(layer);
        return st;
    }
    *out = layer;
    return FORGE_OK;
}

void forge_layer_destroy(forge_layer *layer) {
    if (!layer) return;
    forge_layer_destroy(layer->cpu);
    layer->ctx->ops->layer_free(layer);
    free(layer);
}

forge_status forge_layer_set_attention(forge_layer *layer, forge_attention path) {
    FORGE_CHECK_NOT_NULL(layer, "forge_layer_set_attention");
    if (path != FORGE_ATTENTION_FLASH && path != FORGE_ATTENTION_UNFUSED)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_layer_set_attention: unknown path %d",
                          (int)path);
    if (path == FORGE_ATTENTION_UNFUSED && layer->ctx->ops->kind == FORGE_BACKEND_CUDA &&
        layer->cfg.dtype != FORGE_F32)
        return forge_fail(FORGE_ERR_UNSUPPORTED,
                          "forge_layer_set_attention: the cuda backend's unfused path is fp32 only; a %s layer "
                          "runs flash attention",
                          forge_dtype_name(layer->cfg.dtype));
    layer->attention = path;
    return FORGE_OK;
}

forge_layer_config forge_layer_get_config(const forge_layer *layer) {
    forge_layer_config none = {0};
    return layer ? layer->cfg : none;
}

/* The cache must have been made for a layer of the same geometry and backend. */
static forge_status check_cache(const char *fn, const forge_layer *layer, const forge_kv_cache *cache) {
    const forge_layer_config *c = &layer->cfg;
    if (cache->ctx != layer->ctx)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: the cache belongs to another context than the layer", fn);
    if (cache->kv_heads != c->kv_heads || cache->head_dim != c->head_dim ||
        cache->max_seq != c->max_seq)
        return forge_fail(FORGE_ERR_SHAPE,
                          "%s: cache has kv_heads %d, head_dim %d, max_seq %d but the layer has "
                          "%d, %d, %d",
                          fn, cache->kv_heads, cache->head_dim, cache->max_seq, c->kv_heads,
                          c->head_dim, c->max_seq);
    if (cache->dtype != c->dtype)
        return forge_fail(FORGE_ERR_DTYPE, "%s: cache dtype %s differs from layer dtype %s", fn,
                          forge_dtype_name(cache->dtype), forge_dtype_name(c->dtype));
    return FORGE_OK;
}

forge_status forge_check_seq(const char *fn, const forge_seq *seqs, int i, int max_pos, const char *max_name,
                             int64_t *tokens) {
    const forge_seq *s = &seqs[i];
    if (s->n_tokens < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].n_tokens = %d is below 1", fn, i, s->n_tokens);
    if (s->pos0 < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: seqs[%d].pos0 = %d is negative", fn, i, s->pos0);
    if ((int64_t)s->pos0 + s->n_tokens > max_pos)
        return forge_fail(FORGE_ERR_CAPACITY, "%s: seqs[%d] reaches position %lld, past %s = %d", fn, i,
                          (long long)s->pos0 + s->n_tokens - 1, max_name, max_pos);
    if ((*tokens += s->n_tokens) > FORGE_MAX_DIM)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: the batch has more than %d tokens", fn, FORGE_MAX_DIM);
    return FORGE_OK;
}

forge_status forge_check_distinct(const char *fn, const forge_seq *seqs, int n_seqs, int n_slots, const char *what) {
    unsigned char *seen = calloc((size_t)n_slots, 1);
    if (!seen) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    forge_status st = FORGE_OK;
    for (int i = 0; i < n_seqs && st == FORGE_OK; i++) {
        if (seen[seqs[i].slot])
            st = forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s %d appears twice in the batch", fn, what, seqs[i].slot);
        seen[seqs[i].slot] = 1;
    }
    free(seen);
    return st;
}

/* Checks the batch; on success *total is the number of rows of x and y. */
static forge_status check_seqs(const char *fn, const forge_layer *layer, const forge_kv_cache *cache,
                               const forge_seq *seqs, int n_seqs, int *total) {
    int64_t tokens = 0;
    for (int i = 0; i < n_seqs; i++) {
        const forge_seq *s = &seqs[i];
        forge_status st = forge_check_seq(fn, seqs, i, layer->cfg.max_seq, "max_seq", &tokens);
        if (st != FORGE_OK) return st;
        if (cache) {
            if (s->slot < 0 || s->slot >= cache->slots)
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                                  "%s: seqs[%d].slot = %d is outside the cache's %d slots", fn, i,
                                  s->slot, cache->slots);
            if (s->pos0 > cache->len[s->slot])
                return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                                  "%s: seqs[%d].pos0 = %d but slot %d holds only %d positions",
                                  fn, i, s->pos0, s->slot, cache->len[s->slot]);
        }
    }
    forge_status st = cache ? forge_check_distinct(fn, seqs, n_seqs, cache->slots, "slot") : FORGE_OK;
    if (st == FORGE_OK) *total = (int)tokens;
    return st;
}

forge_status forge_check_forward(const char *fn, forge_layer *layer, forge_kv_cache *cache,
                                 const forge_seq *seqs, int n_seqs, const void *x, const void *y,
                                 int *total) {
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(seqs, fn);
    FORGE_CHECK_NOT_NULL(x, fn);
    FORGE_CHECK_NOT_NULL(y, fn);
    if (n_seqs < 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_seqs = %d is below 1", fn, n_seqs);
    forge_status st;
    if (cache && (st = check_cache(fn, layer, cache)) != FORGE_OK) return st;
    return check_seqs(fn, layer, cache, seqs, n_seqs, total);
}

void forge_commit_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                          int n_seqs, int timed) {
    if (cache)
        for (int i = 0; i < n_seqs; i++) cache->len[seqs[i].slot] = seqs[i].pos0 + seqs[i].n_tokens;
    if (layer->profiling) layer->has_timings = timed;
}

/* Recomputes the call on the CPU twin and records how far y is from it. */
static forge_status self_check(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                               int n_seqs, int total, const void *x, const void *y) {
    const forge_dtype dt = layer->cfg.dtype;
    const size_t n = (size_t)total * layer->cfg.hidden;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    void *raw = malloc(n * forge_dtype_size(dt));
    forge_status st = want && got && raw ? FORGE_OK
                                         : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "self-check: out of memory");
    if (st == FORGE_OK) st = forge_cpu_recompute(layer, cache, seqs, n_seqs, total, x, raw);
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

forge_status forge_run_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                               int n_seqs, int total, const void *x, void *y) {
    forge_context *ctx = layer->ctx;
    forge_stage failed = FORGE_STAGE_COUNT;
    forge_status st = ctx->ops->reserve ? ctx->ops->reserve(layer, cache, seqs, n_seqs, total)
                                        : FORGE_OK;
    if (st == FORGE_OK) st = ctx->ops->forward(layer, cache, seqs, n_seqs, total, x, y, &failed);
    if (st != FORGE_OK && failed < FORGE_STAGE_COUNT && ctx->fallback == FORGE_FALLBACK_CPU &&
        layer->cpu) {
        if (!ctx->fallback_logged) {
            fprintf(stderr, "forge: %s; falling back to the CPU (logged once)\n", forge_last_error());
            ctx->fallback_logged = 1;
        }
        ctx->fallback_counts[failed]++;
        void *y_host = malloc(forge_dtype_size(layer->cfg.dtype) * (size_t)total * layer->cfg.hidden);
        st = y_host ? forge_cpu_recompute(layer, cache, seqs, n_seqs, total, x, y_host)
                    : forge_fail(FORGE_ERR_OUT_OF_MEMORY, "fallback: out of memory");
        if (st == FORGE_OK) st = forge_cpu_copy_out(layer, cache, seqs, n_seqs, total, y_host, y);
        free(y_host);
    }
    if (st != FORGE_OK) return st;
    forge_commit_forward(layer, cache, seqs, n_seqs, 1);
    if (layer->selfcheck_fraction > 0.0 && layer->cpu) {
        layer->selfcheck.calls++;
        layer->selfcheck_credit += layer->selfcheck_fraction;
        if (layer->selfcheck_credit >= 1.0) {
            layer->selfcheck_credit -= 1.0;
            st = self_check(layer, cache, seqs, n_seqs, total, x, y);
        }
    }
    return st;
}

forge_status forge_layer_forward(forge_layer *layer, forge_kv_cache *cache, const forge_seq *seqs,
                                 int n_seqs, const void *x, void *y) {
    int total = 0;
    forge_status st = forge_check_forward("forge_layer_forward", layer, cache, seqs, n_seqs, x, y, &total);
    if (st != FORGE_OK) return st;
    return forge_run_forward(layer, cache, seqs, n_seqs, total, x, y);
}

forge_status forge_layer_set_selfcheck(forge_layer *layer, double fraction) {
    static const char fn[] = "forge_layer_set_selfcheck";
    FORGE_CHECK_NOT_NULL(layer, fn);
    if (!(fraction >= 0.0 && fraction <= 1.0))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: fraction = %g is outside [0, 1]", fn,
                          fraction);
    if (!layer->cpu)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the %s backend is itself the reference", fn,
                          forge_backend_name(layer->ctx->ops->kind));
    layer->selfcheck_fraction = fraction;
    layer->selfcheck_credit = 0.0;
    layer->selfcheck = (forge_selfcheck){0};
    return FORGE_OK;
}

forge_status forge_layer_get_selfcheck(const forge_layer *layer, forge_selfcheck *out) {
    FORGE_CHECK_NOT_NULL(layer, "forge_layer_get_selfcheck");
    FORGE_CHECK_NOT_NULL(out, "forge_layer_get_selfcheck");
    *out = layer->selfcheck;
    return FORGE_OK;
}

forge_status forge_layer_set_profiling(forge_layer *layer, int enabled) {
    FORGE_CHECK_NOT_NULL(layer, "forge_layer_set_profiling");
    layer->profiling = enabled != 0;
    return FORGE_OK;
}

forge_status forge_layer_last_timings(forge_layer *layer, double us[FORGE_STAGE_COUNT]) {
    static const char fn[] = "forge_layer_last_timings";
    FORGE_CHECK_NOT_NULL(layer, fn);
    FORGE_CHECK_NOT_NULL(us, fn);
    if (!layer->has_timings)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: no forward call has run with profiling on", fn);
    if (layer->ctx->ops->timings) return layer->ctx->ops->timings(layer, us);
    for (int i = 0; i < FORGE_STAGE_COUNT; i++) us[i] = layer->stage_us[i];
    return FORGE_OK;
}
