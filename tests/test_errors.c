/* SPDX-License-Identifier: Apache-2.0 */
/* test_errors.c: every bad input gets its status and a message naming the
 * problem, and leaves outputs, handles and the KV cache as they were. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

#define SENTINEL 12345.0f

/* Fails unless st is `want` and the message contains `needle`. */
static void expect_error(forge_status st, forge_status want, const char *needle, const char *what) {
    if (st != want)
        fail_msg("%s: got %s, expected %s (%s)", what, forge_status_str(st), forge_status_str(want),
                 forge_last_error());
    if (!strstr(forge_last_error(), needle))
        fail_msg("%s: message \"%s\" does not name \"%s\"", what, forge_last_error(), needle);
}

/* ------------------------------------------------------------- config */

static void test_config_errors(void **state) {
    forge_layer_config base = forge_layer_config_default(128, 4, 2, 32);
    TL_OK(forge_layer_config_check(&base));
    forge_layer_config c;
#define EXPECT(field_edit, want, needle)                                                          \
    do {                                                                                         \
        c = base;                                                                                \
        field_edit;                                                                              \
        expect_error(forge_layer_config_check(&c), want, needle, #field_edit);                   \
    } while (0)
    EXPECT(c.hidden = 0, FORGE_ERR_INVALID_ARGUMENT, "hidden");
    EXPECT(c.hidden = -5, FORGE_ERR_INVALID_ARGUMENT, "hidden");
    EXPECT(c.heads = 0, FORGE_ERR_INVALID_ARGUMENT, "heads");
    EXPECT(c.kv_heads = -1, FORGE_ERR_INVALID_ARGUMENT, "kv_heads");
    EXPECT(c.head_dim = 0, FORGE_ERR_INVALID_ARGUMENT, "head_dim");
    EXPECT(c.max_seq = 0, FORGE_ERR_INVALID_ARGUMENT, "max_seq");
    EXPECT(c.max_seq = INT_MAX, FORGE_ERR_INVALID_ARGUMENT, "max_seq");
    EXPECT(c.kv_heads = 3, FORGE_ERR_INVALID_ARGUMENT, "kv_heads");
    EXPECT(c.head_dim = 33, FORGE_ERR_INVALID_ARGUMENT, "odd");
    EXPECT(c.rope_theta = 0.0f, FORGE_ERR_INVALID_ARGUMENT, "rope_theta");
    EXPECT(c.rope_theta = NAN, FORGE_ERR_INVALID_ARGUMENT, "rope_theta");
    EXPECT(c.rope_theta = INFINITY, FORGE_ERR_INVALID_ARGUMENT, "rope_theta");
    EXPECT(c.rope_style = (forge_rope_style)7, FORGE_ERR_INVALID_ARGUMENT, "rope_style");
    EXPECT(c.bias = 0x10, FORGE_ERR_INVALID_ARGUMENT, "bias");
    EXPECT(c.dtype = (forge_dtype)9, FORGE_ERR_DTYPE, "dtype");
    EXPECT((c.heads = 1 << 20, c.kv_heads = 1 << 20), FORGE_ERR_INVALID_ARGUMENT, "head_dim");
    expect_error(forge_layer_config_check(NULL), FORGE_ERR_INVALID_ARGUMENT, "NULL", "NULL config");
    c = base;
    c.head_dim = 33;
    c.rope_style = FORGE_ROPE_NONE; /* odd head dims are fine without RoPE */
    TL_OK(forge_layer_config_check(&c));
}

/* ------------------------------------------------------- layer create */

static void test_layer_create_errors(void **state) {
    forge_layer_config cfg = forge_layer_config_default(64, 4, 2, 16);
    cfg.bias = FORGE_BIAS_Q;
    ref_random_layer w;
    assert_int_equal(ref_random_layer_make(&w, &cfg, 1), 0);
    forge_context *ctx;
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &ctx));
    forge_layer *const untouched = (forge_layer *)&w, *out = untouched;
    expect_error(forge_layer_create(NULL, &cfg, &w.w, &out), FORGE_ERR_INVALID_ARGUMENT, "ctx", "NULL ctx");
    expect_error(forge_layer_create(ctx, NULL, &w.w, &out), FORGE_ERR_INVALID_ARGUMENT, "cfg", "NULL cfg");
    expect_error(forge_layer_create(ctx, &cfg, NULL, &out), FORGE_ERR_INVALID_ARGUMENT, "weights", "NULL weights");
    expect_error(forge_layer_create(ctx, &cfg, &w.w, NULL), FORGE_ERR_INVALID_ARGUMENT, "out", "NULL out");
    forge_layer_weights bad = w.w;
    bad.v_proj = NULL;
    expect_error(forge_layer_create(ctx, &cfg, &bad, &out), FORGE_ERR_INVALID_ARGUMENT, "v_proj", "NULL v_proj");
    bad = w.w;
    bad.q_bias = NULL;
    expect_error(forge_layer_create(ctx, &cfg, &bad, &out), FORGE_ERR_INVALID_ARGUMENT, "q_bias", "missing q_bias");
    bad = w.w;
    bad.o_bias = w.q_bias;
    expect_error(forge_layer_create(ctx, &cfg, &bad, &out), FORGE_ERR_INVALID_ARGUMENT, "o_bias", "unasked o_bias");
    forge_layer_config unknown = cfg;
    unknown.dtype = (forge_dtype)9;
    expect_error(forge_layer_create(ctx, &unknown, &w.w, &out), FORGE_ERR_DTYPE, "dtype", "dtype 9");
    forge_layer_config odd = cfg;
    odd.heads = 3;
    expect_error(forge_layer_create(ctx, &odd, &w.w, &out), FORGE_ERR_INVALID_ARGUMENT, "kv_heads", "heads 3/2");
    assert_ptr_equal(out, untouched);
    forge_context_destroy(ctx);
    ref_random_layer_free(&w);
}

