/* SPDX-License-Identifier: Apache-2.0 */
/* test_tokenizer.c: Forge's tokenizer against Hugging Face's tokenizers on
 * real tokenizer.json files (scripts/fetch-tokenizers.sh's cache): every id
 * of every text of tests/tokenizer/corpus.json, with and without special
 * tokens, as tests/tokenizer/fixtures/NAME.json holds them
 * (bench/tokenizer_fixtures.py made them with tokenizers itself), and the
 * same for the variants of tests/tokenizer/variants.json (real files with
 * components replaced: those no fetched file uses). Tokenizers of
 * components Forge does not implement must be refused by name. And bad
 * files and bad text: a clear error, nothing written.
 *
 *   test_tokenizer FIXTURES_DIR [CACHE_DIR]   (cache: $FORGE_TOKENIZERS or
 *                                             ~/.cache/forge/tokenizers)
 * Without the files it says skipped, unless the cache was named (test.sh
 * names it): then it fails. */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

static const char *g_fixtures, *g_cache;

/* Byte-level BPE (Llama 3, Qwen, GPT-2, DeepSeek) and SentencePiece-style
 * BPE (Llama 2's vocabulary, Gemma). */
static const char *const runs[] = {"llama3", "llama3_1", "qwen2_5", "qwen3", "gpt2", "deepseek_v3", "llama2", "gemma"};

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) free(buf), buf = NULL;
    fclose(f);
    if (buf) buf[n] = '\0', *len = (size_t)n;
    return buf;
}

static void path_of(char *out, size_t n, const char *dir, const char *name, const char *file) {
    snprintf(out, n, "%s/%s%s", dir, name, file);
}

/* Compares the ids of one case's text with its fixture's. */
static int check_ids(forge_tokenizer *tok, const char *name, int i, const cJSON *text, const cJSON *want, int special) {
    size_t n = 0;
    const size_t len = strlen(text->valuestring); /* the corpus has no NUL in its texts */
    forge_status st = forge_tokenizer_encode(tok, text->valuestring, len, special, NULL, 0, &n);
    if (st != FORGE_OK && st != FORGE_ERR_CAPACITY) {
        print_error("%s case %d: %s\n", name, i, forge_last_error());
        return 0;
    }
    int32_t *ids = malloc(sizeof *ids * (n + 1));
    assert_non_null(ids);
    size_t got = 0;
    if (n > 0) TL_OK(forge_tokenizer_encode(tok, text->valuestring, len, special, ids, n, &got));
    int ok = got == n && (size_t)cJSON_GetArraySize(want) == n;
    for (size_t j = 0; ok && j < n; j++) ok = cJSON_GetArrayItem(want, (int)j)->valueint == ids[j];
    if (!ok) {
        print_error("%s case %d (%s special tokens): %zu ids, Hugging Face %d; text \"%.60s\"\n  forge:", name, i,
                    special ? "with" : "without", n, cJSON_GetArraySize(want), text->valuestring);
        for (size_t j = 0; j < n && j < 24; j++) print_error(" %d", ids[j]);
        print_error("\n  hf:   ");
        for (int j = 0; j < cJSON_GetArraySize(want) && j < 24; j++) print_error(" %d", cJSON_GetArrayItem(want, j)->valueint);
        print_error("\n");
    }
    free(ids);
    return ok;
}

/* 1 when s holds whole UTF-8 characters only (by their lead bytes' lengths). */
static int whole_characters(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        const size_t w = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        if (w == 0 || i + w > n) return 0;
        for (size_t k = 1; k < w; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80) return 0;
        i += w;
    }
    return 1;
}

/* The case's ids pushed one at a time through a stream: the texts put
 * together are Hugging Face's decode, and no text ends inside a UTF-8
 * character. */
