/* SPDX-License-Identifier: Apache-2.0 */
/* test_layer.c: the attention layer against the float64 reference.
 *
 * The seed report's cases (single token, 16 tokens, causal mask, backend
 * against reference, every length 1..33, numerical stability) and besides:
 * decode consistency, GQA and MQA, RoPE styles at large positions, batches of
 * mixed lengths, rewinds, head dims 32..256, hidden != heads * head_dim,
 * graphs, layers in fp16 and bf16 (every tensor-core head dim, mixed
 * batches with and without a cache, a graph).
 * Outputs are poisoned with NaN before every call.
 *
 *   test_layer [cpu|cuda] [flash|unfused]   backend and attention path under test */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static forge_backend g_backend = FORGE_BACKEND_CPU;
static forge_attention g_attention = FORGE_ATTENTION_FLASH;

/* A layer on the backend and attention path under test. The CUDA backend's
 * unfused path is fp32 only: a 16-bit layer there must refuse it by name
 * and stay on flash attention. */
static void make_layer(test_layer *t, const forge_layer_config *cfg, uint64_t seed) {
    tl_make(t, g_backend, cfg, seed);
    const forge_status st = forge_layer_set_attention(t->layer, g_attention);
    if (g_backend == FORGE_BACKEND_CUDA && cfg->dtype != FORGE_F32 && g_attention == FORGE_ATTENTION_UNFUSED) {
        assert_int_equal(st, FORGE_ERR_UNSUPPORTED);
        assert_non_null(strstr(forge_last_error(), "fp32 only"));
    } else {
        TL_OK(st);
    }
}

static forge_layer_config small_config(void) {
    forge_layer_config cfg = forge_layer_config_default(128, 4, 4, 32);
    cfg.max_seq = 64;
    return cfg;
}

/* One sequence of n tokens at pos0 without a cache, against the reference. */
static void check_sequence(const forge_layer_config *cfg, int n, int pos0, uint64_t seed) {
    test_layer t;
    make_layer(&t, cfg, seed);
    float *x = tl_random((size_t)n * cfg->hidden, seed + 1, 1.0);
    float *y = tl_poisoned((size_t)n * cfg->hidden);
    forge_seq seq = {.slot = 0, .pos0 = pos0, .n_tokens = n};
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    double *want = tl_reference(&t, x, n, pos0);
    char what[160];
    snprintf(what, sizeof what, "hidden %d heads %d/%d head_dim %d rope %d bias %x, %d tokens at %d",
             cfg->hidden, cfg->heads, cfg->kv_heads, cfg->head_dim, (int)cfg->rope_style, cfg->bias,
             n, pos0);
    tl_expect_close(y, want, (size_t)n * cfg->hidden, ref_tolerance(cfg->dtype), what);
    free(x);
    free(y);
    free(want);
    tl_free(&t);
}

/* Case 1: a single token (it attends to itself only). */
static void test_single_token(void **state) {
    forge_layer_config cfg = small_config();
    check_sequence(&cfg, 1, 0, 11);
}

/* Case 2: 16 tokens. */
static void test_sixteen_tokens(void **state) {
    forge_layer_config cfg = small_config();
    check_sequence(&cfg, 16, 0, 12);
}

/* Case 3: changing a later token leaves every earlier output unchanged,
 * bit for bit, and does change its own. */
static void test_causal_mask(void **state) {
    forge_layer_config cfg = small_config();
    const int n = 16, changed = 10, H = cfg.hidden;
    test_layer t;
    make_layer(&t, &cfg, 13);
    float *x = tl_random((size_t)n * H, 14, 1.0);
    float *y1 = tl_poisoned((size_t)n * H), *y2 = tl_poisoned((size_t)n * H);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = n};
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y1));
    for (int i = 0; i < H; i++) x[changed * H + i] += 1.0f;
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y2));
    assert_memory_equal(y1, y2, sizeof(float) * changed * H);
    assert_memory_not_equal(y1 + changed * H, y2 + changed * H, sizeof(float) * H);
    free(x);
    free(y1);
    free(y2);
    tl_free(&t);
}

