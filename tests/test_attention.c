/* SPDX-License-Identifier: Apache-2.0 */
/* test_attention.c: forge_attention_forward (attention alone, varlen batches)
 * against the float64 reference, on fresh random inputs rounded to the dtype
 * under test; outputs and log-sum-exps poisoned with NaN before every call.
 *
 * Every head dim of the tensor-core kernel, causal and not, GQA and MQA,
 * queries continuing a cached prefix, sequences with fewer keys than
 * queries or none at all, lengths that are no multiple of any tile, more
 * sequences than one launch takes, large-magnitude inputs; and the argument
 * checks. The largest error seen per dtype is printed at the end.
 *
 *   test_attention [cpu|cuda] [portable]   backend under test; portable: on
 *   CUDA, the mma.sync kernel at every head dim, also where Hopper's wgmma
 *   kernel would run */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "testing.h"

static forge_backend g_backend = FORGE_BACKEND_CPU;
static int g_portable;
static double g_worst[3];     /* largest relative L2 error seen, by dtype */
static double g_worst_lse[3]; /* largest log-sum-exp error               */

typedef struct {
    forge_dtype dtype;
    int heads, kv_heads, head_dim, causal;
    int batch;
    const int *q_lens, *kv_lens;
    double magnitude; /* deviation of q and k */
    int window;       /* 0: none */
    float softcap;    /* 0: off  */
} attn_case;

/* The dtypes the backend computes attention alone in. */
static int dtype_count(void) { return g_backend == FORGE_BACKEND_CPU ? 3 : 2; }
static forge_dtype dtype_at(int i) {
    static const forge_dtype all[] = {FORGE_BF16, FORGE_F16, FORGE_F32};
    return all[i];
}

/* n floats of deviation `scale`, rounded to dtype: *values as float, *raw
 * in the dtype (both malloc'd). */
static void random_in(size_t n, uint64_t seed, double scale, forge_dtype dtype, float **values, void **raw) {
    *values = tl_random(n ? n : 1, seed, scale);
    *raw = malloc((n ? n : 1) * forge_dtype_size(dtype));
    TL_OK(forge_convert(*raw, dtype, *values, FORGE_F32, n));
    TL_OK(forge_convert(*values, FORGE_F32, *raw, dtype, n));
}

