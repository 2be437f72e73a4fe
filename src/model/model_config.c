/* SPDX-License-Identifier: Apache-2.0 */
/* model_config.c: a Hugging Face config.json read into a forge_model_config.
 * Each field that changes the math is either read or refused by name: an
 * architecture, activation, RoPE scaling, MLP bias or partial rotation
 * Forge does not implement is FORGE_ERR_UNSUPPORTED, never ignored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file.h"
#include "model.h"

static const char fn[] = "forge_model_config_read";

static const cJSON *item(const cJSON *c, const char *name) { return cJSON_GetObjectItemCaseSensitive(c, name); }

/* A whole number in [lo, hi] (dflt when absent and dflt >= lo). */
static forge_status read_int(const cJSON *c, const char *name, int lo, int hi, int dflt, int *out) {
    const cJSON *v = item(c, name);
    if ((!v || cJSON_IsNull(v)) && dflt >= lo) {
        *out = dflt;
        return FORGE_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's %s is %s, not a whole number in [%d, %d]", fn, name,
                          v ? "out of range or not a number" : "missing", lo, hi);
    *out = (int)v->valuedouble;
    return FORGE_OK;
}

/* A positive finite number (dflt when absent and dflt > 0). */
static forge_status read_float(const cJSON *c, const char *name, float dflt, float *out) {
    const cJSON *v = item(c, name);
    if ((!v || cJSON_IsNull(v)) && dflt > 0) {
        *out = dflt;
        return FORGE_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite((float)v->valuedouble))
        return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's %s is %s, not a positive number", fn, name,
                          v ? "not positive or not a number" : "missing");
    *out = (float)v->valuedouble;
    return FORGE_OK;
}

static int is_true(const cJSON *c, const char *name) { return cJSON_IsTrue(item(c, name)); }

static forge_status unsupported(const char *what, const char *value) {
    return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: config.json's %s %s is not implemented", fn, what, value);
}

static forge_status read_arch(const cJSON *root, forge_model_config *c) {
    static const struct { const char *name; forge_arch arch; } known[] = {
        {"LlamaForCausalLM", FORGE_ARCH_LLAMA},
        {"Qwen2ForCausalLM", FORGE_ARCH_QWEN2},
        {"Qwen3ForCausalLM", FORGE_ARCH_QWEN3},
        {"MistralForCausalLM", FORGE_ARCH_MISTRAL},
    };
    const cJSON *list = item(root, "architectures");
    const cJSON *first = cJSON_IsArray(list) ? list->child : NULL;
    if (!cJSON_IsString(first) || first->next)
        return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's architectures is not a list of one name", fn);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(first->valuestring, known[i].name) == 0) {
            c->arch = known[i].arch;
            return FORGE_OK;
        }
    return unsupported("architecture", first->valuestring);
}

/* RoPE's theta and scaling: config.json's rope_theta and rope_scaling, or
 * (transformers 5) its rope_parameters holding both. The scaling is null,
 * "default", or Llama 3.1's "llama3" (its "rope_type", or "type" in older
 * files). */
static forge_status read_rope(const cJSON *root, forge_model_config *c) {
    const cJSON *params = item(root, "rope_parameters");
    const cJSON *rs = cJSON_IsObject(params) ? params : item(root, "rope_scaling");
    forge_status st = read_float(cJSON_IsObject(params) ? params : root, "rope_theta", 10000.0f, &c->rope_theta);
    if (st != FORGE_OK || !rs || cJSON_IsNull(rs)) return st;
    const cJSON *type = item(rs, "rope_type");
    if (!type) type = item(rs, "type");
    if (!cJSON_IsObject(rs) || !cJSON_IsString(type))
        return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's rope_scaling has no rope_type", fn);
    forge_rope_scaling *s = &c->rope_scaling;
    if (strcmp(type->valuestring, "default") == 0) return FORGE_OK;
    if (strcmp(type->valuestring, "llama3") != 0) return unsupported("rope_scaling type", type->valuestring);
    s->type = FORGE_ROPE_SCALING_LLAMA3;
    st = read_float(rs, "factor", 0, &s->factor);
    if (st == FORGE_OK) st = read_float(rs, "low_freq_factor", 0, &s->low_freq_factor);
    if (st == FORGE_OK) st = read_float(rs, "high_freq_factor", 0, &s->high_freq_factor);
    if (st == FORGE_OK) st = read_int(rs, "original_max_position_embeddings", 1, 1 << 24, 0, &s->original_max_positions);
    if (st == FORGE_OK && !(s->high_freq_factor > s->low_freq_factor && s->factor >= 1))
        st = forge_fail(FORGE_ERR_FORMAT, "%s: config.json's rope_scaling needs factor >= 1 and high_freq_factor > "
                        "low_freq_factor", fn);
    return st;
}