/* Case 4: the backend against the reference on the seed layer, with
 * every bias, through the KV cache. */
static void test_backend_vs_reference(void **state) {
    forge_layer_config cfg = small_config();
    cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O;
    const int n = 32;
    test_layer t;
    make_layer(&t, &cfg, 15);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 1, &cache));
    float *x = tl_random((size_t)n * cfg.hidden, 16, 1.0);
    float *y = tl_poisoned((size_t)n * cfg.hidden);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = n};
    TL_OK(tl_forward(&t, cache, &seq, 1, x, y));
    double *want = tl_reference(&t, x, n, 0);
    tl_expect_close(y, want, (size_t)n * cfg.hidden, ref_tolerance(cfg.dtype), "seed layer");
    int len;
    TL_OK(forge_kv_cache_len(cache, 0, &len));
    assert_int_equal(len, n);
    free(x);
    free(y);
    free(want);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* Case 5: every sequence length from 1 to 33. */
static void test_every_length(void **state) {
    forge_layer_config cfg = small_config();
    for (int n = 1; n <= 33; n++) check_sequence(&cfg, n, 0, 100 + (uint64_t)n);
}

/* Case 6: inputs scaled until scores reach 1e4: no NaN or Inf, and
 * within tolerance. A score s carries an absolute rounding error of about
 * s * 2^-24 * sqrt(head_dim) into the exponent, so the bound here is that
 * much looser than the float32 one. */
static void test_numerical_stability(void **state) {
    forge_layer_config cfg = small_config();
    const int n = 32, H = cfg.hidden;
    test_layer t;
    make_layer(&t, &cfg, 17);
    float *x = tl_random((size_t)n * H, 18, 1.0);
    double max_score, *want = malloc(sizeof *want * n * H);
    assert_int_equal(ref_layer_forward(&cfg, &t.w.w, x, n, 0, want, &max_score), 0);
    double scale = sqrt(1.2e4 / max_score); /* scores grow with the square of x */
    for (int i = 0; i < n * H; i++) x[i] = (float)(x[i] * scale);
    assert_int_equal(ref_layer_forward(&cfg, &t.w.w, x, n, 0, want, &max_score), 0);
    assert_true(max_score >= 1e4);
    float *y = tl_poisoned((size_t)n * H);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = n};
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    double tol = max_score * 0x1p-24 * sqrt((double)cfg.head_dim);
    tl_expect_close(y, want, (size_t)n * H, tol, "scores of 1e4");
    free(x);
    free(y);
    free(want);
    tl_free(&t);
}

/* Prefill then one-token decode steps equal one prefill of everything, at
 * every step, and equal the reference. */
static void test_decode_consistency(void **state) {
    forge_layer_config cfg = small_config();
    cfg.kv_heads = 2;
    const int prefill = 7, total = 30, H = cfg.hidden;
    test_layer t;
    make_layer(&t, &cfg, 19);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 2, &cache));
    float *x = tl_random((size_t)total * H, 20, 1.0);
    float *full = tl_poisoned((size_t)total * H), *y = tl_poisoned((size_t)total * H);
    forge_seq all = {.slot = 1, .pos0 = 0, .n_tokens = total};
    TL_OK(tl_forward(&t, cache, &all, 1, x, full));
    forge_seq first = {.slot = 0, .pos0 = 0, .n_tokens = prefill};
    TL_OK(tl_forward(&t, cache, &first, 1, x, y));
    for (int p = prefill; p < total; p++) {
        forge_seq step = {.slot = 0, .pos0 = p, .n_tokens = 1};
        TL_OK(tl_forward(&t, cache, &step, 1, x + (size_t)p * H, y + (size_t)p * H));
        double *want = tl_reference(&t, x, p + 1, 0);
        char what[64];
        snprintf(what, sizeof what, "decode step at position %d", p);
        tl_expect_close(y + (size_t)p * H, want + (size_t)p * H, (size_t)H, ref_tolerance(cfg.dtype), what);
        ref_error e = {0};
        for (int i = 0; i < H; i++) {
            double d = fabs((double)y[(size_t)p * H + i] - full[(size_t)p * H + i]);
            e.max_abs = d > e.max_abs ? d : e.max_abs;
        }
        if (e.max_abs > 1e-5) fail_msg("%s differs from the one-shot prefill by %g", what, e.max_abs);
        free(want);
    }
    int len;
    TL_OK(forge_kv_cache_len(cache, 0, &len));
    assert_int_equal(len, total);
    free(x);
    free(full);
    free(y);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* GQA and MQA: every kv_heads that divides heads. */