/* -------------------------------------------------------------- forward */

/* A layer, a 2-slot cache with 4 positions in slot 0, and sentinel outputs. */
typedef struct {
    test_layer t;
    forge_kv_cache *cache;
    float x[8 * 64], y[8 * 64];
    float k0[2 * 4 * 16], v0[2 * 4 * 16]; /* slot 0 as it was */
} fixture;

static int fixture_setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    forge_layer_config cfg = forge_layer_config_default(64, 4, 2, 16);
    cfg.max_seq = 16;
    tl_make(&f->t, FORGE_BACKEND_CPU, &cfg, 2);
    TL_OK(forge_kv_cache_create(f->t.layer, 2, &f->cache));
    ref_rng r = ref_rng_seed(3);
    ref_rng_fill(&r, f->x, 8 * 64, 1.0);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = 4};
    TL_OK(forge_layer_forward(f->t.layer, f->cache, &seq, 1, f->x, f->y));
    TL_OK(forge_kv_cache_read(f->cache, 0, f->k0, f->v0));
    for (int i = 0; i < 8 * 64; i++) f->y[i] = SENTINEL;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state) {
    fixture *f = *state;
    forge_kv_cache_destroy(f->cache);
    tl_free(&f->t);
    free(f);
    return 0;
}

/* y still holds the sentinel; slot 0 holds its 4 positions as before and
 * slot 1 is still empty. */
static void expect_untouched(const fixture *f, const char *what) {
    for (int i = 0; i < 8 * 64; i++)
        if (f->y[i] != SENTINEL) fail_msg("%s: y[%d] was written", what, i);
    int len0, len1;
    TL_OK(forge_kv_cache_len(f->cache, 0, &len0));
    TL_OK(forge_kv_cache_len(f->cache, 1, &len1));
    if (len0 != 4 || len1 != 0) fail_msg("%s: slot lengths became %d, %d", what, len0, len1);
    float k[2 * 4 * 16], v[2 * 4 * 16];
    TL_OK(forge_kv_cache_read(f->cache, 0, k, v));
    if (memcmp(k, f->k0, sizeof k) || memcmp(v, f->v0, sizeof v))
        fail_msg("%s: the cache contents changed", what);
}