/* The weights' dtype: "torch_dtype" (or "dtype" in newer files). */
static forge_status read_dtype(const cJSON *root, forge_model_config *c) {
    const cJSON *d = item(root, "torch_dtype");
    if (!d) d = item(root, "dtype");
    c->dtype = FORGE_F32;
    if (!d || cJSON_IsNull(d)) return FORGE_OK;
    if (!cJSON_IsString(d)) return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's torch_dtype is not a string", fn);
    if (strcmp(d->valuestring, "float32") == 0) c->dtype = FORGE_F32;
    else if (strcmp(d->valuestring, "bfloat16") == 0) c->dtype = FORGE_BF16;
    else if (strcmp(d->valuestring, "float16") == 0) c->dtype = FORGE_F16;
    else return unsupported("torch_dtype", d->valuestring);
    return FORGE_OK;
}

/* What no architecture here implements: another activation, an MLP bias,
 * partial rotation. */
static forge_status refuse_features(const cJSON *root) {
    const cJSON *act = item(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return unsupported("hidden_act", cJSON_IsString(act) ? act->valuestring : "(not a string)");
    if (is_true(root, "mlp_bias")) return unsupported("mlp_bias", "true");
    const cJSON *partial = item(root, "partial_rotary_factor");
    if (cJSON_IsNumber(partial) && partial->valuedouble != 1.0) return unsupported("partial_rotary_factor", "below 1");
    return FORGE_OK;
}

/* Which layers attend through a sliding window, as transformers decides:
 * Mistral's sliding_window holds for every layer; Qwen's only when
 * use_sliding_window is true, and then for the layers that layer_types
 * names "sliding_attention", or without that list for those from
 * max_window_layers (28 when absent) on; the window is 4096 tokens where
 * sliding_window is absent, none where it is null. Forge takes the windowed
 * layers as one run at the end. */
static forge_status read_windows(const cJSON *root, forge_model_config *c) {
    const int qwen = c->arch == FORGE_ARCH_QWEN2 || c->arch == FORGE_ARCH_QWEN3;
    c->sliding_window = 0, c->max_window_layers = 0;
    if (c->arch != FORGE_ARCH_MISTRAL && !(qwen && is_true(root, "use_sliding_window"))) return FORGE_OK;
    if (cJSON_IsNull(item(root, "sliding_window"))) return FORGE_OK; /* no window after all */
    /* transformers' default where the field is absent */
    forge_status st = read_int(root, "sliding_window", 1, 1 << 30, 4096, &c->sliding_window);
    if (st != FORGE_OK || !qwen) return st;
    const cJSON *types = item(root, "layer_types");
    if (!types || cJSON_IsNull(types)) {
        if ((st = read_int(root, "max_window_layers", 0, 1 << 30, 28, &c->max_window_layers)) != FORGE_OK) return st;
        if (c->max_window_layers > c->layers) c->max_window_layers = c->layers;
        return FORGE_OK;
    }
    if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != c->layers)
        return forge_fail(FORGE_ERR_FORMAT, "%s: config.json's layer_types is not a list of num_hidden_layers (%d) "
                          "names", fn, c->layers);
    c->max_window_layers = c->layers;
    int l = 0;
    for (const cJSON *t = types->child; t; t = t->next, l++) {
        const int sliding = cJSON_IsString(t) && strcmp(t->valuestring, "sliding_attention") == 0;
        if (!sliding && !(cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0))
            return unsupported("layer_types entry", cJSON_IsString(t) ? t->valuestring : "(not a string)");
        if (sliding && c->max_window_layers == c->layers) c->max_window_layers = l;
        if (!sliding && c->max_window_layers < c->layers)
            return unsupported("layer_types", "with full attention after a sliding layer");
    }
    return FORGE_OK;
}