static void test_gqa_mqa(void **state) {
    for (int kv = 1; kv <= 8; kv++) {
        if (8 % kv) continue;
        forge_layer_config cfg = forge_layer_config_default(256, 8, kv, 32);
        cfg.max_seq = 64;
        check_sequence(&cfg, 19, 0, 200 + (uint64_t)kv);
    }
}

/* Head dims from 32 to 256, odd ones without RoPE, and a hidden size that
 * is not heads * head_dim. */
static void test_head_dims(void **state) {
    const int dims[] = {32, 64, 80, 96, 128, 256};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        forge_layer_config cfg = forge_layer_config_default(192, 4, 2, dims[i]);
        cfg.max_seq = 64;
        check_sequence(&cfg, 9, 0, 300 + i);
    }
    forge_layer_config odd = forge_layer_config_default(64, 3, 1, 33);
    odd.rope_style = FORGE_ROPE_NONE;
    check_sequence(&odd, 11, 0, 310);
}

/* Both RoPE styles and none, at large absolute positions, with biases. */
static void test_rope_styles_large_positions(void **state) {
    const forge_rope_style styles[] = {FORGE_ROPE_HALF, FORGE_ROPE_INTERLEAVED, FORGE_ROPE_NONE};
    const int pos0s[] = {0, 1000, 500000};
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < 3; p++) {
            forge_layer_config cfg = forge_layer_config_default(96, 6, 3, 16);
            cfg.rope_style = styles[s];
            cfg.rope_theta = p == 2 ? 500000.0f : 10000.0f; /* Llama 3's base with long contexts */
            cfg.max_seq = pos0s[p] + 16;
            cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V;
            check_sequence(&cfg, 13, pos0s[p], 400 + (uint64_t)(3 * s + p));
        }
}

/* The largest relative L2 error seen per dtype (test_dtypes prints it). */
static double g_worst[FORGE_BF16 + 1];

static void expect_close(const float *got, const double *want, size_t n, forge_dtype dtype, const char *what) {
    const ref_error e = ref_compare(got, want, n);
    g_worst[dtype] = e.rel_l2 > g_worst[dtype] ? e.rel_l2 : g_worst[dtype];
    tl_expect_close(got, want, n, ref_tolerance(dtype), what);
}

/* One call of three sequences, each in its own slot of a cache: sequence s
 * had before[s] tokens (filled by an earlier call) and brings now[s], so a
 * new prompt (before 0), a continuation and a decode step (now 1) can share
 * the call; each is checked against the reference over its whole history. */