static int check_stream(forge_tokenizer *tok, const char *name, int i, const cJSON *ids, const cJSON *want) {
    forge_token_stream *stream;
    TL_OK(forge_token_stream_create(tok, 0, &stream));
    const size_t cap = strlen(want->valuestring) + 1;
    char *all = calloc(1, cap + 64);
    assert_non_null(all);
    size_t len = 0;
    int ok = 1;
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) {
        const char *text;
        TL_OK(forge_token_stream_push(stream, id->valueint, &text));
        const size_t n = strlen(text);
        ok = ok && whole_characters(text, n);
        if (len + n > cap) ok = 0;
        else memcpy(all + len, text, n), len += n;
    }
    ok = ok && len == cap - 1 && memcmp(all, want->valuestring, len) == 0;
    if (!ok) print_error("%s case %d: streamed \"%.60s\", Hugging Face \"%.60s\"\n", name, i, all, want->valuestring);
    free(all);
    forge_token_stream_free(stream);
    return ok;
}

/* Compares the decode of the case's ids with its fixture's. */
static int check_decode(forge_tokenizer *tok, const char *name, int i, const cJSON *ids, const cJSON *want, int skip) {
    const int n = cJSON_GetArraySize(ids);
    int32_t *v = malloc(sizeof *v * (size_t)(n + 1));
    assert_non_null(v);
    for (int j = 0; j < n; j++) v[j] = cJSON_GetArrayItem(ids, j)->valueint;
    size_t len = 0;
    forge_status st = forge_tokenizer_decode(tok, v, (size_t)n, skip, NULL, 0, &len);
    assert_int_equal(st, FORGE_ERR_CAPACITY); /* the NUL alone needs a byte */
    char *text = malloc(len + 1);
    assert_non_null(text);
    TL_OK(forge_tokenizer_decode(tok, v, (size_t)n, skip, text, len + 1, &len));
    const int ok = len == strlen(want->valuestring) && memcmp(text, want->valuestring, len) == 0;
    if (!ok)
        print_error("%s case %d: decode%s gives \"%.60s\", Hugging Face \"%.60s\"\n", name, i,
                    skip ? " skipping special tokens" : "", text, want->valuestring);
    free(text);
    free(v);
    return ok;
}

/* Every case of the fixture NAME.json against the tokenizer at path: ids
 * with and without special tokens, decodes with and without them, and the
 * stream; the number of differences. */
static int check_fixture(const char *name, const char *path, int *cases) {
    char fixture[1024];
    size_t len;
    path_of(fixture, sizeof fixture, g_fixtures, name, ".json");
    char *text = slurp(fixture, &len);
    assert_non_null(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    assert_non_null(doc);
    forge_tokenizer *tok = NULL;
    const double t0 = tl_now_s();
    TL_OK(forge_tokenizer_load(path, &tok));
    const double load_s = tl_now_s() - t0;
    assert_int_equal(forge_tokenizer_vocab_size(tok), cJSON_GetObjectItem(doc, "vocab_size")->valueint);
    const cJSON *c;
    int i = 0, failures = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "cases")) {
        const cJSON *t = cJSON_GetObjectItem(c, "text"), *ids = cJSON_GetObjectItem(c, "ids");
        failures += !check_ids(tok, name, i, t, ids, 1);
        failures += !check_ids(tok, name, i, t, cJSON_GetObjectItem(c, "ids_no_special"), 0);
        failures += !check_decode(tok, name, i, ids, cJSON_GetObjectItem(c, "decoded"), 0);
        failures += !check_decode(tok, name, i, ids, cJSON_GetObjectItem(c, "decoded_skip_special"), 1);
        failures += !check_stream(tok, name, i, ids, cJSON_GetObjectItem(c, "decoded"));
        *cases += 5, i++;
    }
    print_message("%s: %d texts, loaded in %.2f s\n", name, i, load_s);
    forge_tokenizer_free(tok);
    cJSON_Delete(doc);
    return failures;
}

static void test_matches_hugging_face(void **state) {
    (void)state;
    int failures = 0, cases = 0;
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char path[1024];
        path_of(path, sizeof path, g_cache, runs[r], "/tokenizer.json");
        failures += check_fixture(runs[r], path, &cases);
    }
    if (failures) fail_msg("%d of %d encodings and decodings differ from Hugging Face's", failures, cases);
}

/* The variants of tests/tokenizer/variants.json, for the components that no
 * fetched file uses: a real file with some of its components replaced,
 * written as bench/tokenizer_fixtures.py wrote it for Hugging Face. */