forge_status model_config_parse(const cJSON *root, forge_model_config *out) {
    forge_model_config c = {0};
    forge_status st = read_arch(root, &c);
    if (st == FORGE_OK) st = read_int(root, "vocab_size", 1, 1 << 24, 0, &c.vocab_size);
    if (st == FORGE_OK) st = read_int(root, "hidden_size", 1, FORGE_MAX_DIM, 0, &c.hidden);
    if (st == FORGE_OK) st = read_int(root, "intermediate_size", 1, FORGE_MAX_DIM, 0, &c.intermediate);
    if (st == FORGE_OK) st = read_int(root, "num_hidden_layers", 1, 4096, 0, &c.layers);
    if (st == FORGE_OK) st = read_int(root, "num_attention_heads", 1, 4096, 0, &c.heads);
    if (st == FORGE_OK) st = read_int(root, "num_key_value_heads", 1, 4096, c.heads, &c.kv_heads);
    if (st == FORGE_OK) st = read_int(root, "head_dim", 1, 1024, c.hidden % c.heads ? 0 : c.hidden / c.heads, &c.head_dim);
    if (st == FORGE_OK) st = read_int(root, "max_position_embeddings", 1, 1 << 24, 0, &c.max_positions);
    if (st == FORGE_OK) st = read_float(root, "rms_norm_eps", 1e-6f, &c.norm_eps);
    if (st == FORGE_OK) st = read_rope(root, &c);
    if (st == FORGE_OK) st = read_dtype(root, &c);
    if (st == FORGE_OK) st = refuse_features(root);
    if (st == FORGE_OK) st = read_windows(root, &c);
    if (st != FORGE_OK) return st;
    c.tie_embeddings = is_true(root, "tie_word_embeddings");
    if (c.arch == FORGE_ARCH_QWEN2) c.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V;
    else if (is_true(root, "attention_bias")) c.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O;
    c.qk_norm = c.arch == FORGE_ARCH_QWEN3;
    if ((st = model_config_check(&c, fn)) != FORGE_OK) return st;
    *out = c;
    return FORGE_OK;
}

/* A whole number of the config in [lo, hi], named as config.json names it. */
static forge_status check_int(const char *call, const char *name, int v, int lo, int hi) {
    if (v >= lo && v <= hi) return FORGE_OK;
    return forge_fail(FORGE_ERR_FORMAT, "%s: %s = %d is outside [%d, %d]", call, name, v, lo, hi);
}

forge_status model_config_check(const forge_model_config *c, const char *call) {
    const struct { const char *name; int v, lo, hi; } ints[] = {
        {"vocab_size", c->vocab_size, 1, 1 << 24},         {"hidden_size", c->hidden, 1, FORGE_MAX_DIM},
        {"intermediate_size", c->intermediate, 1, FORGE_MAX_DIM}, {"num_hidden_layers", c->layers, 1, 4096},
        {"num_attention_heads", c->heads, 1, 4096},        {"num_key_value_heads", c->kv_heads, 1, 4096},
        {"head_dim", c->head_dim, 1, 1024},                {"max_position_embeddings", c->max_positions, 1, 1 << 24},
        {"sliding_window", c->sliding_window, 0, 1 << 30},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        forge_status st = check_int(call, ints[i].name, ints[i].v, ints[i].lo, ints[i].hi);
        if (st != FORGE_OK) return st;
    }
    if (c->max_window_layers < 0 || c->max_window_layers > c->layers)
        return forge_fail(FORGE_ERR_FORMAT, "%s: max_window_layers = %d is outside [0, num_hidden_layers = %d]", call,
                          c->max_window_layers, c->layers);
    if ((unsigned)c->arch > FORGE_ARCH_MISTRAL)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: arch %d is not a forge_arch", call, (int)c->arch);
    if (c->heads % c->kv_heads != 0)
        return forge_fail(FORGE_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                          call, c->heads, c->kv_heads);
    if (c->head_dim % 2 != 0)
        return forge_fail(FORGE_ERR_FORMAT, "%s: head_dim %d is odd; RoPE needs it even", call, c->head_dim);
    if (!(c->norm_eps > 0 && isfinite(c->norm_eps)) || !(c->rope_theta > 0 && isfinite(c->rope_theta)))
        return forge_fail(FORGE_ERR_FORMAT, "%s: rms_norm_eps %g and rope_theta %g must be positive", call,
                          (double)c->norm_eps, (double)c->rope_theta);
    return FORGE_OK;
}

forge_status forge_model_config_read(const char *dir, forge_model_config *out) {
    FORGE_CHECK_NOT_NULL(dir, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    cJSON *root;
    forge_status st = forge_read_json(fn, dir, "config.json", &root);
    if (st == FORGE_OK && !root) st = forge_fail(FORGE_ERR_IO, "%s: %s has no config.json", fn, dir);
    if (st == FORGE_OK) st = model_config_parse(root, out);
    cJSON_Delete(root);
    return st;
}