static void check_mixed_batch(const forge_layer_config *cfg, const int before[3], const int now[3],
                              const int slot[3], uint64_t seed) {
    const int H = cfg->hidden, total = now[0] + now[1] + now[2];
    test_layer t;
    make_layer(&t, cfg, seed);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 4, &cache));
    float *hist[3];
    for (int s = 0; s < 3; s++) {
        hist[s] = tl_random((size_t)(before[s] + now[s]) * H, seed + 1 + (uint64_t)s, 1.0);
        if (before[s]) { /* fill the slot with the history first */
            float *y = tl_poisoned((size_t)before[s] * H);
            forge_seq seq = {.slot = slot[s], .pos0 = 0, .n_tokens = before[s]};
            TL_OK(tl_forward(&t, cache, &seq, 1, hist[s], y));
            free(y);
        }
    }
    forge_seq seqs[3];
    float *x = malloc(sizeof *x * total * H), *y = tl_poisoned((size_t)total * H);
    for (int s = 0, row = 0; s < 3; row += now[s], s++) {
        seqs[s] = (forge_seq){.slot = slot[s], .pos0 = before[s], .n_tokens = now[s]};
        memcpy(x + (size_t)row * H, hist[s] + (size_t)before[s] * H, sizeof *x * now[s] * H);
    }
    TL_OK(tl_forward(&t, cache, seqs, 3, x, y));
    for (int s = 0, row = 0; s < 3; row += now[s], s++) {
        double *want = tl_reference(&t, hist[s], before[s] + now[s], 0);
        char what[96];
        snprintf(what, sizeof what, "%s head_dim %d, sequence %d of the batch (%d + %d tokens)",
                 forge_dtype_name(cfg->dtype), cfg->head_dim, s, before[s], now[s]);
        expect_close(y + (size_t)row * H, want + (size_t)before[s] * H, (size_t)now[s] * H, cfg->dtype, what);
        int len;
        TL_OK(forge_kv_cache_len(cache, slot[s], &len));
        assert_int_equal(len, before[s] + now[s]);
        free(want);
        free(hist[s]);
    }
    free(x);
    free(y);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

static void test_mixed_batch(void **state) {
    forge_layer_config cfg = forge_layer_config_default(128, 8, 2, 16);
    cfg.max_seq = 48;
    cfg.bias = FORGE_BIAS_K | FORGE_BIAS_O;
    const int before[] = {0, 9, 20}, now[] = {6, 5, 1}, slot[] = {2, 0, 3};
    check_mixed_batch(&cfg, before, now, slot, 21);
}

/* Without a cache, a batch of three sequences of n[s] tokens at positions
 * pos0[s]. */
static void check_batch_no_cache(const forge_layer_config *cfg, const int n[3], const int pos0[3], uint64_t seed) {
    const int H = cfg->hidden, total = n[0] + n[1] + n[2];
    test_layer t;
    make_layer(&t, cfg, seed);
    float *x = tl_random((size_t)total * H, seed + 1, 1.0), *y = tl_poisoned((size_t)total * H);
    forge_seq seqs[3];
    for (int s = 0; s < 3; s++) seqs[s] = (forge_seq){.slot = 0, .pos0 = pos0[s], .n_tokens = n[s]};
    TL_OK(tl_forward(&t, NULL, seqs, 3, x, y));
    for (int s = 0, row = 0; s < 3; row += n[s], s++) {
        double *want = tl_reference(&t, x + (size_t)row * H, n[s], pos0[s]);
        char what[96];
        snprintf(what, sizeof what, "%s head_dim %d, cache-less sequence of %d tokens at %d",
                 forge_dtype_name(cfg->dtype), cfg->head_dim, n[s], pos0[s]);
        expect_close(y + (size_t)row * H, want, (size_t)n[s] * H, cfg->dtype, what);
        free(want);
    }
    free(x);
    free(y);
    tl_free(&t);
}

static void test_mixed_batch_no_cache(void **state) {
    forge_layer_config cfg = forge_layer_config_default(64, 4, 1, 16);
    cfg.max_seq = 200;
    const int n[] = {1, 17, 4}, pos0[] = {0, 3, 150};
    check_batch_no_cache(&cfg, n, pos0, 23);
}

/* pos0 below the slot's length rewinds: the tail is replaced, as if the
 * discarded tokens had never been there. */
