/* SPDX-License-Identifier: Apache-2.0 */
/* test_cuda.c: what only the CUDA backend has, on the GPU; "skipped: no CUDA
 * device" (exit 77) elsewhere.
 *
 * The shape grid against the float64 reference (lengths 1..33, 64, 127, 128,
 * 1000, 4096; heads 1, 4, 32 with every KV head count that divides them;
 * head dims 32..256; positions other than 0; a batch over the 64 sequences
 * of one launch), both attention paths; both fallback policies at every
 * stage; the self-check; stage timings; the caller's stream; host pointers
 * refused. Graphs are tested by test_layer, on every backend. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "test_util.h"

typedef struct {
    int seq, heads, kv_heads, head_dim;
    int prefix;    /* tokens already in the cache (with cache) */
    int pos0;      /* without cache: RoPE offset */
    int use_cache;
    int vs_cpu;    /* compare with the CPU backend: the reference would take minutes */
} shape;

/* Runs the shape on both attention paths and compares with the reference. */
static void check_shape(shape sh) {
    forge_layer_config cfg = forge_layer_config_default(128, sh.heads, sh.kv_heads, sh.head_dim);
    cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_V | FORGE_BIAS_O;
    cfg.max_seq = sh.prefix + sh.pos0 + sh.seq;
    const int H = cfg.hidden, hist = sh.prefix + sh.seq;
    const uint64_t seed = (uint64_t)(sh.seq * 131 + sh.heads * 17 + sh.kv_heads * 5 + sh.head_dim + sh.prefix);
    test_layer t;
    tl_make(&t, FORGE_BACKEND_CUDA, &cfg, seed);
    float *x = tl_random((size_t)hist * H, seed + 1, 1.0);
    double *want;
    if (sh.vs_cpu) {
        test_layer cpu;
        tl_make(&cpu, FORGE_BACKEND_CPU, &cfg, seed);
        float *y = tl_poisoned((size_t)hist * H);
        forge_seq all = {.slot = 0, .pos0 = sh.use_cache ? 0 : sh.pos0, .n_tokens = hist};
        TL_OK(tl_forward(&cpu, NULL, &all, 1, x, y));
        want = malloc(sizeof *want * hist * H);
        for (size_t i = 0; i < (size_t)hist * H; i++) want[i] = y[i];
        free(y);
        tl_free(&cpu);
    } else {
        want = tl_reference(&t, x, hist, sh.use_cache ? 0 : sh.pos0);
    }
    const forge_attention paths[] = {FORGE_ATTENTION_FLASH, FORGE_ATTENTION_UNFUSED};
    for (int p = 0; p < 2; p++) {
        TL_OK(forge_layer_set_attention(t.layer, paths[p]));
        forge_kv_cache *cache = NULL;
        float *y = tl_poisoned((size_t)hist * H);
        if (sh.use_cache) {
            TL_OK(forge_kv_cache_create(t.layer, 1, &cache));
            if (sh.prefix) {
                forge_seq pre = {.slot = 0, .pos0 = 0, .n_tokens = sh.prefix};
                TL_OK(tl_forward(&t, cache, &pre, 1, x, y));
            }
        }
        forge_seq seq = {.slot = 0, .pos0 = sh.use_cache ? sh.prefix : sh.pos0, .n_tokens = sh.seq};
        TL_OK(tl_forward(&t, cache, &seq, 1, x + (size_t)sh.prefix * H, y + (size_t)sh.prefix * H));
        char what[200];
        snprintf(what, sizeof what, "%s: seq %d heads %d/%d head_dim %d prefix %d pos0 %d cache %d vs %s",
                 p ? "unfused" : "flash", sh.seq, sh.heads, sh.kv_heads, sh.head_dim, sh.prefix, sh.pos0,
                 sh.use_cache, sh.vs_cpu ? "cpu" : "reference");
        tl_expect_close(y + (size_t)sh.prefix * H, want + (size_t)sh.prefix * H, (size_t)sh.seq * H,
                        sh.vs_cpu ? 2e-5 : ref_tolerance(FORGE_F32), what);
        forge_kv_cache_destroy(cache);
        free(y);
    }
    free(x);
    free(want);
    tl_free(&t);
}

static void test_lengths_and_head_dims(void **state) {
    const int dims[] = {32, 64, 80, 96, 128, 256};
    for (int d = 0; d < 6; d++) {
        for (int s = 1; s <= 33; s++) check_shape((shape){s, 4, 2, dims[d], 0, 0, 0, 0});
        const int longer[] = {64, 127, 128, 1000};
        for (int s = 0; s < 4; s++) check_shape((shape){longer[s], 4, 2, dims[d], 0, 0, 0, 0});
    }
}