static void check_case(const attn_case *c, uint64_t seed) {
    const int H = c->heads, Hk = c->kv_heads, D = c->head_dim;
    const size_t es = forge_dtype_size(c->dtype);
    int *qo = malloc(sizeof *qo * (size_t)(c->batch + 1)), *ko = malloc(sizeof *ko * (size_t)(c->batch + 1));
    qo[0] = ko[0] = 0;
    for (int b = 0; b < c->batch; b++) qo[b + 1] = qo[b] + c->q_lens[b], ko[b + 1] = ko[b] + c->kv_lens[b];
    const int tq = qo[c->batch], tk = ko[c->batch];
    const size_t nq = (size_t)tq * H * D, nk = (size_t)tk * Hk * D;
    float *q, *k, *v;
    void *q_raw, *k_raw, *v_raw;
    random_in(nq, seed, c->magnitude, c->dtype, &q, &q_raw);
    random_in(nk, seed + 1, c->magnitude, c->dtype, &k, &k_raw);
    random_in(nk, seed + 2, 1.0, c->dtype, &v, &v_raw);

    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    TL_OK(forge_context_set_kernel(ctx, g_portable ? FORGE_KERNEL_PORTABLE : FORGE_KERNEL_AUTO));
    /* all-ones bits are NaN in every dtype */
    unsigned char *poison = malloc(nq * es + 1);
    memset(poison, 0xff, nq * es + 1);
    void *dq = tl_device_copy(ctx, q_raw, nq * es), *dk = tl_device_copy(ctx, k_raw, nk * es);
    void *dv = tl_device_copy(ctx, v_raw, nk * es), *dout = tl_device_copy(ctx, poison, nq * es);
    float *lse = tl_poisoned((size_t)H * tq + 1);
    float *dlse = tl_device_copy(ctx, lse, sizeof(float) * (size_t)H * tq);

    forge_attention_args a = {.dtype = c->dtype, .batch = c->batch, .heads = H, .kv_heads = Hk,
                              .head_dim = D, .q_offsets = qo, .kv_offsets = ko, .q = dq, .k = dk, .v = dv,
                              .out = dout, .lse = dlse, .scale = 0.0f, .causal = c->causal,
                              .window = c->window, .softcap = c->softcap};
    TL_OK(forge_attention_forward(ctx, &a));
    void *out_raw = malloc(nq * es + 1);
    float *out = malloc(sizeof *out * (nq + 1));
    if (nq) TL_OK(forge_buffer_download(ctx, out_raw, dout, nq * es));
    if (nq) TL_OK(forge_buffer_download(ctx, lse, dlse, sizeof(float) * (size_t)H * tq));
    TL_OK(forge_convert(out, FORGE_F32, out_raw, c->dtype, nq));

    double *want = malloc(sizeof *want * (nq + 1)), *want_lse = malloc(sizeof *want_lse * ((size_t)H * tq + 1));
    for (int b = 0; b < c->batch; b++) {
        const ref_attention_shape shape = {c->q_lens[b], c->kv_lens[b], H, Hk, D, 1.0 / sqrt((double)D),
                                           c->causal, c->window, c->softcap};
        ref_attention(&shape, q + (size_t)qo[b] * H * D, k + (size_t)ko[b] * Hk * D, v + (size_t)ko[b] * Hk * D,
                      want + (size_t)qo[b] * H * D, want_lse + qo[b], tq);
    }
    char what[240];
    snprintf(what, sizeof what, "%s heads %d/%d head_dim %d %s, window %d, softcap %g, batch %d, first lengths %d/%d",
             forge_dtype_name(c->dtype), H, Hk, D, c->causal ? "causal" : "non-causal", c->window,
             (double)c->softcap, c->batch, c->q_lens[0], c->kv_lens[0]);
    const ref_error e = ref_compare(out, want, nq);
    if (e.rel_l2 > g_worst[c->dtype]) g_worst[c->dtype] = e.rel_l2;
    tl_expect_close(out, want, nq, ref_tolerance(c->dtype), what);
    for (size_t i = 0; i < (size_t)H * tq; i++) {
        const double err = isinf(want_lse[i]) ? (lse[i] == want_lse[i] ? 0.0 : INFINITY)
                                              : fabs(lse[i] - want_lse[i]) / (1.0 + fabs(want_lse[i]));
        if (err > g_worst_lse[c->dtype]) g_worst_lse[c->dtype] = err;
        if (!(err <= 1e-4))
            fail_msg("%s: lse[%zu] is %g, want %g", what, i, (double)lse[i], want_lse[i]);
    }

    forge_buffer_free(ctx, dq);
    forge_buffer_free(ctx, dk);
    forge_buffer_free(ctx, dv);
    forge_buffer_free(ctx, dout);
    forge_buffer_free(ctx, dlse);
    forge_context_destroy(ctx);
    free(qo), free(ko), free(q), free(k), free(v), free(q_raw), free(k_raw), free(v_raw);
    free(poison), free(lse), free(out_raw), free(out), free(want), free(want_lse);
}

/* Plain prefill at every head dim, causal and not, in every dtype; lengths
 * below, at and past the 64- and 128-row tiles. */
static void test_head_dims(void **state) {
    static const int dims[] = {32, 64, 96, 128, 256};
    static const int lens[] = {1, 77, 130};
    for (int i = 0; i < dtype_count(); i++)
        for (int d = 0; d < 5; d++)
            for (int causal = 0; causal <= 1; causal++) {
                attn_case c = {dtype_at(i), 2, 1, dims[d], causal, 3, lens, lens, 1.0, 0, 0};
                check_case(&c, 100 + 10 * d + causal);
            }
}