static void test_rewind(void **state) {
    forge_layer_config cfg = small_config();
    const int H = cfg.hidden;
    test_layer t;
    make_layer(&t, &cfg, 25);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 1, &cache));
    float *a = tl_random((size_t)20 * H, 26, 1.0), *b = tl_random((size_t)6 * H, 27, 1.0);
    float *y = tl_poisoned((size_t)20 * H);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = 20};
    TL_OK(tl_forward(&t, cache, &seq, 1, a, y));
    seq = (forge_seq){.slot = 0, .pos0 = 12, .n_tokens = 6};
    TL_OK(tl_forward(&t, cache, &seq, 1, b, y));
    memcpy(a + (size_t)12 * H, b, sizeof *b * 6 * H); /* the history as it now is */
    double *want = tl_reference(&t, a, 18, 0);
    tl_expect_close(y, want + (size_t)12 * H, (size_t)6 * H, ref_tolerance(cfg.dtype), "after rewind");
    int len;
    TL_OK(forge_kv_cache_len(cache, 0, &len));
    assert_int_equal(len, 18);
    free(a);
    free(b);
    free(y);
    free(want);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* Stage timings appear only with profiling on, and add up to about a call. */
static void test_profiling(void **state) {
    forge_layer_config cfg = small_config();
    test_layer t;
    make_layer(&t, &cfg, 28);
    double us[FORGE_STAGE_COUNT];
    assert_int_equal(forge_layer_last_timings(t.layer, us), FORGE_ERR_INVALID_ARGUMENT);
    float *x = tl_random((size_t)32 * cfg.hidden, 29, 1.0), *y = tl_poisoned((size_t)32 * cfg.hidden);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = 32};
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    assert_int_equal(forge_layer_last_timings(t.layer, us), FORGE_ERR_INVALID_ARGUMENT);
    TL_OK(forge_layer_set_profiling(t.layer, 1));
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    TL_OK(forge_layer_last_timings(t.layer, us));
    for (int s = 0; s < FORGE_STAGE_COUNT; s++) assert_true(us[s] >= 0.0 && us[s] < 1e7);
    assert_true(us[FORGE_STAGE_QKV] > 0.0 && us[FORGE_STAGE_ATTENTION] > 0.0);
    free(x);
    free(y);
    tl_free(&t);
}

/* A graph replays the call it recorded, bit for bit; forge_graph_update
 * moves it along a decode loop, also past a call that moves the workspace
 * it recorded; graphs refuse other slots or token counts,
 * and launches past a slot's length, like forward calls. */
