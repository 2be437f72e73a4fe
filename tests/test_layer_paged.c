/* SPDX-License-Identifier: Apache-2.0 */
/* test_layer_paged.c: the attention layer over a paged KV cache, and graphs
 * of its batch decode steps. Every output is checked against the float64
 * reference of its sequence run whole, and against forge_layer_forward
 * over a contiguous cache fed the same tokens, on fresh random inputs;
 * outputs start poisoned with NaN.
 *
 * Batches that mix prompts, chunks and decode steps of sequences of
 * different lengths, page tables out of order, every dtype and the paged
 * kernels' head dims, forks that share a prefix, graphs replayed along a
 * decode loop (also after another call has grown the workspace), a fixed
 * split size that makes a step independent of the batch's lengths, running
 * out of pages, a failing backend stage, and the argument checks: a
 * failed call leaves every sequence and page as it was.
 *
 *   test_layer_paged [cpu|cuda]   backend under test */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "test_util.h"

static forge_backend g_backend = FORGE_BACKEND_CPU;

enum { MAX_SEQS = 8, MAX_LEN = 256 };

/* A layer, a paged cache and a contiguous one fed the same tokens, and on
 * the host every token's input and outputs so far, per sequence. */
typedef struct {
    test_layer t;
    forge_paged_cache *cache;
    forge_kv_cache *contiguous;
    int n;                  /* sequences                          */
    int id[MAX_SEQS];       /* their ids in the paged cache       */
    int len[MAX_SEQS];
    float *x[MAX_SEQS];     /* [MAX_LEN, hidden], fresh random    */
    float *y[MAX_SEQS];     /* [MAX_LEN, hidden]: paged outputs   */
    float *y_contiguous[MAX_SEQS];
} bench;

static forge_layer_config layer_config(forge_dtype dtype, int head_dim) {
    forge_layer_config cfg = forge_layer_config_default(128, 4, 2, head_dim);
    cfg.dtype = dtype;
    cfg.max_seq = MAX_LEN;
    cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V;
    return cfg;
}

static forge_paged_config cache_config(const forge_layer_config *cfg, int page_size, int n_pages) {
    return (forge_paged_config){.dtype = cfg->dtype, .kv_heads = cfg->kv_heads, .head_dim = cfg->head_dim,
                                .page_size = page_size, .n_pages = n_pages, .max_seqs = MAX_SEQS,
                                .max_seq_len = MAX_LEN};
}

static void bench_make(bench *b, forge_dtype dtype, int head_dim, int page_size, int n_pages, int n_seqs,
                       uint64_t seed) {
    memset(b, 0, sizeof *b);
    const forge_layer_config cfg = layer_config(dtype, head_dim);
    tl_make(&b->t, g_backend, &cfg, seed);
    const forge_paged_config pc = cache_config(&cfg, page_size, n_pages);
    TL_OK(forge_paged_cache_create(b->t.ctx, &pc, &b->cache));
    TL_OK(forge_kv_cache_create(b->t.layer, MAX_SEQS, &b->contiguous));
    b->n = n_seqs;
    for (int s = 0; s < n_seqs; s++) {
        TL_OK(forge_paged_seq_new(b->cache, &b->id[s]));
        b->x[s] = tl_random((size_t)MAX_LEN * cfg.hidden, seed * 31 + s, 1.0);
        b->y[s] = tl_poisoned((size_t)MAX_LEN * cfg.hidden);
        b->y_contiguous[s] = tl_poisoned((size_t)MAX_LEN * cfg.hidden);
    }
}

static void bench_free(bench *b) {
    for (int s = 0; s < b->n; s++) free(b->x[s]), free(b->y[s]), free(b->y_contiguous[s]);
    forge_kv_cache_destroy(b->contiguous);
    forge_paged_cache_destroy(b->cache);
    tl_free(&b->t);
}