/* The CPU backend takes any head dim: decode rows (one query over up to
 * 130 keys, its own loops) and prefill at head dims that are no multiple
 * of 8, where the loops' tails run. */
static void test_any_head_dim_cpu(void **state) {
    if (g_backend != FORGE_BACKEND_CPU) skip();
    static const int dims[] = {5, 20, 36};
    static const int ones[] = {1, 1, 1}, keys[] = {1, 77, 130};
    for (int d = 0; d < 3; d++)
        for (int causal = 0; causal <= 1; causal++) {
            attn_case decode = {FORGE_F32, 4, 2, dims[d], causal, 3, ones, keys, 1.0, 0, 0};
            check_case(&decode, 200 + 10 * d + causal);
            attn_case prefill = {FORGE_F32, 4, 2, dims[d], causal, 3, keys, keys, 1.0, 0, 0};
            check_case(&prefill, 300 + 10 * d + causal);
        }
}

/* Query heads sharing KV heads: MHA, GQA 4:1, MQA. */
static void test_gqa_mqa(void **state) {
    static const int kv[] = {8, 2, 1};
    static const int lens[] = {200};
    for (int i = 0; i < 3; i++)
        for (int d = 64; d <= 128; d += 64) {
            attn_case c = {FORGE_BF16, 8, kv[i], d, 1, 1, lens, lens, 1.0, 0, 0};
            check_case(&c, 200 + i * 7 + d);
        }
}

/* Queries that continue a cached prefix: more keys than queries. */
static void test_cached_prefix(void **state) {
    static const int q_lens[] = {5, 64, 100, 1};
    static const int kv_lens[] = {37, 64, 300, 129};
    for (int i = 0; i < 2; i++)
        for (int causal = 0; causal <= 1; causal++) {
            attn_case c = {dtype_at(i), 4, 2, 128, causal, 4, q_lens, kv_lens, 1.0, 0, 0};
            check_case(&c, 300 + i * 2 + causal);
        }
}

/* Fewer keys than queries (causally, the first rows see nothing: zeros and
 * a log-sum-exp of -inf), and sequences without queries or keys. */
static void test_empty_rows(void **state) {
    static const int q_lens[] = {50, 0, 7, 20};
    static const int kv_lens[] = {20, 9, 0, 20};
    for (int causal = 0; causal <= 1; causal++) {
        attn_case c = {FORGE_F16, 2, 2, 64, causal, 4, q_lens, kv_lens, 1.0, 0, 0};
        check_case(&c, 400 + causal);
    }
}

/* No keys at all, K and V NULL: every row gets zeros and a log-sum-exp of
 * -inf, in every dtype (fp32 once answered "out of memory"). */
static void test_no_keys(void **state) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    enum { ROWS = 3, H = 2, D = 64 };
    const int q_offsets[] = {0, 1, ROWS}, kv_offsets[] = {0, 0, 0};
    for (int i = 0; i < dtype_count(); i++)
        for (int causal = 0; causal <= 1; causal++) {
            const forge_dtype dt = dtype_at(i);
            const size_t n = (size_t)ROWS * H * D, bytes = n * forge_dtype_size(dt);
            float *host = tl_poisoned(n), lse_host[H * ROWS];
            void *q = tl_device_copy(ctx, host, bytes), *out = tl_device_copy(ctx, host, bytes);
            float *lse = tl_device_copy(ctx, host, sizeof lse_host);
            const forge_attention_args a = {.dtype = dt, .batch = 2, .heads = H, .kv_heads = 1, .head_dim = D,
                                            .q_offsets = q_offsets, .kv_offsets = kv_offsets, .q = q, .out = out,
                                            .lse = lse, .causal = causal};
            TL_OK(forge_attention_forward(ctx, &a));
            unsigned char *back = malloc(bytes);
            TL_OK(forge_buffer_download(ctx, back, out, bytes));
            TL_OK(forge_buffer_download(ctx, lse_host, lse, sizeof lse_host));
            for (size_t j = 0; j < bytes; j++) assert_int_equal(back[j], 0);
            for (int j = 0; j < H * ROWS; j++) assert_true(isinf(lse_host[j]) && lse_host[j] < 0);
            free(back), free(host);
            forge_buffer_free(ctx, q), forge_buffer_free(ctx, out), forge_buffer_free(ctx, lse);
        }
    forge_context_destroy(ctx);
}