static void test_heads_and_kv_heads(void **state) {
    const int heads[] = {1, 4, 32}, seqs[] = {1, 37, 128};
    for (int h = 0; h < 3; h++)
        for (int kv = 1; kv <= heads[h]; kv++) {
            if (heads[h] % kv) continue;
            for (int s = 0; s < 3; s++) check_shape((shape){seqs[s], heads[h], kv, 64, 19, 0, 1, 0});
        }
}

static void test_positions(void **state) {
    check_shape((shape){37, 4, 4, 128, 100, 0, 1, 0});  /* continuation of a cached prefix */
    check_shape((shape){1, 8, 2, 96, 250, 0, 1, 0});    /* a decode step */
    check_shape((shape){70, 4, 1, 80, 0, 5000, 0, 0});  /* no cache, far positions */
}

static void test_long_sequences(void **state) {
    check_shape((shape){4096, 4, 1, 64, 0, 0, 0, 0});
    check_shape((shape){4096, 32, 8, 128, 0, 0, 0, 1});
    check_shape((shape){3, 32, 8, 128, 2045, 0, 1, 1}); /* 3 queries over a 2048-long cache */
}

/* 70 sequences in one call (two launches of at most 64): new prompts,
 * continuations and decode steps, each against its own history. */
static void test_large_mixed_batch(void **state) {
    enum { N = 70 };
    forge_layer_config cfg = forge_layer_config_default(64, 4, 2, 32);
    cfg.max_seq = 32;
    const int H = cfg.hidden;
    test_layer t;
    tl_make(&t, FORGE_BACKEND_CUDA, &cfg, 61);
    forge_kv_cache *cache;
    TL_OK(forge_kv_cache_create(t.layer, N, &cache));
    int before[N], now[N], total = 0;
    float *hist[N];
    for (int s = 0; s < N; s++) {
        before[s] = (s * 7) % 11;  /* 0: a new prompt */
        now[s] = 1 + (s * 3) % 5;  /* 1: a decode step */
        hist[s] = tl_random((size_t)(before[s] + now[s]) * H, 62 + (uint64_t)s, 1.0);
        total += now[s];
    }
    for (int path = 0; path < 2; path++) {
        TL_OK(forge_layer_set_attention(t.layer, path ? FORGE_ATTENTION_UNFUSED : FORGE_ATTENTION_FLASH));
        forge_seq seqs[N];
        float *x = malloc(sizeof *x * total * H), *y = tl_poisoned((size_t)total * H);
        for (int s = 0, row = 0; s < N; row += now[s], s++) {
            TL_OK(forge_kv_cache_reset(cache, s));
            if (before[s]) {
                forge_seq pre = {.slot = s, .pos0 = 0, .n_tokens = before[s]};
                float *yp = tl_poisoned((size_t)before[s] * H);
                TL_OK(tl_forward(&t, cache, &pre, 1, hist[s], yp));
                free(yp);
            }
            seqs[s] = (forge_seq){.slot = s, .pos0 = before[s], .n_tokens = now[s]};
            memcpy(x + (size_t)row * H, hist[s] + (size_t)before[s] * H, sizeof *x * now[s] * H);
        }
        TL_OK(tl_forward(&t, cache, seqs, N, x, y));
        for (int s = 0, row = 0; s < N; row += now[s], s++) {
            double *want = tl_reference(&t, hist[s], before[s] + now[s], 0);
            char what[64];
            snprintf(what, sizeof what, "%s, sequence %d of 70", path ? "unfused" : "flash", s);
            tl_expect_close(y + (size_t)row * H, want + (size_t)before[s] * H, (size_t)now[s] * H,
                            ref_tolerance(FORGE_F32), what);
            free(want);
        }
        free(x);
        free(y);
    }
    for (int s = 0; s < N; s++) free(hist[s]);
    forge_kv_cache_destroy(cache);
    tl_free(&t);
}

/* Each stage made to fail: the default policy returns the error naming the
 * stage; the CPU policy gives the right output, counts it, and leaves a
 * cache from which the GPU carries on correctly. */