static void test_graph(void **state) {
    forge_layer_config cfg = small_config();
    const int H = cfg.hidden, prompt = 8, steps = 5;
    test_layer t;
    make_layer(&t, &cfg, 33);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 2, &cache));
    float *x = tl_random((size_t)(prompt + steps) * H, 34, 1.0);
    float *eager = tl_poisoned((size_t)(prompt + steps) * H), *y = tl_poisoned((size_t)(prompt + steps) * H);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = prompt};
    TL_OK(tl_forward(&t, cache, &seq, 1, x, eager));
    for (int p = prompt; p < prompt + steps; p++) {
        forge_seq step = {.slot = 0, .pos0 = p, .n_tokens = 1};
        TL_OK(tl_forward(&t, cache, &step, 1, x + (size_t)p * H, eager + (size_t)p * H));
    }
    const size_t bytes = sizeof(float) * (size_t)prompt * H;
    void *dx, *dy;
    TL_OK(forge_buffer_alloc(t.ctx, bytes, &dx));
    TL_OK(forge_buffer_alloc(t.ctx, bytes, &dy));
    TL_OK(forge_buffer_upload(t.ctx, dx, x, bytes));
    TL_OK(forge_buffer_upload(t.ctx, dy, y, bytes)); /* NaN */
    seq.slot = 1;
    forge_graph *g;
    TL_OK(forge_graph_create(t.layer, cache, &seq, 1, dx, dy, &g));
    int len;
    TL_OK(forge_kv_cache_len(cache, 1, &len));
    assert_int_equal(len, 0); /* recorded, not run */
    TL_OK(forge_graph_launch(g));
    TL_OK(forge_buffer_download(t.ctx, y, dy, bytes));
    assert_memory_equal(y, eager, bytes);
    TL_OK(forge_kv_cache_len(cache, 1, &len));
    assert_int_equal(len, prompt);
    forge_graph_destroy(g);

    forge_seq step = {.slot = 1, .pos0 = prompt, .n_tokens = 1};
    TL_OK(forge_graph_create(t.layer, cache, &step, 1, dx, dy, &g));
    for (int p = prompt; p < prompt + steps; p++) {
        step.pos0 = p;
        TL_OK(forge_graph_update(g, &step, 1));
        if (p == prompt + 2) { /* a larger call moves the workspace that the graph recorded */
            forge_seq big = {.slot = 0, .pos0 = 0, .n_tokens = cfg.max_seq};
            float *bx = tl_random((size_t)cfg.max_seq * H, 35, 1.0), *by = tl_poisoned((size_t)cfg.max_seq * H);
            TL_OK(tl_forward(&t, NULL, &big, 1, bx, by));
            free(bx);
            free(by);
        }
        TL_OK(forge_buffer_upload(t.ctx, dx, x + (size_t)p * H, sizeof(float) * H));
        TL_OK(forge_graph_launch(g));
        TL_OK(forge_buffer_download(t.ctx, y + (size_t)p * H, dy, sizeof(float) * H));
    }
    double *want = tl_reference(&t, x, prompt + steps, 0);
    tl_expect_close(y + (size_t)prompt * H, want + (size_t)prompt * H, (size_t)steps * H,
                    ref_tolerance(cfg.dtype), "decode steps by one graph");
    forge_seq other_slot = {.slot = 0, .pos0 = 3, .n_tokens = 1}, two = {.slot = 1, .pos0 = 3, .n_tokens = 2};
    assert_int_equal(forge_graph_update(g, &other_slot, 1), FORGE_ERR_SHAPE);
    assert_int_equal(forge_graph_update(g, &two, 1), FORGE_ERR_SHAPE);
    assert_int_equal(forge_graph_update(g, &step, 2), FORGE_ERR_SHAPE);
    step.pos0 = cfg.max_seq;
    assert_int_equal(forge_graph_update(g, &step, 1), FORGE_ERR_CAPACITY);
    step.pos0 = prompt + steps + 3; /* past the slot's length */
    TL_OK(forge_graph_update(g, &step, 1));
    assert_int_equal(forge_graph_launch(g), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "forge_graph_launch"));
    TL_OK(forge_kv_cache_len(cache, 1, &len));
    assert_int_equal(len, prompt + steps);
    assert_int_equal(forge_graph_launch(NULL), FORGE_ERR_INVALID_ARGUMENT);
    forge_graph_destroy(g);
    forge_graph_destroy(NULL);
    forge_buffer_free(t.ctx, dx);
    forge_buffer_free(t.ctx, dy);
    free(want);
    free(x);
    free(eager);
    free(y);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* forge_kv_cache_read returns K after RoPE and V, as the reference makes them. */
static void test_cache_contents(void **state) {
    forge_layer_config cfg = forge_layer_config_default(32, 2, 1, 8);
    cfg.max_seq = 16;
    cfg.bias = FORGE_BIAS_V;
    const int n = 5, D = cfg.head_dim;
    test_layer t;
    make_layer(&t, &cfg, 30);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 1, &cache));
    float *x = tl_random((size_t)n * cfg.hidden, 31, 1.0), *y = tl_poisoned((size_t)n * cfg.hidden);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = n};
    TL_OK(tl_forward(&t, cache, &seq, 1, x, y));
    float *k = tl_poisoned((size_t)n * D), *v = tl_poisoned((size_t)n * D);
    TL_OK(forge_kv_cache_read(cache, 0, k, v));
    double kw[8], vw[8];
    for (int i = 0; i < n; i++) {
        for (int o = 0; o < D; o++) {
            double ak = 0.0, av = t.w.v_bias[o];
            for (int j = 0; j < cfg.hidden; j++) {
                ak += (double)t.w.k_proj[o * cfg.hidden + j] * x[i * cfg.hidden + j];
                av += (double)t.w.v_proj[o * cfg.hidden + j] * x[i * cfg.hidden + j];
            }
            kw[o] = ak;
            vw[o] = av;
        }
        ref_rope(kw, &cfg, i);
        tl_expect_close(k + i * D, kw, (size_t)D, 1e-5, "cached K");
        tl_expect_close(v + i * D, vw, (size_t)D, 1e-5, "cached V");
    }
    free(x);
    free(y);
    free(k);
    free(v);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* A graph of a 16-bit prefill call replays the eager call bit for bit. */