/* More sequences than one kernel launch takes (64), of ragged lengths. */
static void test_many_sequences(void **state) {
    enum { N = 70 };
    int q_lens[N], kv_lens[N];
    ref_rng rng = ref_rng_seed(500);
    for (int i = 0; i < N; i++) {
        q_lens[i] = 1 + (int)(ref_rng_uniform(&rng) * 40);
        kv_lens[i] = q_lens[i] + (int)(ref_rng_uniform(&rng) * 20);
    }
    /* 280 work items: a persistent Hopper block takes several, one after
     * the other */
    for (int d = 64; d <= 128; d += 64)
        for (int causal = 0; causal <= 1; causal++) {
            attn_case c = {FORGE_BF16, 4, 1, d, causal, N, q_lens, kv_lens, 1.0, 0, 0};
            check_case(&c, 501 + d + causal);
        }
}

/* Sequences past 1024 queries (the Hopper kernel then takes rows of 192 at
 * head dim 64, and non-causal tiles of 176 keys at 128), causal and not,
 * one over a cached prefix; no length is a multiple of 64, 128, 176 or 192.
 * At head dim 128 that is 144 work items: persistent blocks take several. */
static void test_long_sequences(void **state) {
    static const int q_lens[] = {1100, 1037};
    static const int kv_lens[] = {1100, 1300};
    for (int d = 64; d <= 128; d += 64)
        for (int causal = 0; causal <= 1; causal++) {
            attn_case c = {FORGE_BF16, 8, 2, d, causal, 2, q_lens, kv_lens, 1.0, 0, 0};
            check_case(&c, 700 + d + causal);
        }
}

/* Large scores (q and k of deviation 20: |q.k| / sqrt(d) in the hundreds)
 * must not overflow the exponentials into NaN. */
static void test_large_magnitude(void **state) {
    static const int lens[] = {150};
    for (int i = 0; i < 2; i++) {
        attn_case c = {dtype_at(i), 2, 1, 128, 1, 1, lens, lens, 20.0, 0, 0};
        check_case(&c, 600 + i);
    }
}

/* A call of one query over one key asking for a window or a soft cap
 * that the backend lacks: refused, naming the option. */
static void expect_refused(int window, float softcap, const char *names) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    const int offsets[] = {0, 1};
    void *buf;
    TL_OK(forge_buffer_alloc(ctx, 4096, &buf));
    const forge_attention_args a = {.dtype = FORGE_BF16, .batch = 1, .heads = 1, .kv_heads = 1, .head_dim = 64,
                                    .q_offsets = offsets, .kv_offsets = offsets, .q = buf, .k = buf, .v = buf,
                                    .out = buf, .causal = 1, .window = window, .softcap = softcap};
    assert_int_equal(forge_attention_forward(ctx, &a), FORGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(forge_last_error(), names));
    forge_buffer_free(ctx, buf);
    forge_context_destroy(ctx);
}

/* Sliding windows and soft-capping: windows shorter than, across and past
 * the tiles and the keys, over cached prefixes (the window counts back from
 * each query's own position) and for decode rows; scores of deviation 4
 * to 8, so that a cap of 5 bends them. Each option where the backend's
 * table takes it, both together where it takes both; else its refusal by
 * name. */