static void test_forward_errors(void **state) {
    fixture *f = *state;
    forge_layer *L = f->t.layer;
    forge_kv_cache *C = f->cache;
    const forge_seq ok = {.slot = 1, .pos0 = 0, .n_tokens = 2};
    const struct {
        const char *what, *needle;
        forge_status want;
        forge_seq seqs[2];
        int n_seqs;
    } cases[] = {
        {"n_tokens 0", "n_tokens", FORGE_ERR_INVALID_ARGUMENT, {{1, 0, 0}}, 1},
        {"n_tokens -3", "n_tokens", FORGE_ERR_INVALID_ARGUMENT, {{1, 0, -3}}, 1},
        {"pos0 -1", "pos0", FORGE_ERR_INVALID_ARGUMENT, {{1, -1, 2}}, 1},
        {"past capacity", "max_seq", FORGE_ERR_CAPACITY, {{0, 4, 13}}, 1},
        {"pos0 near INT_MAX", "max_seq", FORGE_ERR_CAPACITY, {{0, INT_MAX, 1}}, 1},
        {"n_tokens INT_MAX", "max_seq", FORGE_ERR_CAPACITY, {{1, 0, INT_MAX}}, 1},
        {"slot -1", "slot", FORGE_ERR_INVALID_ARGUMENT, {{-1, 0, 2}}, 1},
        {"slot 2 of 2", "slot", FORGE_ERR_INVALID_ARGUMENT, {{2, 0, 2}}, 1},
        {"pos0 past the slot", "holds only 4", FORGE_ERR_INVALID_ARGUMENT, {{0, 5, 1}}, 1},
        {"second seq bad", "seqs[1]", FORGE_ERR_CAPACITY, {{1, 0, 2}, {0, 4, 20}}, 2},
        {"one slot twice", "slot 1", FORGE_ERR_INVALID_ARGUMENT, {{1, 0, 2}, {1, 0, 3}}, 2},
        {"n_seqs 0", "n_seqs", FORGE_ERR_INVALID_ARGUMENT, {{1, 0, 2}}, 0},
        {"n_seqs -1", "n_seqs", FORGE_ERR_INVALID_ARGUMENT, {{1, 0, 2}}, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error(forge_layer_forward(L, C, cases[i].seqs, cases[i].n_seqs, f->x, f->y),
                     cases[i].want, cases[i].needle, cases[i].what);
        expect_untouched(f, cases[i].what);
    }
    expect_error(forge_layer_forward(NULL, C, &ok, 1, f->x, f->y), FORGE_ERR_INVALID_ARGUMENT, "layer", "NULL layer");
    expect_error(forge_layer_forward(L, C, NULL, 1, f->x, f->y), FORGE_ERR_INVALID_ARGUMENT, "seqs", "NULL seqs");
    expect_error(forge_layer_forward(L, C, &ok, 1, NULL, f->y), FORGE_ERR_INVALID_ARGUMENT, "x", "NULL x");
    expect_error(forge_layer_forward(L, C, &ok, 1, f->x, NULL), FORGE_ERR_INVALID_ARGUMENT, "y", "NULL y");
    /* without a cache, positions are still bounded by max_seq */
    forge_seq far = {.slot = 0, .pos0 = 15, .n_tokens = 2};
    expect_error(forge_layer_forward(L, NULL, &far, 1, f->x, f->y), FORGE_ERR_CAPACITY, "max_seq", "no cache, far");
    expect_untouched(f, "checks");
}

/* A cache made for another geometry or another context is refused. */
static void test_foreign_cache(void **state) {
    fixture *f = *state;
    const forge_seq seq = {.slot = 1, .pos0 = 0, .n_tokens = 2};
    forge_layer_config cfg = forge_layer_config_default(64, 4, 4, 16);
    cfg.max_seq = 16;
    test_layer other;
    tl_make(&other, FORGE_BACKEND_CPU, &cfg, 4);
    forge_kv_cache *wrong;
    TL_OK(forge_kv_cache_create(other.layer, 2, &wrong));
    expect_error(forge_layer_forward(f->t.layer, wrong, &seq, 1, f->x, f->y), FORGE_ERR_INVALID_ARGUMENT,
                 "context", "cache of another context");
    forge_kv_cache_destroy(wrong);
    tl_free(&other);

    /* same context, kv_heads 4 instead of 2 */
    forge_layer *l4;
    ref_random_layer w;
    assert_int_equal(ref_random_layer_make(&w, &cfg, 5), 0);
    TL_OK(forge_layer_create(f->t.ctx, &cfg, &w.w, &l4));
    TL_OK(forge_kv_cache_create(l4, 2, &wrong));
    expect_error(forge_layer_forward(f->t.layer, wrong, &seq, 1, f->x, f->y), FORGE_ERR_SHAPE,
                 "kv_heads", "cache of another geometry");
    expect_untouched(f, "foreign cache");
    forge_kv_cache_destroy(wrong);
    forge_layer_destroy(l4);
    ref_random_layer_free(&w);
}

/* --------------------------------------------------------- cache, misc */

static void test_cache_errors(void **state) {
    fixture *f = *state;
    forge_kv_cache *const untouched = f->cache, *out = untouched;
    int len = -7;
    expect_error(forge_kv_cache_create(f->t.layer, 0, &out), FORGE_ERR_INVALID_ARGUMENT, "slots", "0 slots");
    expect_error(forge_kv_cache_create(NULL, 1, &out), FORGE_ERR_INVALID_ARGUMENT, "layer", "NULL layer");
    expect_error(forge_kv_cache_create(f->t.layer, 1, NULL), FORGE_ERR_INVALID_ARGUMENT, "out", "NULL out");
    assert_ptr_equal(out, untouched);
    expect_error(forge_kv_cache_len(f->cache, 2, &len), FORGE_ERR_INVALID_ARGUMENT, "slot 2", "len slot 2");
    expect_error(forge_kv_cache_len(f->cache, 0, NULL), FORGE_ERR_INVALID_ARGUMENT, "len", "NULL len");
    expect_error(forge_kv_cache_len(NULL, 0, &len), FORGE_ERR_INVALID_ARGUMENT, "cache", "NULL cache");
    assert_int_equal(len, -7);
    expect_error(forge_kv_cache_reset(f->cache, -1), FORGE_ERR_INVALID_ARGUMENT, "slot -1", "reset -1");
    expect_error(forge_kv_cache_read(f->cache, 5, NULL, NULL), FORGE_ERR_INVALID_ARGUMENT, "slot 5", "read 5");
    expect_untouched(f, "cache calls");
    TL_OK(forge_kv_cache_reset(f->cache, 0));
    TL_OK(forge_kv_cache_len(f->cache, 0, &len));
    assert_int_equal(len, 0);
}

/* A cache whose size overflows size_t is refused before anything is
 * allocated (a merely huge one may succeed where memory is overcommitted). */
static void test_cache_size_overflow(void **state) {
    forge_layer_config cfg = forge_layer_config_default(1, 1, 1, 1 << 22);
    cfg.max_seq = 1 << 24; /* 2^46 elements a slot */
    size_t n = (size_t)3 << 22;
    float *zeros = calloc(n, sizeof *zeros);
    forge_layer_weights w = {.q_proj = zeros, .k_proj = zeros, .v_proj = zeros, .o_proj = zeros};
    forge_context *ctx;
    forge_layer *layer;
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &ctx));
    TL_OK(forge_layer_create(ctx, &cfg, &w, &layer));
    forge_kv_cache *const untouched = (forge_kv_cache *)ctx, *out = untouched;
    expect_error(forge_kv_cache_create(layer, INT_MAX, &out), FORGE_ERR_OUT_OF_MEMORY, "slots", "2^77 bytes");
    assert_ptr_equal(out, untouched);
    forge_layer_destroy(layer);
    forge_context_destroy(ctx);
    free(zeros);
}