/* One call of both layers: n_tokens[i] new tokens of sequence which[i]. */
static void bench_call(bench *b, int parts, const int *which, const int *n_tokens) {
    const int hidden = b->t.cfg.hidden;
    forge_seq paged[MAX_SEQS], contiguous[MAX_SEQS];
    int total = 0;
    for (int i = 0; i < parts; i++) total += n_tokens[i];
    float *x = malloc(sizeof *x * (size_t)total * hidden), *y = tl_poisoned((size_t)total * hidden);
    float *yc = tl_poisoned((size_t)total * hidden);
    assert_non_null(x);
    for (int i = 0, row = 0; i < parts; row += n_tokens[i], i++) {
        const int s = which[i];
        paged[i] = (forge_seq){.slot = b->id[s], .pos0 = b->len[s], .n_tokens = n_tokens[i]};
        contiguous[i] = (forge_seq){.slot = s, .pos0 = b->len[s], .n_tokens = n_tokens[i]};
        memcpy(x + (size_t)row * hidden, b->x[s] + (size_t)b->len[s] * hidden, sizeof *x * (size_t)n_tokens[i] * hidden);
    }
    TL_OK(tl_forward_paged(&b->t, b->cache, paged, parts, x, y));
    TL_OK(tl_forward(&b->t, b->contiguous, contiguous, parts, x, yc));
    for (int i = 0, row = 0; i < parts; row += n_tokens[i], i++) {
        const int s = which[i];
        const size_t at = (size_t)b->len[s] * hidden, n = (size_t)n_tokens[i] * hidden;
        memcpy(b->y[s] + at, y + (size_t)row * hidden, sizeof *y * n);
        memcpy(b->y_contiguous[s] + at, yc + (size_t)row * hidden, sizeof *y * n);
        b->len[s] += n_tokens[i];
        int len;
        TL_OK(forge_paged_seq_len(b->cache, b->id[s], &len));
        assert_int_equal(len, b->len[s]);
    }
    free(x);
    free(y);
    free(yc);
}

/* Every output of sequence s so far against its float64 reference and the
 * contiguous layer's (on the CPU the same arithmetic: 1e-5 apart; on CUDA
 * other kernels: the dtype's tolerance). */
static void bench_check(const bench *b, int s, const char *what) {
    const size_t n = (size_t)b->len[s] * b->t.cfg.hidden;
    double *want = tl_reference(&b->t, b->x[s], b->len[s], 0);
    char label[160];
    snprintf(label, sizeof label, "%s, sequence %d (%d tokens), %s d%d: paged against the reference", what, s,
             b->len[s], forge_dtype_name(b->t.cfg.dtype), b->t.cfg.head_dim);
    tl_expect_close(b->y[s], want, n, ref_tolerance(b->t.cfg.dtype), label);
    for (size_t i = 0; i < n; i++) want[i] = b->y_contiguous[s][i];
    snprintf(label, sizeof label, "%s, sequence %d, %s d%d: paged against contiguous", what, s,
             forge_dtype_name(b->t.cfg.dtype), b->t.cfg.head_dim);
    tl_expect_close(b->y[s], want, n, g_backend == FORGE_BACKEND_CPU ? 1e-5 : ref_tolerance(b->t.cfg.dtype), label);
    free(want);
}

/* 1 when some page of the sequence does not follow the one before it. */
static int scrambled(const bench *b, int s) {
    int pages[MAX_LEN], n;
    TL_OK(forge_paged_seq_pages(b->cache, b->id[s], pages, &n));
    for (int i = 1; i < n; i++)
        if (pages[i] != pages[i - 1] + 1) return 1;
    return 0;
}

/* Prompts in chunks beside other sequences' steps, then decode steps of the
 * whole batch, then a long chunk beside a step. */