static void check_graph16(const forge_layer_config *cfg, uint64_t seed) {
    const int n = 40, H = cfg->hidden;
    const size_t es = forge_dtype_size(cfg->dtype), bytes = es * n * H;
    test_layer t;
    make_layer(&t, cfg, seed);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, 2, &cache));
    float *x = tl_random((size_t)n * H, seed + 1, 1.0);
    unsigned char *raw = malloc(bytes), *eager = malloc(bytes), *replayed = malloc(bytes);
    TL_OK(forge_convert(raw, cfg->dtype, x, FORGE_F32, (size_t)n * H));
    void *dx = tl_device_copy(t.ctx, raw, bytes), *dy = tl_device_copy(t.ctx, raw, bytes);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = n};
    TL_OK(forge_layer_forward(t.layer, cache, &seq, 1, dx, dy));
    TL_OK(forge_buffer_download(t.ctx, eager, dy, bytes));
    memset(raw, 0xff, bytes);
    TL_OK(forge_buffer_upload(t.ctx, dy, raw, bytes));
    seq.slot = 1;
    forge_graph *g;
    TL_OK(forge_graph_create(t.layer, cache, &seq, 1, dx, dy, &g));
    TL_OK(forge_graph_launch(g));
    TL_OK(forge_buffer_download(t.ctx, replayed, dy, bytes));
    assert_memory_equal(replayed, eager, bytes);
    forge_graph_destroy(g);
    forge_buffer_free(t.ctx, dx);
    forge_buffer_free(t.ctx, dy);
    free(x);
    free(raw);
    free(eager);
    free(replayed);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* A layer asking for a window or a soft cap that the backend lacks:
 * refused at its creation, naming the option. */
static void expect_refused(forge_layer_config cfg, int window, float softcap, const char *names) {
    forge_context *ctx;
    forge_layer *layer = NULL;
    TL_OK(forge_context_create(g_backend, &ctx));
    ref_random_layer w;
    assert_int_equal(ref_random_layer_make(&w, &cfg, 5), 0);
    cfg.window = window, cfg.softcap = softcap;
    assert_int_equal(forge_layer_create(ctx, &cfg, &w.w, &layer), FORGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(forge_last_error(), names));
    assert_null(layer);
    ref_random_layer_free(&w);
    forge_context_destroy(ctx);
}

/* Sliding windows (one token, shorter than a prompt, longer than some
 * histories) and soft-capping (a cap below the scores' size, so that it
 * bends them), in fp32 and bf16: a batch of a new prompt, a continuation
 * and a decode step over a cache, and a cache-less batch (the window then
 * counts within each sequence's own tokens). Each option where the
 * backend's table takes it, both where it takes both; else its refusal by
 * name. */
static void test_window_softcap(void **state) {
    static const int windows[] = {0, 1, 6, 25};
    const int before[] = {0, 9, 20}, now[] = {30, 11, 1}, slot[] = {2, 0, 3};
    const int n[] = {1, 40, 4}, pos0[] = {0, 3, 150};
    const int window = tl_takes_options(g_backend, "", FORGE_ATTN_WINDOW);
    const int softcap = tl_takes_options(g_backend, "", FORGE_ATTN_SOFTCAP);
    forge_layer_config cfg = forge_layer_config_default(128, 4, 2, 32);
    cfg.max_seq = 200;
    for (int d = 0; d < 2; d++)
        for (int w = 0; w < 4; w++)
            for (int cap = 0; cap <= 1; cap++) {
                if ((windows[w] && !window) || (cap && !softcap) || (!windows[w] && !cap)) continue;
                cfg.dtype = d ? FORGE_BF16 : FORGE_F32;
                cfg.window = windows[w], cfg.softcap = cap ? 0.02f : 0.0f;
                const uint64_t seed = 800 + 10 * (uint64_t)(d * 4 + w) + (uint64_t)cap;
                check_mixed_batch(&cfg, before, now, slot, seed);
                check_batch_no_cache(&cfg, n, pos0, seed + 5);
            }
    cfg.dtype = FORGE_F32;
    if (!window) expect_refused(cfg, 8, 0.0f, "a sliding window is not implemented");
    if (!softcap) expect_refused(cfg, 0, 30.0f, "soft-capping is not implemented");
    cfg.window = 0, cfg.softcap = -1.0f;
    assert_int_equal(forge_layer_config_check(&cfg), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "softcap"));
    cfg.window = -3, cfg.softcap = 0.0f;
    assert_int_equal(forge_layer_config_check(&cfg), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "window -3"));
}

