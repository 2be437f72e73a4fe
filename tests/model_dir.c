/* SPDX-License-Identifier: Apache-2.0 */
/* model_dir.c: tiny model directories for the tests (model_dir.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_dir.h"
#include "util/dtype.h"

static float *add_tensor(md_weights *w, ref_rng *r, const char *name, int64_t d0, int64_t d1, double scale, double mean,
                         forge_dtype dtype) {
    const size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *v = malloc(sizeof *v * n);
    assert_non_null(v);
    ref_rng_fill(r, v, n, scale);
    for (size_t i = 0; i < n; i++) v[i] += (float)mean;
    forge_round_to(dtype, v, n);
    w->names[w->n] = strdup(name);
    w->data[w->n] = v;
    w->shape[w->n][0] = d0, w->shape[w->n][1] = d1;
    w->n++;
    return v;
}

void md_make_weights(md_weights *w, const md_spec *s, const forge_model_config *cfg, uint64_t seed) {
    memset(w, 0, sizeof *w);
    w->cfg = *cfg;
    const int cap = 16 * s->layers + 8;
    w->names = calloc((size_t)cap, sizeof *w->names);
    w->data = calloc((size_t)cap, sizeof *w->data);
    w->shape = calloc((size_t)cap, sizeof *w->shape);
    w->blocks = calloc((size_t)s->layers, sizeof *w->blocks);
    assert_true(w->names && w->data && w->shape && w->blocks);
    ref_rng r = ref_rng_seed(seed);
    const int64_t H = s->hidden, I = s->inter, q = (int64_t)s->heads * s->head_dim, kv = (int64_t)s->kv_heads * s->head_dim;
    const forge_dtype dt = s->file_dtype;
    char name[96];
    for (int l = 0; l < s->layers; l++) {
        ref_block *b = &w->blocks[l];
#define T(suffix, d0, d1, scale, mean) \
    (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), add_tensor(w, &r, name, d0, d1, scale, mean, dt))
        b->attn_norm = T("input_layernorm.weight", H, 0, 0.1, 1.0);
        b->mlp_norm = T("post_attention_layernorm.weight", H, 0, 0.1, 1.0);
        b->attn.q_proj = T("self_attn.q_proj.weight", q, H, 1 / sqrt((double)H), 0);
        b->attn.k_proj = T("self_attn.k_proj.weight", kv, H, 1 / sqrt((double)H), 0);
        b->attn.v_proj = T("self_attn.v_proj.weight", kv, H, 1 / sqrt((double)H), 0);
        b->attn.o_proj = T("self_attn.o_proj.weight", H, q, 1 / sqrt((double)q), 0);
        if (cfg->bias & FORGE_BIAS_Q) b->attn.q_bias = T("self_attn.q_proj.bias", q, 0, 0.1, 0);
        if (cfg->bias & FORGE_BIAS_K) b->attn.k_bias = T("self_attn.k_proj.bias", kv, 0, 0.1, 0);
        if (cfg->bias & FORGE_BIAS_V) b->attn.v_bias = T("self_attn.v_proj.bias", kv, 0, 0.1, 0);
        if (cfg->bias & FORGE_BIAS_O) b->attn.o_bias = T("self_attn.o_proj.bias", H, 0, 0.1, 0);
        if (cfg->qk_norm) {
            b->attn.q_norm = T("self_attn.q_norm.weight", s->head_dim, 0, 0.1, 1.0);
            b->attn.k_norm = T("self_attn.k_norm.weight", s->head_dim, 0, 0.1, 1.0);
        }
        b->gate = T("mlp.gate_proj.weight", I, H, 1 / sqrt((double)H), 0);
        b->up = T("mlp.up_proj.weight", I, H, 1 / sqrt((double)H), 0);
        b->down = T("mlp.down_proj.weight", H, I, 1 / sqrt((double)I), 0);
#undef T
    }
    w->ref.embed = add_tensor(w, &r, "model.embed_tokens.weight", s->vocab, H, 1.0, 0, dt);
    w->ref.final_norm = add_tensor(w, &r, "model.norm.weight", H, 0, 0.1, 1.0, dt);
    w->ref.lm_head = s->tie ? w->ref.embed : add_tensor(w, &r, "lm_head.weight", s->vocab, H, 1 / sqrt((double)H), 0, dt);
    w->ref.blocks = w->blocks;
}

void md_free_weights(md_weights *w) {
    for (int i = 0; i < w->n; i++) free(w->names[i]), free(w->data[i]);
    free(w->names), free(w->data), free(w->shape), free(w->blocks);
}

/* The tensors [from, to) of w into path, in the file's dtype. */
static void write_file(const md_weights *w, const char *path, int from, int to, forge_dtype dt) {
    forge_tensor *t = calloc((size_t)(to - from), sizeof *t);
    void **bufs = calloc((size_t)(to - from), sizeof *bufs);
    assert_true(t && bufs);
    for (int i = from; i < to; i++) {
        const size_t n = (size_t)w->shape[i][0] * (size_t)(w->shape[i][1] ? w->shape[i][1] : 1);
        bufs[i - from] = malloc(n * forge_dtype_size(dt));
        assert_non_null(bufs[i - from]);
        forge_convert(bufs[i - from], dt, w->data[i], FORGE_F32, n);
        t[i - from] = (forge_tensor){w->names[i], dt, w->shape[i][1] ? 2 : 1, {w->shape[i][0], w->shape[i][1]},
                                     bufs[i - from], n * forge_dtype_size(dt)};
    }
    TL_OK(forge_st_write(path, t, to - from, NULL, 0));
    for (int i = 0; i < to - from; i++) free(bufs[i]);
    free(bufs), free(t);
}

