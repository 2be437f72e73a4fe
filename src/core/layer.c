/* SPDX-License-Identifier: Apache-2.0 */
/* layer.c: layer configs and their checks, layer handles and their
 * settings (attention path, paged split, self-check, profiling). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"
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
    const forge_rope_scaling *rs = &cfg->rope_scaling;
    if (rs->type != FORGE_ROPE_SCALING_NONE && rs->type != FORGE_ROPE_SCALING_LLAMA3)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: unknown rope_scaling.type %d", fn, (int)rs->type);
    if (rs->type == FORGE_ROPE_SCALING_LLAMA3 &&
        (!(rs->factor >= 1.0f) || isinf(rs->factor) || !(rs->low_freq_factor > 0.0f) ||
         !(rs->high_freq_factor > rs->low_freq_factor) || isinf(rs->high_freq_factor) || rs->original_max_positions < 1))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: rope_scaling llama3 needs factor >= 1, 0 < low_freq_factor < high_freq_factor "
                          "(finite) and original_max_positions >= 1",
                          fn);
    if (cfg->qk_norm != 0 && cfg->qk_norm != 1)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: qk_norm = %d is neither 0 nor 1", fn, cfg->qk_norm);
    if (cfg->qk_norm && (!(cfg->norm_eps > 0.0f) || isinf(cfg->norm_eps)))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: norm_eps = %g must be positive and finite with qk_norm", fn,
                          (double)cfg->norm_eps);
    if (cfg->bias & ~(unsigned)(FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O))
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: unknown bias bits 0x%x", fn,
                          cfg->bias);
    if (forge_dtype_size(cfg->dtype) == 0)
        return forge_fail(FORGE_ERR_DTYPE, "%s: unknown dtype %d", fn, (int)cfg->dtype);
    return forge_check_score_options(fn, "", cfg->window, cfg->softcap);
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
    const struct { const char *name; const void *p; } norms[] = {{"q_norm", w->q_norm}, {"k_norm", w->k_norm}};
    for (int i = 0; i < 2; i++)
        if (cfg->qk_norm != (norms[i].p != NULL))
            return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: config.qk_norm is %d but weights->%s is %s", fn,
                              cfg->qk_norm, norms[i].name, norms[i].p ? "set" : "NULL");
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
    return forge_layer_make(ctx, cfg, weights, 1, out);
}

forge_status forge_layer_make(forge_context *ctx, const forge_layer_config *cfg, const forge_layer_weights *weights,
                              int twin, forge_layer **out) {
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
    if (twin && ctx->cpu && (st = forge_layer_make(ctx->cpu, cfg, weights, 0, &layer->cpu)) != FORGE_OK) {
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

forge_status forge_layer_set_paged_split(forge_layer *layer, int split_size) {
    FORGE_CHECK_NOT_NULL(layer, "forge_layer_set_paged_split");
    if (split_size < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "forge_layer_set_paged_split: split_size %d is negative",
                          split_size);
    layer->paged_split = split_size;
    return FORGE_OK;
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