static void test_misc_errors(void **state) {
    forge_context *const untouched = (forge_context *)state, *ctx = untouched;
    expect_error(forge_context_create((forge_backend)42, &ctx), FORGE_ERR_INVALID_ARGUMENT, "42", "backend 42");
    expect_error(forge_context_create(FORGE_BACKEND_CPU, NULL), FORGE_ERR_INVALID_ARGUMENT, "out", "NULL out");
    forge_status cuda = forge_context_create(FORGE_BACKEND_CUDA, &ctx);
    if (cuda != FORGE_OK) {
        expect_error(cuda, FORGE_ERR_UNSUPPORTED, "CUDA", "cuda without a GPU");
        assert_ptr_equal(ctx, untouched);
    } else {
        forge_context_destroy(ctx);
    }
    float a[4] = {1, 2, 3, 4}, b[4] = {0};
    expect_error(forge_convert(b, (forge_dtype)5, a, FORGE_F32, 4), FORGE_ERR_DTYPE, "dtype", "convert dtype");
    expect_error(forge_convert(NULL, FORGE_F32, a, FORGE_F32, 4), FORGE_ERR_INVALID_ARGUMENT, "dst", "convert NULL");
    assert_int_equal(b[0], 0);
    /* every status has its own text */
    for (int s = FORGE_OK; s <= FORGE_ERR_BACKEND; s++)
        for (int t = FORGE_OK; t < s; t++)
            assert_string_not_equal(forge_status_str((forge_status)s), forge_status_str((forge_status)t));
    assert_string_equal(forge_status_str((forge_status)99), "unknown status");
    /* the stopwatch: NULL arguments refused, a real interval measured */
    forge_context *cpu;
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &cpu));
    double us = -1.0;
    expect_error(forge_stopwatch_start(NULL), FORGE_ERR_INVALID_ARGUMENT, "ctx", "stopwatch NULL ctx");
    expect_error(forge_stopwatch_stop(cpu, NULL), FORGE_ERR_INVALID_ARGUMENT, "us", "stopwatch NULL us");
    TL_OK(forge_stopwatch_start(cpu));
    struct timespec nap = {0, 2000000};
    nanosleep(&nap, NULL);
    TL_OK(forge_stopwatch_stop(cpu, &us));
    if (!(us >= 1500.0 && us < 1e6)) fail_msg("stopwatch measured %g us over a 2 ms sleep", us);
    /* the kernel choice: unknown ones and NULL refused */
    expect_error(forge_context_set_kernel(cpu, (forge_kernel)7), FORGE_ERR_INVALID_ARGUMENT, "7", "kernel 7");
    expect_error(forge_context_set_kernel(NULL, FORGE_KERNEL_PORTABLE), FORGE_ERR_INVALID_ARGUMENT, "ctx",
                 "kernel NULL ctx");
    TL_OK(forge_context_set_kernel(cpu, FORGE_KERNEL_PORTABLE));
    forge_context_destroy(cpu);
    /* destroying NULL is a no-op */
    forge_context_destroy(NULL);
    forge_layer_destroy(NULL);
    forge_kv_cache_destroy(NULL);
    forge_st_close(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_layer_create_errors),
        cmocka_unit_test_setup_teardown(test_forward_errors, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_cache, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_cache_errors, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_cache_size_overflow),
        cmocka_unit_test(test_misc_errors),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