void md_write_text(const char *dir, const char *name, const char *text) {
    tl_write_file(dir, name, text, strlen(text));
}

void md_write_config(const char *dir, const md_spec *s) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"architectures\": [\"%s\"]%s, \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d,"
             " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,"
             " \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0,"
             " \"hidden_act\": \"silu\", \"tie_word_embeddings\": %s, \"torch_dtype\": \"float32\"%s}",
             s->arch, s->extra, s->vocab, s->hidden, s->inter, s->layers, s->heads, s->kv_heads, s->head_dim, s->max_pos,
             s->tie ? "true" : "false",
             s->llama3_scaling ? ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\":"
                                 " 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}"
                               : "");
    md_write_text(dir, "config.json", text);
}

void md_write_model(const char *dir, const md_spec *s, const md_weights *w) {
    md_write_config(dir, s);
    char path[256];
    if (!s->shards) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_file(w, path, 0, w->n, s->file_dtype);
        return;
    }
    const int half = w->n / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    write_file(w, path, 0, half, s->file_dtype);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_file(w, path, half, w->n, s->file_dtype);
    size_t cap = 256 + (size_t)w->n * 96, len = 0;
    char *index = malloc(cap);
    assert_non_null(index);
    len += (size_t)snprintf(index + len, cap - len, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < w->n; i++)
        len += (size_t)snprintf(index + len, cap - len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                                w->names[i], i < half ? 1 : 2);
    snprintf(index + len, cap - len, "}}");
    md_write_text(dir, "model.safetensors.index.json", index);
    free(index);
}


char *md_temp_dir(void) {
    char *dir = strdup("/tmp/forge-model-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

void md_remove_dir(char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

void md_model_write(md_model *mm, const md_spec *s, uint64_t seed) {
    mm->dir = md_temp_dir();
    md_write_config(mm->dir, s);
    TL_OK(forge_model_config_read(mm->dir, &mm->cfg));
    md_make_weights(&mm->w, s, &mm->cfg, seed);
    md_write_model(mm->dir, s, &mm->w);
    mm->ctx = NULL, mm->m = NULL;
}

forge_status md_model_open_split(md_model *mm, const md_spec *s, uint64_t seed, forge_backend backend, int max_seqs,
                                 int max_tokens, int ranks) {
    md_model_write(mm, s, seed);
    TL_OK(forge_context_create(backend, &mm->ctx));
    const forge_model_options o = {FORGE_F32, max_seqs, max_tokens, 0, 0, ranks};
    return forge_model_load(mm->ctx, mm->dir, &o, &mm->m);
}

void md_model_open(md_model *mm, const md_spec *s, uint64_t seed, forge_backend backend, int max_seqs, int max_tokens) {
    TL_OK(md_model_open_split(mm, s, seed, backend, max_seqs, max_tokens, 0));
}

void md_model_close(md_model *mm) {
    forge_model_free(mm->m);
    forge_context_destroy(mm->ctx);
    md_free_weights(&mm->w);
    md_remove_dir(mm->dir);
}