/* Layers in fp16 and bf16 (weights, x, y and the cache in the dtype)
 * against the float64 reference on the same weights and inputs, rounded to
 * the dtype: every head dim the tensor-core kernels take (on an H100, 64
 * and 128 run the Hopper kernel), every RoPE style, GQA and MQA, one call holding a new
 * prompt, a continuation and a decode step with lengths that are no
 * multiple of a tile, a cache-less batch, and a graph. */
static void test_dtypes(void **state) {
    static const forge_dtype dtypes[] = {FORGE_F16, FORGE_BF16};
    static const struct {
        int hidden, heads, kv_heads, head_dim;
        forge_rope_style rope;
    } shapes[] = {{96, 4, 2, 32, FORGE_ROPE_HALF},      {256, 4, 1, 64, FORGE_ROPE_INTERLEAVED},
                  {256, 4, 2, 128, FORGE_ROPE_HALF},    {192, 2, 2, 96, FORGE_ROPE_NONE},
                  {256, 2, 1, 256, FORGE_ROPE_INTERLEAVED}};
    const int before[] = {0, 9, 20}, now[] = {130, 61, 1}, slot[] = {2, 0, 3};
    const int n[] = {1, 77, 4}, pos0[] = {0, 3, 150};
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) {
            forge_layer_config cfg =
                forge_layer_config_default(shapes[j].hidden, shapes[j].heads, shapes[j].kv_heads, shapes[j].head_dim);
            cfg.max_seq = 160;
            cfg.rope_style = shapes[j].rope;
            cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_V | FORGE_BIAS_O;
            cfg.dtype = dtypes[i];
            const uint64_t seed = 600 + 10 * (uint64_t)(i * 5 + j);
            check_mixed_batch(&cfg, before, now, slot, seed);
            check_batch_no_cache(&cfg, n, pos0, seed + 5);
        }
    printf("largest errors of 16-bit layers: relative L2 fp16 %.2e, bf16 %.2e\n", g_worst[FORGE_F16],
           g_worst[FORGE_BF16]);
    forge_layer_config cfg = forge_layer_config_default(256, 4, 2, 128);
    cfg.dtype = FORGE_BF16;
    check_graph16(&cfg, 700);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) g_backend = FORGE_BACKEND_CUDA;
    if (argc > 2 && strcmp(argv[2], "unfused") == 0) g_attention = FORGE_ATTENTION_UNFUSED;
    tl_require_backend(g_backend);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_token),
        cmocka_unit_test(test_sixteen_tokens),
        cmocka_unit_test(test_causal_mask),
        cmocka_unit_test(test_backend_vs_reference),
        cmocka_unit_test(test_every_length),
        cmocka_unit_test(test_numerical_stability),
        cmocka_unit_test(test_decode_consistency),
        cmocka_unit_test(test_gqa_mqa),
        cmocka_unit_test(test_head_dims),
        cmocka_unit_test(test_rope_styles_large_positions),
        cmocka_unit_test(test_mixed_batch),
        cmocka_unit_test(test_mixed_batch_no_cache),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_profiling),
        cmocka_unit_test(test_cache_contents),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_window_softcap),
    };
    return cmocka_run_group_tests_name(g_attention == FORGE_ATTENTION_FLASH ? "flash" : "unfused", tests,
                                       NULL, NULL);
}