static void test_window_softcap(void **state) {
    static const int q_lens[] = {130, 1, 40, 7};
    static const int kv_lens[] = {130, 300, 200, 7};
    static const int windows[] = {1, 7, 64, 100, 500};
    const int window = tl_takes_options(g_backend, "attention alone", FORGE_ATTN_WINDOW);
    const int softcap = tl_takes_options(g_backend, "attention alone", FORGE_ATTN_SOFTCAP);
    for (int i = 0; i < dtype_count(); i++)
        for (int w = 0; w < 5; w++)
            for (int cap = 0; cap <= 1; cap++) {
                if (!window || (cap && !softcap)) continue;
                attn_case c = {dtype_at(i), 4, 2, 64, 1, 4, q_lens, kv_lens, cap ? 4.0 : 1.0, windows[w],
                               cap ? 5.0f : 0.0f};
                check_case(&c, 800 + 10 * w + cap);
            }
    for (int i = 0; softcap && i < dtype_count(); i++) { /* soft-capping alone, causal and not */
        attn_case c = {dtype_at(i), 4, 2, 128, i % 2, 4, q_lens, kv_lens, 8.0, 0, 2.5f};
        check_case(&c, 900 + i);
    }
    if (!window) expect_refused(4, 0.0f, "a sliding window is not implemented");
    if (!softcap) expect_refused(0, 30.0f, "soft-capping is not implemented");
}

/* Bad arguments: a clear error, and the output untouched. */
static void test_bad_arguments(void **state) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    const int D = 64, lens[] = {0, 8};
    void *buf;
    TL_OK(forge_buffer_alloc(ctx, sizeof(uint16_t) * 8 * 4 * D + 64, &buf));
    unsigned char sentinel[64], back[64];
    memset(sentinel, 0x5a, sizeof sentinel);
    TL_OK(forge_buffer_upload(ctx, buf, sentinel, sizeof sentinel));
    const forge_attention_args good = {.dtype = FORGE_BF16, .batch = 1, .heads = 4, .kv_heads = 2, .head_dim = D,
                                       .q_offsets = lens, .kv_offsets = lens, .q = buf, .k = buf, .v = buf,
                                       .out = buf, .causal = 1};
    const int decreasing[] = {0, -1}, not_from_zero[] = {1, 8};
    struct {
        forge_attention_args a;
        forge_status want;
    } bad[] = {
        {good, FORGE_OK},
        {good, FORGE_ERR_SHAPE},
        {good, FORGE_ERR_SHAPE},
        {good, FORGE_ERR_SHAPE},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_DTYPE},
        {good, FORGE_ERR_SHAPE},
        {good, FORGE_ERR_SHAPE},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
        {good, FORGE_ERR_INVALID_ARGUMENT},
    };
    bad[0].a.q = NULL, bad[0].want = FORGE_ERR_INVALID_ARGUMENT;
    bad[1].a.kv_heads = 3;
    bad[2].a.head_dim = 0;
    bad[3].a.head_dim = 300;
    bad[4].a.scale = -1.0f;
    bad[5].a.causal = 2;
    bad[6].a.dtype = (forge_dtype)7;
    bad[7].a.q_offsets = decreasing;
    bad[8].a.kv_offsets = not_from_zero;
    bad[9].a.batch = 0;
    bad[10].a.scale = NAN;
    bad[11].a.window = -1;
    bad[12].a.window = 8, bad[12].a.causal = 0; /* a window counts back from a causal query */
    bad[13].a.softcap = -1.0f;
    bad[14].a.softcap = INFINITY;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const forge_status st = forge_attention_forward(ctx, &bad[i].a);
        if (st != bad[i].want)
            fail_msg("case %zu: %s, want %s (%s)", i, forge_status_str(st), forge_status_str(bad[i].want),
                     forge_last_error());
        assert_true(strstr(forge_last_error(), "forge_attention_forward") != NULL);
    }
    if (g_backend == FORGE_BACKEND_CUDA) {
        forge_attention_args a = good;
        a.dtype = FORGE_F32; /* not on tensor cores */
        assert_int_equal(forge_attention_forward(ctx, &a), FORGE_ERR_UNSUPPORTED);
        a = good;
        a.head_dim = 80;
        assert_int_equal(forge_attention_forward(ctx, &a), FORGE_ERR_UNSUPPORTED);
        a = good;
        a.out = (char *)buf + 2;
        assert_int_equal(forge_attention_forward(ctx, &a), FORGE_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(forge_last_error(), "aligned"));
    }
    TL_OK(forge_buffer_download(ctx, back, buf, sizeof back));
    assert_memory_equal(back, sentinel, sizeof back);
    forge_buffer_free(ctx, buf);
    forge_context_destroy(ctx);
}

