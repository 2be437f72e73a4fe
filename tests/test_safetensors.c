/* SPDX-License-Identifier: Apache-2.0 */
/* test_safetensors.c: the safetensors reader and writer.
 *
 * A round trip of every dtype (with a scalar, an empty tensor and metadata),
 * the 16-bit conversions over all 65536 bit patterns, each malformed header
 * on its own, every truncation of a valid file, and a mutation fuzzer whose
 * inputs, under the sanitizers, must be refused or read within bounds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "test_util.h"

static char tmp_path[64];

static int make_tmp(void **state) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/forge_st_%d.safetensors", (int)getpid());
    return 0;
}

static int remove_tmp(void **state) {
    remove(tmp_path);
    return 0;
}

/* A file image: the 8-byte length of json, json, then data_len bytes 0..255. */
static unsigned char *image(const char *json, size_t data_len, size_t *len) {
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    unsigned char *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (unsigned char)i;
    return b;
}

static forge_status parse_json(const char *json, size_t data_len) {
    size_t len;
    unsigned char *b = image(json, data_len, &len);
    forge_safetensors *st = NULL;
    forge_status s = forge_st_parse(b, len, &st);
    forge_st_close(st);
    free(b);
    return s;
}

static void test_round_trip(void **state) {
    float a[6] = {1, -2, 3.5f, 1e-3f, -0.0f, 65504};
    uint16_t h[4], bf[8];
    forge_convert(h, FORGE_F16, a, FORGE_F32, 4);
    for (int i = 0; i < 8; i++) bf[i] = forge_f32_to_bf16((float)i * 0.25f - 1.0f);
    float scalar = 42.0f;
    const forge_tensor t[] = {
        {.name = "a", .dtype = FORGE_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
        {.name = "model.layers.0.h", .dtype = FORGE_F16, .ndim = 1, .shape = {4}, .data = h, .nbytes = sizeof h},
        {.name = "c", .dtype = FORGE_BF16, .ndim = 3, .shape = {2, 2, 2}, .data = bf, .nbytes = sizeof bf},
        {.name = "scalar", .dtype = FORGE_F32, .ndim = 0, .data = &scalar, .nbytes = 4},
        {.name = "empty", .dtype = FORGE_F32, .ndim = 2, .shape = {0, 3}, .data = NULL, .nbytes = 0},
    };
    const char *meta[] = {"format", "pt", "note", "a \"quoted\" value"};
    TL_OK(forge_st_write(tmp_path, t, 5, meta, 2));
    forge_safetensors *st;
    TL_OK(forge_st_open(tmp_path, &st));
    assert_int_equal(forge_st_count(st), 5);
    for (int i = 0; i < 5; i++) {
        forge_tensor got;
        TL_OK(forge_st_tensor(st, i, &got));
        assert_string_equal(got.name, t[i].name);
        assert_int_equal(got.dtype, t[i].dtype);
        assert_int_equal(got.ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) assert_int_equal(got.shape[d], t[i].shape[d]);
        assert_int_equal(got.nbytes, t[i].nbytes);
        if (t[i].nbytes) assert_memory_equal(got.data, t[i].data, t[i].nbytes);
    }
    forge_tensor found;
    TL_OK(forge_st_find(st, "c", &found));
    assert_memory_equal(found.data, bf, sizeof bf);
    assert_int_equal(forge_st_find(st, "missing", &found), FORGE_ERR_NOT_FOUND);
    assert_non_null(strstr(forge_last_error(), "missing"));
    assert_int_equal(forge_st_metadata_count(st), 2);
    for (int i = 0; i < 2; i++) {
        const char *k, *v;
        TL_OK(forge_st_metadata(st, i, &k, &v));
        assert_string_equal(k, meta[2 * i]);
        assert_string_equal(v, meta[2 * i + 1]);
    }
    assert_int_equal(forge_st_metadata(st, 2, NULL, NULL), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_st_tensor(st, 5, &found), FORGE_ERR_INVALID_ARGUMENT);
    forge_st_close(st);
}

/* f16 and bf16: every bit pattern survives 16 -> 32 -> 16; rounding is to
 * nearest even; overflow goes to Inf and subnormals are kept. */
static void test_conversions(void **state) {
    for (uint32_t u = 0; u < 65536; u++) {
        float f = forge_f16_to_f32((uint16_t)u), g = forge_bf16_to_f32((uint16_t)u);
        if (isnan(f)) assert_true(isnan(forge_f16_to_f32(forge_f32_to_f16(f))));
        else assert_int_equal(forge_f32_to_f16(f), u);
        if (isnan(g)) assert_true(isnan(forge_bf16_to_f32(forge_f32_to_bf16(g))));
        else assert_int_equal(forge_f32_to_bf16(g), u);
    }
    assert_true(forge_f16_to_f32(0x3c00) == 1.0f && forge_f16_to_f32(0x0001) == 0x1p-24f);
    assert_int_equal(forge_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);     /* tie to even: down */
    assert_int_equal(forge_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);     /* tie to even: up */
    assert_int_equal(forge_f32_to_f16(65519.0f), 0x7bff);            /* largest finite */
    assert_int_equal(forge_f32_to_f16(65520.0f), 0x7c00);            /* overflows */
    assert_int_equal(forge_f32_to_f16(0x1p-25f), 0x0000);            /* tie to even: 0 */
    assert_int_equal(forge_f32_to_f16(0x3p-25f), 0x0002);
    assert_int_equal(forge_f32_to_f16(-0x1p-14f), 0x8400);           /* smallest normal */
    assert_int_equal(forge_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie to even: down */
    assert_int_equal(forge_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
    assert_int_equal(forge_f32_to_bf16(INFINITY), 0x7f80);
}

static void test_bad_headers(void **state) {
    const struct {
        const char *what, *json, *needle;
        size_t data;
        forge_status want;
    } cases[] = {
        {"not JSON", "{\"a\": {\"dtype\": \"F32\", ", "JSON", 0, FORGE_ERR_FORMAT},
        {"an array", "[1, 2]", "'{'", 0, FORGE_ERR_FORMAT},
        {"empty header", "", "'{'", 0, FORGE_ERR_FORMAT},
        {"garbage after the JSON", "{}x", "after", 0, FORGE_ERR_FORMAT},
        {"tensor not an object", "{\"a\": 3}", "\"a\"", 0, FORGE_ERR_FORMAT},
        {"unknown dtype", "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "I64", 8, FORGE_ERR_DTYPE},
        {"no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype", 4, FORGE_ERR_FORMAT},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "byte 29", 4, FORGE_ERR_FORMAT},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "byte 29", 4, FORGE_ERR_FORMAT},
        {"dim 2.0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "not an integer", 8, FORGE_ERR_FORMAT},
        {"dim 2e0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", "not an integer", 8, FORGE_ERR_FORMAT},
        {"dim 02", "{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", "not an integer", 8, FORGE_ERR_FORMAT},
        {"offset -0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-0,0]}}", "not an integer", 0, FORGE_ERR_FORMAT},
        {"offset past 2^53", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9007199254740993,0]}}", "2^53", 0, FORGE_ERR_FORMAT},
        {"NUL in a dtype", "{\"a\":{\"dtype\":\"F32\\u0000junk\",\"shape\":[1],\"data_offsets\":[0,4]}}", "\\u0000", 4, FORGE_ERR_FORMAT},
        {"NUL in a name", "{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "\\u0000", 4, FORGE_ERR_FORMAT},
        {"bytes not UTF-8", "{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "UTF-8", 4, FORGE_ERR_FORMAT},
        {"overlong UTF-8", "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "UTF-8", 4, FORGE_ERR_FORMAT},
        {"raw control character", "{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "control", 4, FORGE_ERR_FORMAT},
        {"lone surrogate", "{\"\\udc00\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "surrogate", 4, FORGE_ERR_FORMAT},
        {"two dtypes", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", "2 \"dtype\"", 4, FORGE_ERR_FORMAT},
        {"two metadata keys", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", "\"k\" twice", 0, FORGE_ERR_FORMAT},
        {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", "dimension 0", 8, FORGE_ERR_FORMAT},
        {"nine dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "9 dimensions", 4, FORGE_ERR_FORMAT},
        {"size overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", "overflow", 4, FORGE_ERR_FORMAT},
        {"one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", "data_offsets", 4, FORGE_ERR_FORMAT},
        {"begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", "outside", 8, FORGE_ERR_FORMAT},
        {"end past the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "outside", 4, FORGE_ERR_FORMAT},
        {"huge offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", "not an integer", 4, FORGE_ERR_FORMAT},
        {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "need 8", 4, FORGE_ERR_FORMAT},
        {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "overlaps", 12, FORGE_ERR_FORMAT},
        {"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", "belong to no tensor", 12, FORGE_ERR_FORMAT},
        {"trailing data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "end at byte 4", 8, FORGE_ERR_FORMAT},
        {"duplicate name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "twice", 8, FORGE_ERR_FORMAT},
        {"metadata not object", "{\"__metadata__\": [1]}", "__metadata__", 0, FORGE_ERR_FORMAT},
        {"metadata number", "{\"__metadata__\": {\"k\": 1}}", "\"k\"", 0, FORGE_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        forge_status s = parse_json(cases[i].json, cases[i].data);
        if (s != cases[i].want || !strstr(forge_last_error(), cases[i].needle))
            fail_msg("%s: %s, \"%s\" (expected %s naming \"%s\")", cases[i].what, forge_status_str(s),
                     forge_last_error(), forge_status_str(cases[i].want), cases[i].needle);
    }
    /* header lengths that do not fit the file */
    unsigned char b[16] = {0};
    forge_safetensors *st = NULL;
    assert_int_equal(forge_st_parse(b, 7, &st), FORGE_ERR_FORMAT);
    b[0] = 9; /* 9 bytes of header, 8 in the file */
    assert_int_equal(forge_st_parse(b, 16, &st), FORGE_ERR_FORMAT);
    assert_non_null(strstr(forge_last_error(), "exceeds"));
    memset(b, 0xff, 8); /* 2^64 - 1 */
    assert_int_equal(forge_st_parse(b, 16, &st), FORGE_ERR_FORMAT);
    assert_null(st);
    assert_int_equal(forge_st_open("/nonexistent/forge.safetensors", &st), FORGE_ERR_IO);
    assert_non_null(strstr(forge_last_error(), "/nonexistent/forge.safetensors"));
    /* a directory is no file */
    assert_int_equal(forge_st_open("/tmp", &st), FORGE_ERR_IO);
    assert_non_null(strstr(forge_last_error(), "/tmp: not a regular file"));
    /* a file with no tensors is valid */
    TL_OK(parse_json("{}", 0));
    TL_OK(parse_json("{\"__metadata__\":{\"a\":\"b\"}}   ", 0));
    /* names the format allows: empty, escaped control characters, a
     * surrogate pair, UTF-8 */
    TL_OK(parse_json("{\"\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4));
    TL_OK(parse_json("{\"a\\n\\u0001\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4));
    TL_OK(parse_json("{\"\\ud83d\\ude00 \xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4));
}

/* A header of 100,000 tensors reads in under a second of processor time: names are
 * checked for duplicates through a hash index (the pairwise check took
 * 15 s for 80,000). */
static void test_many_tensors(void **state) {
    enum { N = 100000 };
    const size_t cap = (size_t)N * 96 + 16;
    char *json = malloc(cap);
    size_t at = (size_t)snprintf(json, cap, "{");
    for (int i = 0; i < N; i++)
        at += (size_t)snprintf(json + at, cap - at, "%s\"model.layers.%d.w\":{\"dtype\":\"F32\",\"shape\":[0],"
                               "\"data_offsets\":[0,0]}", i ? "," : "", i);
    snprintf(json + at, cap - at, "}");
    size_t len;
    unsigned char *b = image(json, 0, &len);
    forge_safetensors *st = NULL;
    const double t0 = tl_cpu_s();
    TL_OK(forge_st_parse(b, len, &st));
    const double took = tl_cpu_s() - t0;
    assert_int_equal(forge_st_count(st), N);
    forge_tensor t;
    TL_OK(forge_st_find(st, "model.layers.99999.w", &t));
    assert_string_equal(t.name, "model.layers.99999.w");
    assert_int_equal(forge_st_find(st, "model.layers.100000.w", &t), FORGE_ERR_NOT_FOUND);
    print_message("100000 tensors read in %.3f s\n", took);
    assert_true(took < tl_time_bound(1.0));
    forge_st_close(st);
    free(b);
    free(json);
}

static unsigned char *valid_image(size_t *len) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0x4200};
    const forge_tensor t[] = {
        {.name = "q_proj.weight", .dtype = FORGE_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = 24},
        {.name = "b", .dtype = FORGE_BF16, .ndim = 1, .shape = {3}, .data = h, .nbytes = 6},
    };
    const char *meta[] = {"format", "pt"};
    TL_OK(forge_st_write(tmp_path, t, 2, meta, 1));
    FILE *f = fopen(tmp_path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*len);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Every proper prefix of a valid file is refused. */
static void test_truncations(void **state) {
    size_t len;
    unsigned char *b = valid_image(&len);
    forge_safetensors *st = NULL;
    TL_OK(forge_st_parse(b, len, &st));
    forge_st_close(st);
    for (size_t n = 0; n < len; n++) {
        st = NULL;
        if (forge_st_parse(b, n, &st) == FORGE_OK) fail_msg("a %zu-byte prefix of %zu was accepted", n, len);
        assert_null(st);
    }
    free(b);
}

/* What the reader took, the writer takes and writes so that the reader
 * takes it back the same: the two accept the same names and values. */
static void expect_rewrites(const forge_safetensors *st) {
    const int n = forge_st_count(st), n_meta = forge_st_metadata_count(st);
    forge_tensor *t = calloc((size_t)n + 1, sizeof *t);
    const char **meta = calloc(2 * (size_t)n_meta + 1, sizeof *meta);
    for (int i = 0; i < n; i++) TL_OK(forge_st_tensor(st, i, &t[i]));
    for (int i = 0; i < n_meta; i++) TL_OK(forge_st_metadata(st, i, &meta[2 * i], &meta[2 * i + 1]));
    TL_OK(forge_st_write(tmp_path, t, n, meta, n_meta));
    forge_safetensors *back;
    TL_OK(forge_st_open(tmp_path, &back));
    assert_int_equal(forge_st_count(back), n);
    assert_int_equal(forge_st_metadata_count(back), n_meta);
    for (int i = 0; i < n; i++) {
        forge_tensor u;
        TL_OK(forge_st_find(back, t[i].name, &u));
        assert_int_equal(u.dtype, t[i].dtype);
        assert_int_equal(u.ndim, t[i].ndim);
        assert_memory_equal(u.shape, t[i].shape, sizeof u.shape[0] * (size_t)u.ndim);
        assert_int_equal(u.nbytes, t[i].nbytes);
        if (u.nbytes) assert_memory_equal(u.data, t[i].data, u.nbytes);
    }
    forge_st_close(back);
    free(t);
    free(meta);
}

/* Random mutations of a valid file: each is refused, or read with every
 * tensor inside the file and written back the same. Run under ASan/UBSan,
 * this is the fuzzer. */
static void test_fuzz(void **state) {
    size_t len;
    unsigned char *orig = valid_image(&len);
    unsigned char *b = malloc(len + 16);
    static const char interesting[] = "{}[]\":,0123456789-.eE \\u\x01\xc3\xff";
    ref_rng r = ref_rng_seed(77);
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 50000; iter++) {
        size_t n = len;
        memcpy(b, orig, len);
        tl_mutate(b, &n, len + 16, &r, interesting);
        if (n >= 8 && ref_rng_uniform(&r) < 0.2) /* the header's length nudged */
            b[(size_t)(ref_rng_uniform(&r) * 8)] += (unsigned char)(ref_rng_uniform(&r) * 5) - 2;
        forge_safetensors *st = NULL;
        if (forge_st_parse(b, n, &st) != FORGE_OK) {
            assert_null(st);
            refused++;
            continue;
        }
        accepted++;
        size_t covered = 0;
        for (int i = 0; i < forge_st_count(st); i++) {
            forge_tensor t;
            TL_OK(forge_st_tensor(st, i, &t));
            size_t numel = 1;
            for (int d = 0; d < t.ndim; d++) numel *= (size_t)t.shape[d];
            assert_int_equal(numel * forge_dtype_size(t.dtype), t.nbytes);
            covered += t.nbytes;
        }
        assert_true(covered <= n);
        expect_rewrites(st);
        forge_st_close(st);
    }
    print_message("fuzz: %d mutations accepted, %d refused\n", accepted, refused);
    assert_true(refused > 0 && accepted > 0);
    free(b);
    free(orig);
}

static void test_write_errors(void **state) {
    float a[2] = {1, 2};
    forge_tensor t[2] = {
        {.name = "a", .dtype = FORGE_F32, .ndim = 1, .shape = {2}, .data = a, .nbytes = 8},
        {.name = "a", .dtype = FORGE_F32, .ndim = 1, .shape = {2}, .data = a, .nbytes = 8},
    };
    TL_OK(forge_st_write(tmp_path, t, 1, NULL, 0));
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "two tensors named \"a\""));
    t[1].name = "b";
    t[1].nbytes = 4;
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_SHAPE);
    t[1].nbytes = 8;
    t[1].data = NULL;
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_INVALID_ARGUMENT);
    t[1].data = a;
    t[1].name = "__metadata__";
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_INVALID_ARGUMENT);
    t[1].name = "b";
    t[1].shape[0] = -2;
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_st_write("/nonexistent/dir/x.safetensors", t, 1, NULL, 0), FORGE_ERR_IO);
    t[1].shape[0] = 2;
    t[1].name = "\xff";
    assert_int_equal(forge_st_write(tmp_path, t, 2, NULL, 0), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "UTF-8"));
    const char *meta[] = {"k", "1", "k", "2"};
    assert_int_equal(forge_st_write(tmp_path, t, 1, meta, 2), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "two metadata keys"));
    /* a user's file named like a temporary one is never touched */
    char user[96];
    snprintf(user, sizeof user, "%s.tmp", tmp_path);
    FILE *u = fopen(user, "wb");
    assert_non_null(u);
    fputs("mine", u);
    fclose(u);
    /* failed writes left the first file as it was */
    forge_safetensors *st;
    TL_OK(forge_st_open(tmp_path, &st));
    assert_int_equal(forge_st_count(st), 1);
    forge_st_close(st);
    /* an empty name is a name the format allows: written and read back */
    t[0].name = "";
    TL_OK(forge_st_write(tmp_path, t, 1, NULL, 0));
    forge_tensor back;
    TL_OK(forge_st_open(tmp_path, &st));
    TL_OK(forge_st_find(st, "", &back));
    forge_st_close(st);
    char mine[8] = {0};
    u = fopen(user, "rb");
    assert_non_null(u);
    assert_int_equal(fread(mine, 1, sizeof mine - 1, u), 4);
    fclose(u);
    assert_string_equal(mine, "mine");
    remove(user);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_many_tensors),
    };
    return cmocka_run_group_tests_name("safetensors", tests, make_tmp, remove_tmp);
}
