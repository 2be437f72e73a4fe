/* SPDX-License-Identifier: Apache-2.0 */
/* tok_config.c: the files beside tokenizer.json that a generation loop
 * reads (tokenizer_config.json's BOS and EOS tokens, generation_config.json's
 * EOS ids), and the vocabulary's lookups. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "file.h"
#include "tokenizer.h"

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
    forge_status st = forge_read_json(fn, dir, "tokenizer_config.json", &config);
    if (st == FORGE_OK && config) st = token_entry(t, fn, config, "bos_token", &s->bos);
    if (st == FORGE_OK && config) st = token_entry(t, fn, config, "eos_token", &s->eos);
    cJSON_Delete(config);
    if (st == FORGE_OK) st = forge_read_json(fn, dir, "generation_config.json", &generation);
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