static void check_mixed(forge_dtype dtype, int head_dim, int page_size, uint64_t seed) {
    bench b;
    bench_make(&b, dtype, head_dim, page_size, 64, 3, seed);
    const int a = 0, bb = 1, c = 2;
    bench_call(&b, 2, (int[]){a, bb}, (int[]){20, 3});
    bench_call(&b, 3, (int[]){c, a, bb}, (int[]){1, 17, 14});
    for (int step = 0; step < 3; step++) bench_call(&b, 3, (int[]){bb, c, a}, (int[]){1, 1, 1});
    bench_call(&b, 2, (int[]){bb, c}, (int[]){1, 40});
    if (page_size <= 32) assert_true(scrambled(&b, a)); /* pages 0 1 4 .. with 16 tokens a page */
    for (int s = 0; s < 3; s++) bench_check(&b, s, "mixed batches");
    bench_free(&b);
}

static int dtype_count(void) { return 3; }
static forge_dtype dtype_at(int i) { return (forge_dtype[]){FORGE_F32, FORGE_F16, FORGE_BF16}[i]; }

static void test_mixed_batches(void **state) {
    (void)state;
    for (int i = 0; i < dtype_count(); i++) check_mixed(dtype_at(i), 64, 16, 10 + i);
    check_mixed(FORGE_BF16, 128, 64, 20);
}

static void test_head_dims(void **state) {
    (void)state;
    const int dims[] = {32, 96, 256};
    for (int i = 0; i < 3; i++) check_mixed(i == 1 ? FORGE_F16 : FORGE_BF16, dims[i], 32, 30 + i);
}

/* A fork shares its source's prompt; the partial last page is copied on
 * the first step that writes into it, and each goes its own way. */
static void test_fork(void **state) {
    (void)state;
    bench b;
    bench_make(&b, FORGE_BF16, 64, 16, 32, 1, 40);
    bench_call(&b, 1, (int[]){0}, (int[]){21});
    const int hidden = b.t.cfg.hidden, src = 0, fork = 1;
    TL_OK(forge_paged_seq_fork(b.cache, b.id[src], &b.id[fork]));
    b.n = 2;
    b.x[fork] = tl_random((size_t)MAX_LEN * hidden, 41, 1.0);
    b.y[fork] = tl_poisoned((size_t)MAX_LEN * hidden);
    b.y_contiguous[fork] = tl_poisoned((size_t)MAX_LEN * hidden);
    /* the fork's prefix: the source's tokens and outputs, in the contiguous cache's slot too */
    memcpy(b.x[fork], b.x[src], sizeof(float) * 21 * hidden);
    memcpy(b.y[fork], b.y[src], sizeof(float) * 21 * hidden);
    memcpy(b.y_contiguous[fork], b.y_contiguous[src], sizeof(float) * 21 * hidden);
    forge_seq prefix = {.slot = fork, .pos0 = 0, .n_tokens = 21};
    float *scratch = tl_poisoned((size_t)21 * hidden);
    TL_OK(tl_forward(&b.t, b.contiguous, &prefix, 1, b.x[src], scratch));
    b.len[fork] = 21;
    const int free_before = forge_paged_cache_free_pages(b.cache);
    bench_call(&b, 2, (int[]){src, fork}, (int[]){1, 1});
    assert_int_equal(forge_paged_cache_free_pages(b.cache), free_before - 1); /* the copy of the partial page */
    bench_call(&b, 2, (int[]){fork, src}, (int[]){12, 1});
    TL_OK(forge_paged_seq_release(b.cache, b.id[src]));
    b.n = 2;
    forge_seq step = {.slot = b.id[fork], .pos0 = b.len[fork], .n_tokens = 1};
    float *y = tl_poisoned((size_t)hidden);
    TL_OK(tl_forward_paged(&b.t, b.cache, &step, 1, b.x[fork] + (size_t)b.len[fork] * hidden, y));
    double *want = tl_reference(&b.t, b.x[fork], b.len[fork] + 1, 0);
    tl_expect_close(y, want + (size_t)b.len[fork] * hidden, (size_t)hidden, ref_tolerance(FORGE_BF16),
                    "the fork after its source's release");
    bench_check(&b, src, "fork source");
    bench_check(&b, fork, "fork");
    free(want);
    free(y);
    free(scratch);
    bench_free(&b);
}

/* What a failed call must leave as it was. */
typedef struct {
    int len[MAX_SEQS];
    int free_pages;
} snapshot;