static void check_fallback(const forge_layer_config *c) {
    const forge_layer_config cfg = *c;
    const int H = cfg.hidden;
    float *x = tl_random((size_t)12 * H, 81, 1.0), *y = tl_poisoned((size_t)12 * H);
    for (int stage = 0; stage < FORGE_STAGE_COUNT; stage++) {
        test_layer t;
        tl_make(&t, FORGE_BACKEND_CUDA, &cfg, 80);
        forge_kv_cache *cache;
        TL_OK(forge_kv_cache_create(t.layer, 1, &cache));
        forge_testing_fail_stage(t.ctx, stage);
        forge_seq pre = {.slot = 0, .pos0 = 0, .n_tokens = 8};
        assert_int_equal(tl_forward(&t, cache, &pre, 1, x, y), FORGE_ERR_BACKEND);
        assert_non_null(strstr(forge_last_error(), forge_stage_name((forge_stage)stage)));
        int len;
        TL_OK(forge_kv_cache_len(cache, 0, &len));
        assert_int_equal(len, 0);
        uint64_t counts[FORGE_STAGE_COUNT];
        TL_OK(forge_context_fallback_counts(t.ctx, counts));
        for (int s = 0; s < FORGE_STAGE_COUNT; s++) assert_int_equal(counts[s], 0);

        TL_OK(forge_context_set_fallback(t.ctx, FORGE_FALLBACK_CPU));
        TL_OK(tl_forward(&t, cache, &pre, 1, x, y));
        forge_seq dec = {.slot = 0, .pos0 = 8, .n_tokens = 1};
        TL_OK(tl_forward(&t, cache, &dec, 1, x + 8 * H, y + 8 * H));
        TL_OK(forge_context_fallback_counts(t.ctx, counts));
        for (int s = 0; s < FORGE_STAGE_COUNT; s++) assert_int_equal(counts[s], s == stage ? 2 : 0);
        forge_testing_fail_stage(t.ctx, -1); /* the GPU takes over again */
        for (int p = 9; p < 12; p++) {
            dec.pos0 = p;
            TL_OK(tl_forward(&t, cache, &dec, 1, x + (size_t)p * H, y + (size_t)p * H));
        }
        double *want = tl_reference(&t, x, 12, 0);
        char what[64];
        snprintf(what, sizeof what, "fallback at %s", forge_stage_name((forge_stage)stage));
        tl_expect_close(y, want, (size_t)12 * H, ref_tolerance(cfg.dtype), what);
        free(want);
        forge_kv_cache_destroy(cache);
        tl_free(&t);
    }
    free(x);
    free(y);
}

/* fp32, and bf16 (whose cache the CPU twin reads and writes in another
 * layout) */
static void test_fallback(void **state) {
    forge_layer_config cfg = forge_layer_config_default(64, 4, 2, 16);
    cfg.max_seq = 32;
    cfg.bias = FORGE_BIAS_K | FORGE_BIAS_O;
    check_fallback(&cfg);
    cfg = forge_layer_config_default(128, 4, 2, 64);
    cfg.max_seq = 32;
    cfg.bias = FORGE_BIAS_K | FORGE_BIAS_O;
    cfg.dtype = FORGE_BF16;
    check_fallback(&cfg);
}

static void test_selfcheck_profiling_stream(void **state) {
    forge_layer_config cfg = forge_layer_config_default(128, 4, 4, 32);
    cfg.max_seq = 32;
    test_layer t;
    tl_make(&t, FORGE_BACKEND_CUDA, &cfg, 91);
    float *x = tl_random((size_t)32 * cfg.hidden, 92, 1.0), *y = tl_poisoned((size_t)32 * cfg.hidden);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = 32};
    TL_OK(forge_layer_set_selfcheck(t.layer, 0.25));
    for (int i = 0; i < 8; i++) TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    forge_selfcheck r;
    TL_OK(forge_layer_get_selfcheck(t.layer, &r));
    assert_int_equal(r.calls, 8);
    assert_int_equal(r.checked, 2);
    assert_int_equal(r.nonfinite, 0);
    if (!(r.rel_l2 < 1e-5 && r.max_abs < 1e-4)) fail_msg("self-check divergence %g / %g", r.rel_l2, r.max_abs);
    TL_OK(forge_layer_set_selfcheck(t.layer, 0.0));

    cudaStream_t stream;
    assert_int_equal(cudaStreamCreate(&stream), cudaSuccess);
    TL_OK(forge_context_set_stream(t.ctx, stream));
    TL_OK(forge_layer_set_profiling(t.layer, 1));
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    double us[FORGE_STAGE_COUNT];
    TL_OK(forge_layer_last_timings(t.layer, us));
    for (int s = 0; s < FORGE_STAGE_COUNT; s++)
        if (!(us[s] > 0.0 && us[s] < 1e6)) fail_msg("stage %d took %g us", s, us[s]);
    double *want = tl_reference(&t, x, 32, 0);
    tl_expect_close(y, want, (size_t)32 * cfg.hidden, ref_tolerance(FORGE_F32), "on the caller's stream");
    TL_OK(forge_context_set_stream(t.ctx, NULL));
    cudaStreamDestroy(stream);

    /* host memory is refused, not dereferenced */
    assert_int_equal(forge_layer_forward(t.layer, NULL, &seq, 1, x, y), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "host memory"));
    free(want);
    free(x);
    free(y);
    tl_free(&t);
}