static void test_variants_match_hugging_face(void **state) {
    (void)state;
    char path[1200];
    size_t len;
    snprintf(path, sizeof path, "%s/../variants.json", g_fixtures);
    char *text = slurp(path, &len);
    assert_non_null(text);
    cJSON *variants = cJSON_Parse(text);
    free(text);
    assert_true(cJSON_IsArray(variants));
    const cJSON *v;
    int failures = 0, cases = 0;
    cJSON_ArrayForEach(v, variants) {
        const char *name = cJSON_GetObjectItem(v, "name")->valuestring;
        path_of(path, sizeof path, g_cache, cJSON_GetObjectItem(v, "base")->valuestring, "/tokenizer.json");
        assert_non_null(text = slurp(path, &len));
        cJSON *doc = cJSON_Parse(text);
        free(text);
        assert_non_null(doc);
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItem(v, "replace")) {
            cJSON_DeleteItemFromObjectCaseSensitive(doc, r->string);
            cJSON_AddItemToObject(doc, r->string, cJSON_Duplicate(r, 1));
        }
        char dir[] = "/tmp/forge-variant-XXXXXX";
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        char *json = cJSON_PrintUnformatted(doc);
        FILE *f = fopen(path, "wb");
        assert_non_null(json);
        assert_non_null(f);
        assert_int_equal(fwrite(json, 1, strlen(json), f), strlen(json));
        fclose(f);
        failures += check_fixture(name, path, &cases);
        remove(path);
        rmdir(dir);
        cJSON_free(json);
        cJSON_Delete(doc);
    }
    cJSON_Delete(variants);
    if (failures) fail_msg("%d of %d encodings and decodings differ from Hugging Face's", failures, cases);
}

/* A tokenizer.json written into a directory of its own (the loader also
 * reads the config files beside it), loaded. */
static forge_status load_text(const char *json, forge_tokenizer **tok) {
    char dir[] = "/tmp/forge-tokenizer-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    const forge_status st = forge_tokenizer_load(path, tok);
    remove(path);
    rmdir(dir);
    return st;
}

static const char tiny[] =
    "{\"added_tokens\": [{\"id\": 5, \"content\": \"<s>\", \"special\": true, \"normalized\": false}],"
    " \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
    " \"use_regex\": true}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\":"
    " {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\":"
    " [5]}}}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1,"
    " \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4}, \"merges\": [\"a b\", \"\\u0120 ab\"]}}";