static snapshot snap(const bench *b) {
    snapshot s = {.free_pages = forge_paged_cache_free_pages(b->cache)};
    for (int i = 0; i < b->n; i++) TL_OK(forge_paged_seq_len(b->cache, b->id[i], &s.len[i]));
    return s;
}

static void expect_unchanged(const bench *b, const snapshot *before, const char *what) {
    const snapshot now = snap(b);
    if (memcmp(&now, before, sizeof now) != 0) fail_msg("%s changed the cache", what);
}

/* Bad calls fail with a message naming the problem, change no sequence and
 * no page, and write nothing to y. */
static void test_bad_calls(void **state) {
    (void)state;
    bench b;
    bench_make(&b, FORGE_F16, 64, 16, 5, 2, 50);
    bench_call(&b, 1, (int[]){0}, (int[]){40}); /* 3 pages of 5 */
    const forge_layer_config *cfg = &b.t.cfg;
    const size_t bytes = (size_t)(MAX_LEN + 1) * cfg->hidden * 2;
    unsigned char *poison = malloc(bytes), *back = malloc(bytes);
    memset(poison, 0xff, bytes);
    void *dx = tl_device_copy(b.t.ctx, poison, bytes), *dy = tl_device_copy(b.t.ctx, poison, bytes);
    const snapshot before = snap(&b);
    const int A = b.id[0], B = b.id[1];
    struct {
        const char *what;
        forge_seq seqs[2];
        int n;
        forge_status want;
        const char *message;
    } cases[] = {
        {"pos0 behind the length", {{A, 39, 1}}, 1, FORGE_ERR_INVALID_ARGUMENT, "appends at the end"},
        {"pos0 past the length", {{A, 41, 1}}, 1, FORGE_ERR_INVALID_ARGUMENT, "appends at the end"},
        {"a sequence twice", {{A, 40, 1}, {A, 40, 1}}, 2, FORGE_ERR_INVALID_ARGUMENT, "twice"},
        {"no tokens", {{A, 40, 0}}, 1, FORGE_ERR_INVALID_ARGUMENT, "n_tokens"},
        {"a dead sequence", {{5, 0, 1}}, 1, FORGE_ERR_INVALID_ARGUMENT, "not a live sequence"},
        {"an id out of range", {{-1, 0, 1}}, 1, FORGE_ERR_INVALID_ARGUMENT, "not a live sequence"},
        {"past max_seq_len", {{B, 0, MAX_LEN + 1}}, 1, FORGE_ERR_CAPACITY, "max_seq_len"},
        {"out of pages", {{A, 40, 1}, {B, 0, 40}}, 2, FORGE_ERR_CAPACITY, "pages"},
        {"no sequences", {{A, 40, 1}}, 0, FORGE_ERR_INVALID_ARGUMENT, "n_seqs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const forge_status st = forge_layer_forward_paged(b.t.layer, b.cache, cases[i].seqs, cases[i].n, dx, dy);
        if (st != cases[i].want || !strstr(forge_last_error(), cases[i].message) ||
            !strstr(forge_last_error(), "forge_layer_forward_paged"))
            fail_msg("%s: %s, \"%s\"", cases[i].what, forge_status_str(st), forge_last_error());
        expect_unchanged(&b, &before, cases[i].what);
    }
    const forge_seq ok = {A, 40, 1};
    assert_int_equal(forge_layer_forward_paged(NULL, b.cache, &ok, 1, dx, dy), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_layer_forward_paged(b.t.layer, NULL, &ok, 1, dx, dy), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_layer_forward_paged(b.t.layer, b.cache, NULL, 1, dx, dy), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_layer_forward_paged(b.t.layer, b.cache, &ok, 1, NULL, dy), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_layer_forward_paged(b.t.layer, b.cache, &ok, 1, dx, NULL), FORGE_ERR_INVALID_ARGUMENT);

    /* caches that do not fit the layer */
    forge_paged_config other = cache_config(cfg, 16, 4);
    forge_paged_cache *wrong;
    other.dtype = FORGE_BF16;
    TL_OK(forge_paged_cache_create(b.t.ctx, &other, &wrong));
    assert_int_equal(forge_layer_forward_paged(b.t.layer, wrong, &(forge_seq){0, 0, 1}, 1, dx, dy), FORGE_ERR_DTYPE);
    forge_paged_cache_destroy(wrong);
    other = cache_config(cfg, 16, 4);
    other.kv_heads = 1;
    TL_OK(forge_paged_cache_create(b.t.ctx, &other, &wrong));
    assert_int_equal(forge_layer_forward_paged(b.t.layer, wrong, &(forge_seq){0, 0, 1}, 1, dx, dy), FORGE_ERR_SHAPE);
    assert_non_null(strstr(forge_last_error(), "kv_heads"));
    forge_paged_cache_destroy(wrong);
    forge_context *ctx2;
    TL_OK(forge_context_create(g_backend, &ctx2));
    other = cache_config(cfg, 16, 4);
    TL_OK(forge_paged_cache_create(ctx2, &other, &wrong));
    assert_int_equal(forge_layer_forward_paged(b.t.layer, wrong, &(forge_seq){0, 0, 1}, 1, dx, dy),
                     FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "another context"));
    forge_paged_cache_destroy(wrong);
    forge_context_destroy(ctx2);

    /* a backend stage that fails gives the call's pages back (CUDA: the
     * test hook fails its stages; the CPU's cannot fail past allocation) */
    if (g_backend == FORGE_BACKEND_CUDA) {
        forge_testing_fail_stage(b.t.ctx, FORGE_STAGE_ATTENTION);
        const forge_seq grow = {B, 0, 17}; /* 2 new pages */
        assert_int_equal(forge_layer_forward_paged(b.t.layer, b.cache, &grow, 1, dx, dy), FORGE_ERR_BACKEND);
        expect_unchanged(&b, &before, "a failing stage");
        forge_testing_fail_stage(b.t.ctx, -1);
    }
    TL_OK(forge_buffer_download(b.t.ctx, back, dy, bytes));
    assert_memory_equal(back, poison, bytes);
    forge_buffer_free(b.t.ctx, dx);
    forge_buffer_free(b.t.ctx, dy);
    free(poison);
    free(back);
    bench_check(&b, 0, "after the bad calls");
    bench_free(&b);
}