/* The self-check of a bf16 layer compares with its CPU twin in bf16. */
static void test_selfcheck_bf16(void **state) {
    forge_layer_config cfg = forge_layer_config_default(256, 4, 2, 128);
    cfg.max_seq = 64;
    cfg.dtype = FORGE_BF16;
    test_layer t;
    tl_make(&t, FORGE_BACKEND_CUDA, &cfg, 93);
    float *x = tl_random((size_t)50 * cfg.hidden, 94, 1.0), *y = tl_poisoned((size_t)50 * cfg.hidden);
    forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = 50};
    TL_OK(forge_layer_set_selfcheck(t.layer, 1.0));
    TL_OK(tl_forward(&t, NULL, &seq, 1, x, y));
    forge_selfcheck r;
    TL_OK(forge_layer_get_selfcheck(t.layer, &r));
    assert_int_equal(r.checked, 1);
    assert_int_equal(r.nonfinite, 0);
    if (!(r.rel_l2 > 0.0 && r.rel_l2 < ref_tolerance(FORGE_BF16)))
        fail_msg("bf16 self-check: relative L2 %g against the CPU twin", r.rel_l2);
    free(x);
    free(y);
    tl_free(&t);
}

/* Attention alone captured into a CUDA graph on the caller's stream (in
 * global mode, so any host sync or copy would fail the capture) and
 * replayed gives exactly the eager call's output, every replay into a
 * poisoned output: on the Hopper kernel (head dim 128) and the portable
 * one (96). 32 heads make 288 work items, more than a persistent grid's
 * blocks, so each launch must find the work counters zeroed by the last. */
static void test_attention_graph(void **state) {
    static const int q_offsets[] = {0, 100, 400, 407}, kv_offsets[] = {0, 100, 500, 507};
    static const int dims[] = {128, 96};
    forge_context *ctx;
    TL_OK(forge_context_create(FORGE_BACKEND_CUDA, &ctx));
    cudaStream_t stream;
    assert_int_equal(cudaStreamCreate(&stream), cudaSuccess);
    TL_OK(forge_context_set_stream(ctx, stream));
    for (int i = 0; i < 2; i++) {
        const int D = dims[i];
        const size_t nq = (size_t)407 * 32 * D, nk = (size_t)507 * 8 * D, bytes = 2 * nq;
        float *host = tl_random(nq > nk ? nq : nk, 900 + i, 1.0);
        uint16_t *raw = malloc(2 * (nq > nk ? nq : nk)), *eager = malloc(bytes), *replayed = malloc(bytes);
        TL_OK(forge_convert(raw, FORGE_BF16, host, FORGE_F32, nq > nk ? nq : nk));
        /* v: the same values shifted by one (raw holds nq > nk + 1 of them) */
        void *q = tl_device_copy(ctx, raw, bytes), *k = tl_device_copy(ctx, raw, 2 * nk);
        void *v = tl_device_copy(ctx, raw + 1, 2 * nk), *out = tl_device_copy(ctx, raw, bytes);
        const forge_attention_args a = {.dtype = FORGE_BF16, .batch = 3, .heads = 32, .kv_heads = 8, .head_dim = D,
                                        .q_offsets = q_offsets, .kv_offsets = kv_offsets, .q = q, .k = k, .v = v,
                                        .out = out, .causal = 1};
        TL_OK(forge_attention_forward(ctx, &a));
        TL_OK(forge_buffer_download(ctx, eager, out, bytes));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        assert_int_equal(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
        const forge_status st = forge_attention_forward(ctx, &a);
        assert_int_equal(cudaStreamEndCapture(stream, &graph), cudaSuccess);
        TL_OK(st);
        assert_int_equal(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
        for (int r = 0; r < 2; r++) {
            memset(replayed, 0xff, bytes); /* NaN */
            TL_OK(forge_buffer_upload(ctx, out, replayed, bytes));
            assert_int_equal(cudaGraphLaunch(exec, stream), cudaSuccess);
            TL_OK(forge_buffer_download(ctx, replayed, out, bytes));
            if (memcmp(eager, replayed, bytes) != 0)
                fail_msg("head dim %d: replay %d of the graph gives another output", D, r);
        }
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        forge_buffer_free(ctx, q);
        forge_buffer_free(ctx, k);
        forge_buffer_free(ctx, v);
        forge_buffer_free(ctx, out);
        free(host), free(raw), free(eager), free(replayed);
    }
    TL_OK(forge_context_set_stream(ctx, NULL));
    cudaStreamDestroy(stream);
    forge_context_destroy(ctx);
}

int main(void) {
    tl_require_backend(FORGE_BACKEND_CUDA);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths_and_head_dims),
        cmocka_unit_test(test_heads_and_kv_heads),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_long_sequences),
        cmocka_unit_test(test_large_mixed_batch),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_selfcheck_profiling_stream),
        cmocka_unit_test(test_selfcheck_bf16),
        cmocka_unit_test(test_attention_graph),
    };
    return cmocka_run_group_tests_name("cuda", tests, NULL, NULL);
}