static void test_bad_files(void **state) {
    (void)state;
    forge_tokenizer *tok = NULL;
    TL_OK(load_text(tiny, &tok));
    int32_t ids[8];
    size_t n = 0;
    TL_OK(forge_tokenizer_encode(tok, "ab ab", 5, 1, ids, 8, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 5), assert_int_equal(ids[1], 2), assert_int_equal(ids[2], 4);
    forge_tokenizer_free(tok);

    const struct { const char *json, *names; forge_status st; } cases[] = {
        {"{\"model\": ", "JSON object", FORGE_ERR_FORMAT},
        {"[1, 2]", "JSON object", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"WordPiece\"}}", "WordPiece", FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "vocab", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a zz\"]}}", "zz", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}", "dropout",
         FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": "
         "\"StripAccents\"}}", "StripAccents", FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
         "\"Whitespace\"}}", "Whitespace", FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": "
         "\"WordPiece\"}}", "WordPiece", FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
         "\"Punctuation\", \"behavior\": \"Sideways\"}}", "Sideways", FORGE_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
         "\"Metaspace\", \"replacement\": \"ab\"}}", "replacement", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
         "\"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"sometimes\"}}", "prepend_scheme", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": "
         "\"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}}", "add_prefix_space", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\xff\": 0}, \"merges\": []}}", "UTF-8", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": "
         "\"Replace\", \"pattern\": {\"Regex\": \"[\"}, \"content\": \"\"}}", "normalizer's pattern", FORGE_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": "
         "\"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}", "pattern", FORGE_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tok = NULL;
        assert_int_equal(load_text(cases[i].json, &tok), cases[i].st);
        assert_null(tok);
        if (!strstr(forge_last_error(), cases[i].names))
            fail_msg("case %zu: \"%s\" does not name %s", i, forge_last_error(), cases[i].names);
    }
    assert_int_equal(forge_tokenizer_load("/nonexistent/tokenizer.json", &tok), FORGE_ERR_IO);
}

static void test_bad_text(void **state) {
    (void)state;
    forge_tokenizer *tok = NULL;
    TL_OK(load_text(tiny, &tok));
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 99;
    assert_int_equal(forge_tokenizer_encode(tok, "ab\xff", 3, 0, ids, 4, &n), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "byte 2"));
    assert_int_equal(forge_tokenizer_encode(tok, "ab ab ab", 8, 1, ids, 2, &n), FORGE_ERR_CAPACITY);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(ids[i], -7);
    assert_int_equal(forge_tokenizer_encode(NULL, "a", 1, 0, ids, 4, &n), FORGE_ERR_INVALID_ARGUMENT);
    TL_OK(forge_tokenizer_encode(tok, NULL, 0, 0, NULL, 0, &n));
    assert_int_equal(n, 0);
    /* decode: an id outside the vocabulary, a buffer too small, lossy UTF-8 */
    char out[16];
    memset(out, '#', sizeof out);
    assert_int_equal(forge_tokenizer_decode(tok, (int32_t[]){2, 6}, 2, 0, out, sizeof out, &n), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "ids[1] = 6"));
    assert_int_equal(forge_tokenizer_decode(tok, (int32_t[]){5, 2, 4}, 3, 0, out, 8, &n), FORGE_ERR_CAPACITY);
    assert_int_equal(n, 8);
    assert_int_equal(out[0], '#');
    TL_OK(forge_tokenizer_decode(tok, (int32_t[]){5, 2, 4}, 3, 0, out, sizeof out, &n));
    assert_string_equal(out, "<s>ab ab");
    TL_OK(forge_tokenizer_decode(tok, (int32_t[]){5, 2, 4}, 3, 1, out, sizeof out, &n));
    assert_string_equal(out, "ab ab");
    forge_tokenizer_free(tok);
}

/* BOS and EOS from each model's tokenizer_config.json (a string, an
 * AddedToken object, or null), the EOS list of a generation_config.json
 * beside it, and the vocabulary's lookups. */
static void test_special_ids(void **state) {
    (void)state;
    static const struct { const char *name; int bos, eos; } want[] = {
        {"llama3", 128000, 128001}, {"llama3_1", 128000, 128009}, {"qwen2_5", -1, 151645}, {"qwen3", -1, 151645},
        {"gpt2", 50256, 50256},     {"deepseek_v3", 0, 1},        {"llama2", 1, 2},        {"gemma", 2, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char path[1024];
        path_of(path, sizeof path, g_cache, want[i].name, "");
        forge_tokenizer *tok;
        forge_special_ids ids;
        TL_OK(forge_tokenizer_load(path, &tok));
        TL_OK(forge_tokenizer_special_ids(tok, &ids));
        if (ids.bos != want[i].bos || ids.eos != want[i].eos || ids.n_eos != 1 || ids.eos_ids[0] != want[i].eos)
            fail_msg("%s: bos %d, eos %d (%d listed), want %d, %d", want[i].name, ids.bos, ids.eos, ids.n_eos,
                     want[i].bos, want[i].eos);
        forge_tokenizer_free(tok);
    }
    /* a model directory with generation_config.json: its list of EOS ids */
    char dir[] = "/tmp/forge-model-XXXXXX", path[1100], target[1100];
    assert_non_null(mkdtemp(dir));
    path_of(target, sizeof target, g_cache, "llama3_1", "/tokenizer.json");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]}", f);
    fclose(f);
    forge_tokenizer *tok;
    forge_special_ids ids;
    TL_OK(forge_tokenizer_load(dir, &tok));
    TL_OK(forge_tokenizer_special_ids(tok, &ids));
    assert_int_equal(ids.n_eos, 3);
    assert_int_equal(ids.eos_ids[0], 128001), assert_int_equal(ids.eos_ids[2], 128009);
    assert_int_equal(ids.bos, -1); /* no tokenizer_config.json here */
    assert_string_equal(forge_tokenizer_piece(tok, 9906), "Hello");
    assert_int_equal(forge_tokenizer_token_id(tok, "\xc4\xa0world"), 1917); /* " world" in ByteLevel's alphabet */
    assert_null(forge_tokenizer_piece(tok, -1));
    assert_int_equal(forge_tokenizer_token_id(tok, "no such token here"), -1);
    forge_tokenizer_free(tok);
    f = fopen(path, "w");
    fputs("{\"eos_token_id\": \"x\"}", f);
    fclose(f);
    tok = NULL;
    assert_int_equal(forge_tokenizer_load(dir, &tok), FORGE_ERR_FORMAT);
    assert_non_null(strstr(forge_last_error(), "eos_token_id"));
    assert_null(tok);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);
    rmdir(dir);
}