/* A batch decode step recorded once and replayed along the loop: update to
 * the new lengths, upload the tokens, launch. Another call in between that
 * grows the workspace does not break the replay. */
static void check_graph(forge_dtype dtype, uint64_t seed) {
    bench b;
    bench_make(&b, dtype, 64, 16, 64, 4, seed);
    bench_call(&b, 3, (int[]){0, 1, 2}, (int[]){5, 17, 60}); /* 60: past 64 tokens, more splits than recorded */
    const int hidden = b.t.cfg.hidden, es = (int)forge_dtype_size(dtype), n = 3, steps = 6;
    const size_t bytes = (size_t)n * hidden * es;
    unsigned char *raw = malloc(bytes);
    memset(raw, 0xff, bytes);
    void *dx = tl_device_copy(b.t.ctx, raw, bytes), *dy = tl_device_copy(b.t.ctx, raw, bytes);
    forge_seq seqs[3];
    for (int i = 0; i < n; i++) seqs[i] = (forge_seq){.slot = b.id[i], .pos0 = b.len[i], .n_tokens = 1};
    forge_graph *g;
    TL_OK(forge_graph_create_paged(b.t.layer, b.cache, seqs, n, dx, dy, &g));
    int len;
    TL_OK(forge_paged_seq_len(b.cache, b.id[0], &len));
    assert_int_equal(len, 5); /* recorded, not run */
    float *x = malloc(sizeof *x * (size_t)n * hidden), *y = malloc(sizeof *y * (size_t)n * hidden);
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < n; i++) {
            seqs[i].pos0 = b.len[i];
            memcpy(x + (size_t)i * hidden, b.x[i] + (size_t)b.len[i] * hidden, sizeof *x * hidden);
        }
        TL_OK(forge_graph_update(g, seqs, n));
        if (step == 3) bench_call(&b, 1, (int[]){3}, (int[]){100}); /* moves the workspace the graph recorded */
        TL_OK(forge_convert(raw, dtype, x, FORGE_F32, (size_t)n * hidden));
        TL_OK(forge_buffer_upload(b.t.ctx, dx, raw, bytes));
        TL_OK(forge_graph_launch(g));
        TL_OK(forge_buffer_download(b.t.ctx, raw, dy, bytes));
        TL_OK(forge_convert(y, FORGE_F32, raw, dtype, (size_t)n * hidden));
        for (int i = 0; i < n; i++) {
            memcpy(b.y[i] + (size_t)b.len[i] * hidden, y + (size_t)i * hidden, sizeof *y * hidden);
            /* the contiguous layer's step, for bench_check */
            forge_seq c = {.slot = i, .pos0 = b.len[i], .n_tokens = 1};
            TL_OK(tl_forward(&b.t, b.contiguous, &c, 1, x + (size_t)i * hidden,
                             b.y_contiguous[i] + (size_t)b.len[i] * hidden));
            b.len[i]++;
            TL_OK(forge_paged_seq_len(b.cache, b.id[i], &len));
            assert_int_equal(len, b.len[i]);
        }
    }
    for (int i = 0; i < n; i++) bench_check(&b, i, "graph steps");

    /* the graph's shape is fixed; a launch at a stale position is refused
     * and changes nothing */
    forge_seq two[3];
    memcpy(two, seqs, sizeof two);
    two[1].n_tokens = 2;
    assert_int_equal(forge_graph_update(g, two, n), FORGE_ERR_SHAPE);
    assert_int_equal(forge_graph_update(g, seqs, 2), FORGE_ERR_SHAPE);
    two[1].n_tokens = 1, two[1].pos0 = MAX_LEN;
    assert_int_equal(forge_graph_update(g, two, n), FORGE_ERR_CAPACITY);
    const snapshot before = snap(&b);
    assert_int_equal(forge_graph_launch(g), FORGE_ERR_INVALID_ARGUMENT); /* seqs still at the last step's pos0 */
    assert_non_null(strstr(forge_last_error(), "forge_graph_launch"));
    expect_unchanged(&b, &before, "a stale graph launch");
    assert_int_equal(forge_graph_create_paged(b.t.layer, b.cache, seqs, n, dx, dy, NULL), FORGE_ERR_INVALID_ARGUMENT);
    forge_graph_destroy(g);
    forge_buffer_free(b.t.ctx, dx);
    forge_buffer_free(b.t.ctx, dy);
    free(raw);
    free(x);
    free(y);
    bench_free(&b);
}

