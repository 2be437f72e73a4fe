/* SPDX-License-Identifier: Apache-2.0 */
/* tok_config.c: the files beside tokenizer.json that a generation loop
 * reads (tokenizer_config.json's BOS and EOS tokens, generation_config.json's
 * EOS ids), and the vocabulary's lookups. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

forge_status tok_read_file(const char *fn, const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    forge_status st = f ? FORGE_OK : forge_fail(FORGE_ERR_IO, "%s: cannot open %s", fn, path);
    long size = -1;
    if (st == FORGE_OK && (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0))
        st = forge_fail(FORGE_ERR_IO, "%s: cannot read %s (not a regular file?)", fn, path);
    char *buf = st == FORGE_OK ? malloc((size_t)size + 1) : NULL;
    if (st == FORGE_OK && !buf) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory for %ld bytes", fn, size);
    if (st == FORGE_OK && fread(buf, 1, (size_t)size, f) != (size_t)size)
        st = forge_fail(FORGE_ERR_IO, "%s: cannot read %s", fn, path);
    if (f) fclose(f);
    if (st != FORGE_OK) {
        free(buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf, *len = (size_t)size;
    return FORGE_OK;
}

/* dir/name parsed, or NULL where the file is absent; a file there that is
 * not a JSON object is an error. */
static forge_status read_json(const char *fn, const char *dir, const char *name, cJSON **out) {
    *out = NULL;
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n), *text = NULL;
    size_t len;
    if (!path) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    snprintf(path, n, "%s/%s", dir, name);
    FILE *probe = fopen(path, "rb");
    forge_status st = FORGE_OK;
    if (probe) {
        fclose(probe);
        st = tok_read_file(fn, path, &text, &len);
        if (st == FORGE_OK && !cJSON_IsObject(*out = cJSON_ParseWithLength(text, len))) {
            cJSON_Delete(*out), *out = NULL;
            st = forge_fail(FORGE_ERR_FORMAT, "%s: %s is not a JSON object", fn, path);
        }
    }
    free(text);
    free(path);
    return st;
}

/* A token of tokenizer_config.json ("<s>", or {"content": "<s>", ...}) as
 * an id: -1 where it is absent or null; an error where it names no token. */
static forge_status token_entry(const forge_tokenizer *t, const char *fn, const cJSON *config, const char *key,
                                int32_t *id) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(config, key);
    if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
    *id = -1;
    if (!e || cJSON_IsNull(e)) return FORGE_OK;
    if (!cJSON_IsString(e)) return forge_fail(FORGE_ERR_FORMAT, "%s: tokenizer_config.json's %s is not a token", fn, key);
    *id = tok_vocab_find(&t->vocab, e->valuestring, (int)strlen(e->valuestring));
    if (*id < 0)
        return forge_fail(FORGE_ERR_FORMAT, "%s: tokenizer_config.json's %s \"%s\" is not in the vocabulary", fn, key,
                          e->valuestring);
    return FORGE_OK;
}

static int valid_id(const forge_tokenizer *t, const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < t->vocab_size &&
           v->valuedouble == (int)v->valuedouble;
}

forge_status tok_read_configs(forge_tokenizer *t, const char *fn, const char *dir) {
    forge_special_ids *s = &t->specials;
    *s = (forge_special_ids){.bos = -1, .eos = -1};
    cJSON *config, *generation;
    forge_status st = read_json(fn, dir, "tokenizer_config.json", &config);
    if (st == FORGE_OK && config) st = token_entry(t, fn, config, "bos_token", &s->bos);
    if (st == FORGE_OK && config) st = token_entry(t, fn, config, "eos_token", &s->eos);
    cJSON_Delete(config);
    if (st == FORGE_OK) st = read_json(fn, dir, "generation_config.json", &generation);
    if (st != FORGE_OK) return st;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(generation, "eos_token_id"), *v;
    if (cJSON_IsArray(eos)) {
        cJSON_ArrayForEach(v, eos) {
            if (!valid_id(t, v)) st = forge_fail(FORGE_ERR_FORMAT, "%s: generation_config.json's eos_token_id holds no id", fn);
            else if (s->n_eos == FORGE_MAX_EOS)
                st = forge_fail(FORGE_ERR_UNSUPPORTED, "%s: generation_config.json lists more than %d eos ids", fn,
                                FORGE_MAX_EOS);
            if (st != FORGE_OK) break;
            s->eos_ids[s->n_eos++] = v->valueint;
        }
    } else if (eos && !cJSON_IsNull(eos)) {
        if (valid_id(t, eos)) s->eos_ids[s->n_eos++] = eos->valueint;
        else st = forge_fail(FORGE_ERR_FORMAT, "%s: generation_config.json's eos_token_id is no id", fn);
    }
    cJSON_Delete(generation);
    if (st == FORGE_OK && s->n_eos == 0 && s->eos >= 0) s->eos_ids[s->n_eos++] = s->eos;
    return st;
}

forge_status forge_tokenizer_special_ids(const forge_tokenizer *t, forge_special_ids *out) {
    FORGE_CHECK_NAMED(t, "tokenizer", "forge_tokenizer_special_ids");
    FORGE_CHECK_NOT_NULL(out, "forge_tokenizer_special_ids");
    *out = t->specials;
    return FORGE_OK;
}

const char *forge_tokenizer_piece(const forge_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->vocab.n ? t->vocab.piece[id] : NULL;
}

int32_t forge_tokenizer_token_id(const forge_tokenizer *t, const char *piece) {
    return t && piece ? tok_vocab_find(&t->vocab, piece, (int)strlen(piece)) : -1;
}