/* A small deterministic generator for the fuzz tests. */
static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* The files beside tokenizer.json on 1,500 mutations each
 * (tokenizer_config.json's BOS and EOS, generation_config.json's EOS ids):
 * the load is refused with a message naming it, or its ids are ids of the
 * vocabulary (or -1), at most FORGE_MAX_EOS of them. */
static void test_fuzz_configs(void **state) {
    (void)state;
    char dir[] = "/tmp/forge-tokenizer-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const char *names[2] = {"tokenizer_config.json", "generation_config.json"};
    static const char *texts[2] = {"{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"ab\"}}",
                                   "{\"bos_token_id\": 5, \"eos_token_id\": [2, 4]}"};
    tl_write_file(dir, "tokenizer.json", tiny, sizeof tiny - 1);
    ref_rng r = ref_rng_seed(92);
    unsigned char b[128];
    for (int f = 0; f < 2; f++) {
        const size_t len = strlen(texts[f]);
        tl_write_file(dir, names[1 - f], texts[1 - f], strlen(texts[1 - f]));
        int loaded = 0;
        for (int iter = 0; iter < 1500; iter++) {
            size_t n = len;
            memcpy(b, texts[f], len);
            tl_mutate(b, &n, len + 16, &r, "{}[]\":,0123456789-.eE <>s\\nul");
            tl_write_file(dir, names[f], b, n);
            forge_tokenizer *tok = NULL;
            if (forge_tokenizer_load(dir, &tok) != FORGE_OK) {
                assert_null(tok);
                if (strncmp(forge_last_error(), "forge_tokenizer_load: ", 22) != 0)
                    fail_msg("%s: \"%s\" does not name the load", names[f], forge_last_error());
                continue;
            }
            forge_special_ids ids;
            TL_OK(forge_tokenizer_special_ids(tok, &ids));
            assert_true(ids.bos >= -1 && ids.bos < 6 && ids.eos >= -1 && ids.eos < 6);
            assert_true(ids.n_eos >= 0 && ids.n_eos <= FORGE_MAX_EOS);
            for (int i = 0; i < ids.n_eos; i++) assert_true(ids.eos_ids[i] >= 0 && ids.eos_ids[i] < 6);
            forge_tokenizer_free(tok);
            loaded++;
        }
        print_message("%s: %d of 1500 mutations loaded\n", names[f], loaded);
        assert_true(loaded > 0 && loaded < 1500);
    }
    char path[256];
    const char *all[3] = {"tokenizer.json", names[0], names[1]};
    for (int i = 0; i < 3; i++) snprintf(path, sizeof path, "%s/%s", dir, all[i]), remove(path);
    rmdir(dir);
}

/* The loader on 3000 corruptions of a valid file (tl_mutate's bytes
 * changed, inserted, deleted, cut short): any status, no crash, no leak, nothing out of bounds
 * (the sanitizer build runs this too); each one that loads also encodes. */