/* heads x head_dim past what a BLAS leading dimension holds (2^23 heads of
 * 256 in fp32: q_stride overflowed int, OpenBLAS printed "illegal value"
 * and the call returned FORGE_OK) is a shape error before any buffer is
 * read; so is the same over a paged cache. */
static void test_huge_heads(void **state) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    unsigned char sentinel[1024], back[1024]; /* a token's K of 256 in fp32 */
    memset(sentinel, 0x5a, sizeof sentinel);
    void *buf = tl_device_copy(ctx, sentinel, sizeof sentinel);
    const int offsets[] = {0, 1};
    const forge_attention_args a = {.dtype = g_backend == FORGE_BACKEND_CPU ? FORGE_F32 : FORGE_BF16, .batch = 1,
                                    .heads = 1 << 23, .kv_heads = 1, .head_dim = 256, .q_offsets = offsets,
                                    .kv_offsets = offsets, .q = buf, .k = buf, .v = buf, .out = buf};
    assert_int_equal(forge_attention_forward(ctx, &a), FORGE_ERR_SHAPE);
    assert_non_null(strstr(forge_last_error(), "heads 8388608 x head_dim 256"));
    const forge_paged_config pc = {.dtype = a.dtype, .kv_heads = 1, .head_dim = 256, .page_size = 16, .n_pages = 1,
                                   .max_seqs = 1, .max_seq_len = 16};
    forge_paged_cache *cache;
    int seq;
    TL_OK(forge_paged_cache_create(ctx, &pc, &cache));
    TL_OK(forge_paged_seq_new(cache, &seq));
    TL_OK(forge_paged_append(cache, 1, &seq, (int[]){1}, buf, buf));
    const forge_paged_attention_args p = {.batch = 1, .seqs = &seq, .q_offsets = offsets, .heads = 1 << 23,
                                          .q = buf, .out = buf};
    assert_int_equal(forge_paged_attention(cache, &p), FORGE_ERR_SHAPE);
    assert_non_null(strstr(forge_last_error(), "heads 8388608 x head_dim 256"));
    forge_paged_cache_destroy(cache);
    TL_OK(forge_buffer_download(ctx, back, buf, sizeof back));
    assert_memory_equal(back, sentinel, sizeof back);
    forge_buffer_free(ctx, buf);
    forge_context_destroy(ctx);
}

static int report(void **state) {
    for (int i = 0; i < dtype_count(); i++)
        printf("largest errors, %s: relative L2 %.2e, log-sum-exp %.2e\n", forge_dtype_name(dtype_at(i)),
               g_worst[dtype_at(i)], g_worst_lse[dtype_at(i)]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) g_backend = FORGE_BACKEND_CUDA;
    g_portable = argc > 2 && strcmp(argv[2], "portable") == 0;
    tl_require_backend(g_backend);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_dims),       cmocka_unit_test(test_any_head_dim_cpu),
        cmocka_unit_test(test_gqa_mqa),
        cmocka_unit_test(test_cached_prefix),   cmocka_unit_test(test_empty_rows),
        cmocka_unit_test(test_many_sequences),  cmocka_unit_test(test_long_sequences),
        cmocka_unit_test(test_large_magnitude), cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_no_keys),         cmocka_unit_test(test_huge_heads),
        cmocka_unit_test(test_window_softcap),
    };
    return cmocka_run_group_tests_name(g_portable ? "portable" : forge_backend_name(g_backend), tests, NULL, report);
}