static void test_graph(void **state) {
    (void)state;
    check_graph(FORGE_BF16, 60);
    check_graph(FORGE_F32, 61);
}

/* Sequence a's decode step beside a sequence of other_len tokens, in a
 * fresh cache: its output row (hidden floats) into y. */
static void step_beside(const test_layer *t, int split, int other_len, const float *xa, int a_len, const float *xo,
                        float *y) {
    const forge_paged_config pc = {.dtype = t->cfg.dtype, .kv_heads = t->cfg.kv_heads, .head_dim = t->cfg.head_dim,
                                   .page_size = 16, .n_pages = 256, .max_seqs = 2, .max_seq_len = 2048};
    const int hidden = t->cfg.hidden;
    forge_paged_cache *cache;
    int a, o;
    TL_OK(forge_paged_cache_create(t->ctx, &pc, &cache));
    TL_OK(forge_paged_seq_new(cache, &a));
    TL_OK(forge_paged_seq_new(cache, &o));
    float *scratch = tl_poisoned((size_t)(a_len > other_len ? a_len : other_len) * hidden);
    TL_OK(forge_layer_set_paged_split(t->layer, split));
    forge_seq prompt = {.slot = a, .pos0 = 0, .n_tokens = a_len};
    TL_OK(tl_forward_paged(t, cache, &prompt, 1, xa, scratch));
    prompt = (forge_seq){.slot = o, .pos0 = 0, .n_tokens = other_len};
    TL_OK(tl_forward_paged(t, cache, &prompt, 1, xo, scratch));
    const forge_seq step[2] = {{.slot = o, .pos0 = other_len, .n_tokens = 1}, {.slot = a, .pos0 = a_len, .n_tokens = 1}};
    float x[2 * 512], out[2 * 512];
    assert_true(hidden <= 512);
    memcpy(x, xo + (size_t)other_len * hidden, sizeof(float) * hidden);
    memcpy(x + hidden, xa + (size_t)a_len * hidden, sizeof(float) * hidden);
    TL_OK(tl_forward_paged(t, cache, step, 2, x, out));
    memcpy(y, out + hidden, sizeof(float) * hidden);
    free(scratch);
    forge_paged_cache_destroy(cache);
}