static void test_fuzz_loader(void **state) {
    (void)state;
    ref_rng r = ref_rng_seed(0x9e3779b9);
    const size_t n = sizeof tiny - 1;
    unsigned char *buf = malloc(n + 17);
    assert_non_null(buf);
    int loaded = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, tiny, n);
        size_t len = n;
        tl_mutate(buf, &len, n + 16, &r, "{}[]\",:0123456789");
        buf[len] = '\0';
        forge_tokenizer *tok = NULL;
        if (load_text((const char *)buf, &tok) == FORGE_OK) {
            size_t ids_n;
            int32_t ids[64];
            (void)forge_tokenizer_encode(tok, "ab ab <s>a", 10, 1, ids, 64, &ids_n);
            forge_tokenizer_free(tok);
            loaded++;
        }
    }
    print_message("fuzzed loader: %d of 3000 corrupt files still loaded\n", loaded);
    free(buf);
}

/* Llama 3's encoder on 2000 random strings of characters from many scripts
 * and of its special tokens' pieces, and on random bytes: valid UTF-8
 * encodes and decodes back to itself, the rest is refused. */
static void test_fuzz_encode(void **state) {
    (void)state;
    static const char *const parts[] = {" ", "  ", "\n", "\t", "a", "Z", "7", "42", "'s", "'LL", "é", "日本", "ñ",
                                        "😀", "👩‍👧", "<|", "|>", "<|eot_id|>", "<|begin_of_text|>", "\r\n",
                                        "\xc2\xa0", "ا", "!", "...", "__"};
    char path[1024];
    path_of(path, sizeof path, g_cache, "llama3", "/tokenizer.json");
    forge_tokenizer *tok = NULL;
    TL_OK(forge_tokenizer_load(path, &tok));
    uint64_t rng = 12345;
    char text[512], back[2048];
    int32_t ids[512];
    for (int round = 0; round < 2000; round++) {
        size_t len = 0, n, back_len;
        const int k = (int)(next_random(&rng) % 24);
        for (int i = 0; i < k; i++) {
            const char *p = parts[next_random(&rng) % (sizeof parts / sizeof parts[0])];
            memcpy(text + len, p, strlen(p));
            len += strlen(p);
        }
        if (round % 4 == 3 && len > 0) text[next_random(&rng) % len] = (char)(0x80 | (next_random(&rng) & 0x7f));
        const forge_status st = forge_tokenizer_encode(tok, text, len, 0, ids, 512, &n);
        if (st == FORGE_ERR_INVALID_ARGUMENT) continue; /* a stray continuation byte made it invalid */
        if (st != FORGE_OK) fail_msg("round %d: %s", round, forge_last_error());
        TL_OK(forge_tokenizer_decode(tok, ids, n, 0, back, sizeof back, &back_len));
        if (back_len != len || memcmp(back, text, len) != 0) fail_msg("round %d: decode(encode(text)) is not the text", round);
    }
    forge_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer FIXTURES_DIR [CACHE_DIR]\n");
        return 2;
    }
    g_fixtures = argv[1];
    static char cache[1024];
    const char *env = getenv("FORGE_TOKENIZERS"), *home = getenv("HOME");
    snprintf(cache, sizeof cache, "%s", argc > 2 ? argv[2] : env ? env : "");
    if (!cache[0]) snprintf(cache, sizeof cache, "%s/.cache/forge/tokenizers", home ? home : ".");
    g_cache = cache;
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/llama3/tokenizer.json", g_cache);
    FILE *f = fopen(probe, "rb");
    const struct CMUnitTest with_files[] = {
        cmocka_unit_test(test_matches_hugging_face), cmocka_unit_test(test_variants_match_hugging_face),
        cmocka_unit_test(test_bad_files), cmocka_unit_test(test_bad_text),
        cmocka_unit_test(test_special_ids),   cmocka_unit_test(test_fuzz_loader),
        cmocka_unit_test(test_fuzz_encode), cmocka_unit_test(test_fuzz_configs),
    };
    if (!f && (argc > 2 || env)) { /* asked for these files: their absence is a failure */
        fprintf(stderr, "test_tokenizer: no tokenizer files in %s (scripts/fetch-tokenizers.sh)\n", g_cache);
        return 1;
    }
    if (!f) {
        printf("skipped: no tokenizer files in %s (scripts/fetch-tokenizers.sh fetches them)\n", g_cache);
        return 77;
    }
    fclose(f);
    return cmocka_run_group_tests_name("tokenizer", with_files, NULL, NULL);
}