/* A fixed split size makes a sequence's step independent of how long the
 * others in its batch are: the same bits beside 20 tokens or 1,500. A
 * split size that is no multiple of the page size is refused. */
static void test_fixed_split(void **state) {
    (void)state;
    const forge_layer_config cfg = layer_config(FORGE_BF16, 64);
    test_layer t;
    tl_make(&t, g_backend, &cfg, 80);
    const int a_len = 300, hidden = cfg.hidden;
    float *xa = tl_random((size_t)(a_len + 1) * hidden, 81, 1.0), *xo = tl_random((size_t)1501 * hidden, 82, 1.0);
    float *beside_short = tl_poisoned((size_t)hidden), *beside_long = tl_poisoned((size_t)hidden);
    step_beside(&t, 64, 20, xa, a_len, xo, beside_short);
    step_beside(&t, 64, 1500, xa, a_len, xo, beside_long);
    assert_memory_equal(beside_short, beside_long, sizeof(float) * hidden);
    double *want = tl_reference(&t, xa, a_len + 1, 0);
    tl_expect_close(beside_long, want + (size_t)a_len * hidden, (size_t)hidden, ref_tolerance(cfg.dtype),
                    "a decode step with a fixed split size");
    forge_paged_cache *cache;
    const forge_paged_config pc = cache_config(&cfg, 16, 4);
    TL_OK(forge_paged_cache_create(t.ctx, &pc, &cache));
    int s;
    TL_OK(forge_paged_seq_new(cache, &s));
    TL_OK(forge_layer_set_paged_split(t.layer, 24));
    forge_seq one = {.slot = s, .pos0 = 0, .n_tokens = 1};
    void *dx = tl_device_copy(t.ctx, xa, sizeof(float) * hidden), *dy = tl_device_copy(t.ctx, xa, sizeof(float) * hidden);
    assert_int_equal(forge_layer_forward_paged(t.layer, cache, &one, 1, dx, dy), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "page size 16"));
    assert_int_equal(forge_layer_set_paged_split(t.layer, -64), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_layer_set_paged_split(NULL, 64), FORGE_ERR_INVALID_ARGUMENT);
    forge_buffer_free(t.ctx, dx);
    forge_buffer_free(t.ctx, dy);
    forge_paged_cache_destroy(cache);
    free(want);
    free(xa);
    free(xo);
    free(beside_short);
    free(beside_long);
    tl_free(&t);
}

/* Profiling times the four stages of a paged call too; a graph's launch
 * leaves no timings. */
static void test_profiling(void **state) {
    (void)state;
    bench b;
    bench_make(&b, FORGE_F16, 64, 16, 16, 2, 70);
    TL_OK(forge_layer_set_profiling(b.t.layer, 1));
    bench_call(&b, 2, (int[]){0, 1}, (int[]){30, 9});
    double us[FORGE_STAGE_COUNT];
    TL_OK(forge_layer_last_timings(b.t.layer, us));
    for (int s = 0; s < FORGE_STAGE_COUNT; s++) assert_true(us[s] >= 0.0 && us[s] < 1e7);
    assert_true(us[FORGE_STAGE_QKV] > 0.0 && us[FORGE_STAGE_ATTENTION] > 0.0);
    /* a CUDA graph's launch is not timed (on the CPU a graph is a plain call) */
    const int hidden = b.t.cfg.hidden;
    void *dx = tl_device_copy(b.t.ctx, b.x[0], sizeof(float) * hidden), *dy = tl_device_copy(b.t.ctx, b.x[0], sizeof(float) * hidden);
    forge_seq step = {.slot = b.id[0], .pos0 = b.len[0], .n_tokens = 1};
    forge_graph *g;
    TL_OK(forge_graph_create_paged(b.t.layer, b.cache, &step, 1, dx, dy, &g));
    TL_OK(forge_graph_launch(g));
    const forge_status st = forge_layer_last_timings(b.t.layer, us);
    if (g_backend == FORGE_BACKEND_CUDA) assert_int_equal(st, FORGE_ERR_INVALID_ARGUMENT);
    else TL_OK(st);
    forge_graph_destroy(g);
    forge_buffer_free(b.t.ctx, dx);
    forge_buffer_free(b.t.ctx, dy);
    bench_free(&b);
}

/* A paged call whose stage fails reruns on the CPU under that policy: its
 * outputs and the K and V it appended are the CPU's, and the GPU's next
 * calls go on from them; the self-check samples paged calls as it does the
 * others. A CUDA property (its test hook fails a stage; the CPU backend is
 * itself the reference), so the CPU run has nothing to check here. */
static void test_fallback_selfcheck(void **state) {
    (void)state;
    if (g_backend != FORGE_BACKEND_CUDA) return;
    bench b;
    bench_make(&b, FORGE_BF16, 64, 16, 32, 2, 90);
    bench_call(&b, 2, (int[]){0, 1}, (int[]){20, 5});
    TL_OK(forge_context_set_fallback(b.t.ctx, FORGE_FALLBACK_CPU));
    forge_testing_fail_stage(b.t.ctx, FORGE_STAGE_ATTENTION);
    bench_call(&b, 2, (int[]){0, 1}, (int[]){1, 12}); /* the paged and the slot layer both fall back */
    uint64_t counts[FORGE_STAGE_COUNT];
    TL_OK(forge_context_fallback_counts(b.t.ctx, counts));
    for (int s = 0; s < FORGE_STAGE_COUNT; s++) assert_int_equal(counts[s], s == FORGE_STAGE_ATTENTION ? 2 : 0);
    forge_testing_fail_stage(b.t.ctx, -1);
    TL_OK(forge_layer_set_selfcheck(b.t.layer, 1.0));
    bench_call(&b, 2, (int[]){0, 1}, (int[]){3, 1});
    forge_selfcheck r;
    TL_OK(forge_layer_get_selfcheck(b.t.layer, &r));
    assert_int_equal(r.checked, 2);
    assert_int_equal(r.nonfinite, 0);
    if (!(r.rel_l2 > 0.0 && r.rel_l2 < ref_tolerance(FORGE_BF16)))
        fail_msg("paged self-check: relative L2 %g against the CPU twin", r.rel_l2);
    for (int s = 0; s < 2; s++) bench_check(&b, s, "a fallback, then the GPU");
    bench_free(&b);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) g_backend = FORGE_BACKEND_CUDA;
    tl_require_backend(g_backend);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_batches), cmocka_unit_test(test_head_dims), cmocka_unit_test(test_fork),
        cmocka_unit_test(test_bad_calls),     cmocka_unit_test(test_graph),     cmocka_unit_test(test_fixed_split),
        cmocka_unit_test(test_profiling),     cmocka_unit_test(test_fallback_selfcheck),
    };
    return cmocka_run_group_tests_name(g_backend == FORGE_BACKEND_CUDA ? "layer_paged_cuda" : "layer_paged_cpu", tests,
                                       NULL, NULL);
}
