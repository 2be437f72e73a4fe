/* SPDX-License-Identifier: Apache-2.0 */
/* test_paged.c: the paged KV cache and attention over it, against the
 * float64 reference and against forge_attention_forward on the same K and V
 * laid out contiguously, on fresh random inputs rounded to the dtype under
 * test; outputs and log-sum-exps poisoned with NaN before every call.
 *
 * Decode (one query a sequence) and chunked prefill (several), every dtype,
 * head dims 32 to 256, GQA, page sizes 16, 32, 64 and 128, lengths that are no
 * multiple of the page size, page tables out of order (pages released and
 * handed out again, sequences grown in turns), forks that share a prefix
 * and copy the partial page on write, running out of pages, more sequences
 * than one launch takes, a fixed split size that makes a sequence's result
 * independent of its batch, and the argument checks.
 *
 *   test_paged [cpu|cuda]   backend under test */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static forge_backend g_backend = FORGE_BACKEND_CPU;
static double g_worst[3]; /* largest relative L2 error seen, by dtype */

enum { MAX_SEQS = 96 };

/* A cache under test and, on the host, what each of its sequences holds. */
typedef struct {
    forge_context *ctx;
    forge_paged_cache *cache;
    forge_paged_config cfg;
    float *k[MAX_SEQS], *v[MAX_SEQS]; /* [len, kv_heads, head_dim], rounded to the dtype */
    int len[MAX_SEQS];
    int window;    /* the attention calls' sliding window (0: none) */
    float softcap; /* and soft cap (0: off)                         */
} world;

static void world_make(world *w, forge_dtype dtype, int kv_heads, int head_dim, int page_size, int n_pages) {
    memset(w, 0, sizeof *w);
    w->cfg = (forge_paged_config){.dtype = dtype, .kv_heads = kv_heads, .head_dim = head_dim, .page_size = page_size,
                                  .n_pages = n_pages, .max_seqs = MAX_SEQS, .max_seq_len = 8192};
    TL_OK(forge_context_create(g_backend, &w->ctx));
    TL_OK(forge_paged_cache_create(w->ctx, &w->cfg, &w->cache));
}

static void world_free(world *w) {
    forge_paged_cache_destroy(w->cache);
    forge_context_destroy(w->ctx);
    for (int s = 0; s < MAX_SEQS; s++) free(w->k[s]), free(w->v[s]);
}

static int new_seq(world *w) {
    int s;
    TL_OK(forge_paged_seq_new(w->cache, &s));
    assert_true(s >= 0 && s < MAX_SEQS);
    free(w->k[s]), free(w->v[s]);
    w->k[s] = w->v[s] = NULL, w->len[s] = 0;
    return s;
}

static void release(world *w, int s) {
    TL_OK(forge_paged_seq_release(w->cache, s));
    free(w->k[s]), free(w->v[s]);
    w->k[s] = w->v[s] = NULL, w->len[s] = 0;
}

static int fork_seq(world *w, int src) {
    int s;
    TL_OK(forge_paged_seq_fork(w->cache, src, &s));
    const size_t n = (size_t)w->len[src] * w->cfg.kv_heads * w->cfg.head_dim;
    w->k[s] = malloc(sizeof(float) * (n + 1)), w->v[s] = malloc(sizeof(float) * (n + 1));
    memcpy(w->k[s], w->k[src], sizeof(float) * n), memcpy(w->v[s], w->v[src], sizeof(float) * n);
    w->len[s] = w->len[src];
    return s;
}

/* n floats of deviation scale rounded to dtype: *values as float (malloc'd),
 * returned in the dtype (malloc'd). */
static void *random_in(size_t n, uint64_t seed, double scale, forge_dtype dtype, float **values) {
    *values = tl_random(n ? n : 1, seed, scale);
    void *raw = malloc((n ? n : 1) * forge_dtype_size(dtype));
    TL_OK(forge_convert(raw, dtype, *values, FORGE_F32, n));
    TL_OK(forge_convert(*values, FORGE_F32, raw, dtype, n));
    return raw;
}

/* forge_paged_append of fresh random K and V; what the call returns. On
 * success the host histories grow with them. */
static forge_status append(world *w, int n, const int *seqs, const int *n_tokens, uint64_t seed) {
    const size_t row = (size_t)w->cfg.kv_heads * w->cfg.head_dim, es = forge_dtype_size(w->cfg.dtype);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)n_tokens[i];
    float *k, *v;
    void *k_raw = random_in(total * row, seed, 1.0, w->cfg.dtype, &k), *v_raw = random_in(total * row, seed + 1, 1.0, w->cfg.dtype, &v);
    void *dk = tl_device_copy(w->ctx, k_raw, total * row * es), *dv = tl_device_copy(w->ctx, v_raw, total * row * es);
    const forge_status st = forge_paged_append(w->cache, n, seqs, n_tokens, dk, dv);
    if (st == FORGE_OK)
        for (int i = 0, t0 = 0; i < n; t0 += n_tokens[i], i++) {
            const int s = seqs[i], len = w->len[s] + n_tokens[i];
            w->k[s] = realloc(w->k[s], sizeof(float) * ((size_t)len * row + 1));
            w->v[s] = realloc(w->v[s], sizeof(float) * ((size_t)len * row + 1));
            memcpy(w->k[s] + (size_t)w->len[s] * row, k + (size_t)t0 * row, sizeof(float) * n_tokens[i] * row);
            memcpy(w->v[s] + (size_t)w->len[s] * row, v + (size_t)t0 * row, sizeof(float) * n_tokens[i] * row);
            w->len[s] = len;
        }
    forge_buffer_free(w->ctx, dk);
    forge_buffer_free(w->ctx, dv);
    free(k), free(v), free(k_raw), free(v_raw);
    return st;
}

/* The cache holds what the host model says, for every live sequence given. */
static void expect_contents(const world *w, int n, const int *seqs) {
    const size_t row = (size_t)w->cfg.kv_heads * w->cfg.head_dim, es = forge_dtype_size(w->cfg.dtype);
    for (int i = 0; i < n; i++) {
        const int s = seqs[i];
        int len;
        TL_OK(forge_paged_seq_len(w->cache, s, &len));
        assert_int_equal(len, w->len[s]);
        const size_t count = (size_t)len * row;
        void *k_raw = malloc(count * es + 1), *v_raw = malloc(count * es + 1);
        float *k = malloc(sizeof *k * (count + 1)), *v = malloc(sizeof *v * (count + 1));
        TL_OK(forge_paged_read(w->cache, s, k_raw, v_raw));
        TL_OK(forge_convert(k, FORGE_F32, k_raw, w->cfg.dtype, count));
        TL_OK(forge_convert(v, FORGE_F32, v_raw, w->cfg.dtype, count));
        if (count && (memcmp(k, w->k[s], sizeof *k * count) || memcmp(v, w->v[s], sizeof *v * count)))
            fail_msg("sequence %d: K or V read back differ from what was appended", s);
        free(k_raw), free(v_raw), free(k), free(v);
    }
}

/* forge_paged_attention of fresh random queries, nq[b] of them for
 * sequence seqs[b] (its last positions), checked against the float64
 * reference; the output (floats, [total_q, heads, head_dim]) is returned
 * (malloc'd), and *q_out the queries (malloc'd) when not NULL. */
static float *attend(const world *w, int batch, const int *seqs, const int *nq, int heads, int split_size,
                     uint64_t seed, float **q_out) {
    const int Hk = w->cfg.kv_heads, D = w->cfg.head_dim;
    const forge_dtype dt = w->cfg.dtype;
    const size_t es = forge_dtype_size(dt);
    int *qo = malloc(sizeof *qo * (size_t)(batch + 1));
    qo[0] = 0;
    for (int b = 0; b < batch; b++) qo[b + 1] = qo[b] + nq[b];
    const int tq = qo[batch];
    const size_t n = (size_t)tq * heads * D;
    float *q;
    void *q_raw = random_in(n, seed, 1.0, dt, &q);
    unsigned char *poison = malloc(n * es + 1);
    memset(poison, 0xff, n * es + 1); /* all-ones bits are NaN in every dtype */
    void *dq = tl_device_copy(w->ctx, q_raw, n * es), *dout = tl_device_copy(w->ctx, poison, n * es);
    float *lse = tl_poisoned((size_t)heads * tq + 1);
    float *dlse = tl_device_copy(w->ctx, lse, sizeof(float) * (size_t)heads * tq);
    const forge_paged_attention_args a = {.batch = batch, .seqs = seqs, .q_offsets = qo, .heads = heads, .q = dq,
                                          .out = dout, .lse = dlse, .split_size = split_size,
                                          .window = w->window, .softcap = w->softcap};
    TL_OK(forge_paged_attention(w->cache, &a));
    void *out_raw = malloc(n * es + 1);
    float *out = malloc(sizeof *out * (n + 1));
    if (n) TL_OK(forge_buffer_download(w->ctx, out_raw, dout, n * es));
    if (n) TL_OK(forge_buffer_download(w->ctx, lse, dlse, sizeof(float) * (size_t)heads * tq));
    TL_OK(forge_convert(out, FORGE_F32, out_raw, dt, n));

    double *want = malloc(sizeof *want * (n + 1)), *want_lse = malloc(sizeof *want_lse * ((size_t)heads * tq + 1));
    for (int b = 0; b < batch; b++) {
        const ref_attention_shape shape = {nq[b], w->len[seqs[b]], heads, Hk, D, 1.0 / sqrt((double)D), 1, w->window,
                                           w->softcap};
        ref_attention(&shape, q + (size_t)qo[b] * heads * D, w->k[seqs[b]], w->v[seqs[b]],
                      want + (size_t)qo[b] * heads * D, want_lse + qo[b], tq);
    }
    char what[200];
    snprintf(what, sizeof what, "%s heads %d/%d head_dim %d page %d split %d window %d softcap %g, batch %d",
             forge_dtype_name(dt), heads, Hk, D, w->cfg.page_size, split_size, w->window, (double)w->softcap, batch);
    const ref_error e = ref_compare(out, want, n);
    if (e.rel_l2 > g_worst[dt]) g_worst[dt] = e.rel_l2;
    tl_expect_close(out, want, n, ref_tolerance(dt), what);
    for (size_t i = 0; i < (size_t)heads * tq; i++) {
        const double err = fabs(lse[i] - want_lse[i]) / (1.0 + fabs(want_lse[i]));
        if (!(err <= 1e-4)) fail_msg("%s: lse[%zu] is %g, want %g", what, i, (double)lse[i], want_lse[i]);
    }
    forge_buffer_free(w->ctx, dq);
    forge_buffer_free(w->ctx, dout);
    forge_buffer_free(w->ctx, dlse);
    if (q_out) *q_out = q;
    else free(q);
    free(qo), free(q_raw), free(poison), free(lse), free(out_raw), free(want), free(want_lse);
    return out;
}

/* The same queries by forge_attention_forward over the sequences' K and V
 * laid out contiguously: NULL where the backend has no such kernel. */
static float *attend_contiguous(const world *w, int batch, const int *seqs, const int *nq, int heads, const float *q) {
    const int Hk = w->cfg.kv_heads, D = w->cfg.head_dim;
    const forge_dtype dt = w->cfg.dtype;
    const size_t es = forge_dtype_size(dt), row = (size_t)Hk * D;
    int *qo = malloc(sizeof *qo * (size_t)(batch + 1)), *ko = malloc(sizeof *ko * (size_t)(batch + 1));
    qo[0] = ko[0] = 0;
    for (int b = 0; b < batch; b++) qo[b + 1] = qo[b] + nq[b], ko[b + 1] = ko[b] + w->len[seqs[b]];
    const size_t n = (size_t)qo[batch] * heads * D, nkv = (size_t)ko[batch] * row;
    float *k = malloc(sizeof *k * (nkv + 1)), *v = malloc(sizeof *v * (nkv + 1));
    for (int b = 0; b < batch; b++) {
        memcpy(k + (size_t)ko[b] * row, w->k[seqs[b]], sizeof *k * w->len[seqs[b]] * row);
        memcpy(v + (size_t)ko[b] * row, w->v[seqs[b]], sizeof *v * w->len[seqs[b]] * row);
    }
    void *raw = malloc((n > nkv ? n : nkv) * es + 1);
    TL_OK(forge_convert(raw, dt, q, FORGE_F32, n));
    void *dq = tl_device_copy(w->ctx, raw, n * es), *dout = tl_device_copy(w->ctx, raw, n * es);
    TL_OK(forge_convert(raw, dt, k, FORGE_F32, nkv));
    void *dk = tl_device_copy(w->ctx, raw, nkv * es);
    TL_OK(forge_convert(raw, dt, v, FORGE_F32, nkv));
    void *dv = tl_device_copy(w->ctx, raw, nkv * es);
    const forge_attention_args a = {.dtype = dt, .batch = batch, .heads = heads, .kv_heads = Hk, .head_dim = D,
                                    .q_offsets = qo, .kv_offsets = ko, .q = dq, .k = dk, .v = dv, .out = dout,
                                    .causal = 1, .window = w->window, .softcap = w->softcap};
    float *out = NULL;
    const forge_status st = forge_attention_forward(w->ctx, &a);
    if (st == FORGE_OK) {
        out = malloc(sizeof *out * (n + 1));
        TL_OK(forge_buffer_download(w->ctx, raw, dout, n * es));
        TL_OK(forge_convert(out, FORGE_F32, raw, dt, n));
    } else if (st != FORGE_ERR_UNSUPPORTED) {
        fail_msg("forge_attention_forward: %s: %s", forge_status_str(st), forge_last_error());
    }
    forge_buffer_free(w->ctx, dq), forge_buffer_free(w->ctx, dout), forge_buffer_free(w->ctx, dk), forge_buffer_free(w->ctx, dv);
    free(qo), free(ko), free(k), free(v), free(raw);
    return out;
}

/* Paged results equal contiguous ones: bit for bit on the CPU (one code
 * computes both), within the dtype's tolerance of each other on a GPU. */
static void expect_same_as_contiguous(const world *w, int batch, const int *seqs, const int *nq, int heads,
                                      const float *q, const float *paged) {
    float *contiguous = attend_contiguous(w, batch, seqs, nq, heads, q);
    if (!contiguous) return;
    size_t n = 0;
    for (int b = 0; b < batch; b++) n += (size_t)nq[b] * heads * w->cfg.head_dim;
    if (g_backend == FORGE_BACKEND_CPU) {
        if (memcmp(contiguous, paged, sizeof *paged * n)) fail_msg("paged and contiguous results differ");
    } else {
        double *want = malloc(sizeof *want * (n + 1));
        for (size_t i = 0; i < n; i++) want[i] = contiguous[i];
        tl_expect_close(paged, want, n, ref_tolerance(w->cfg.dtype), "paged against contiguous");
        free(want);
    }
    free(contiguous);
}

/* Some sequence's pages are not in increasing order. */
static int tables_scrambled(const world *w, int n, const int *seqs) {
    for (int i = 0; i < n; i++) {
        int pages[1024], count;
        TL_OK(forge_paged_seq_pages(w->cache, seqs[i], pages, &count));
        for (int p = 1; p < count; p++)
            if (pages[p] < pages[p - 1]) return 1;
    }
    return 0;
}

/* Four sequences of 1, 17, 100 and 250 tokens, grown in turns after other
 * sequences took and gave back pages, so that their tables interleave and
 * run backwards; then a decode step and a chunk of queries over them. */
static void check_shape(forge_dtype dt, int heads, int kv_heads, int head_dim, int page_size, uint64_t seed) {
    world w;
    world_make(&w, dt, kv_heads, head_dim, page_size, 64);
    const int x = new_seq(&w), y = new_seq(&w);
    const int first[] = {5 * page_size, 3 * page_size};
    TL_OK(append(&w, 2, (int[]){x, y}, first, seed));
    release(&w, x); /* its five pages go back on top of the free stack */
    int seqs[4];
    for (int i = 0; i < 4; i++) seqs[i] = new_seq(&w);
    TL_OK(append(&w, 4, seqs, (int[]){1, 10, 50, 100}, seed + 2));
    TL_OK(append(&w, 4, seqs, (int[]){0, 7, 50, 150}, seed + 4));
    assert_true(tables_scrambled(&w, 4, seqs));
    expect_contents(&w, 4, seqs);

    float *q;
    free(attend(&w, 4, seqs, (int[]){1, 1, 1, 1}, heads, 0, seed + 6, NULL));
    float *out = attend(&w, 4, seqs, (int[]){1, 5, 33, 100}, heads, 0, seed + 7, &q);
    expect_same_as_contiguous(&w, 4, seqs, (int[]){1, 5, 33, 100}, heads, q, out);
    free(q), free(out);
    world_free(&w);
}

static int dtype_count(void) { return 3; }
static forge_dtype dtype_at(int i) {
    static const forge_dtype all[] = {FORGE_BF16, FORGE_F16, FORGE_F32};
    return all[i];
}

static void test_decode_and_chunks(void **state) {
    for (int i = 0; i < dtype_count(); i++)
        for (int d = 64; d <= 128; d += 64)
            for (int p = 16; p <= 64; p *= 4) check_shape(dtype_at(i), 8, 2, d, p, 100 + 10 * i + d + p);
}

static void test_head_dims(void **state) {
    static const int dims[] = {32, 96, 256};
    for (int i = 0; i < 3; i++) check_shape(FORGE_BF16, 4, 4, dims[i], 32, 200 + i);
    check_shape(FORGE_F16, 8, 1, 128, 16, 210); /* MQA */
    check_shape(FORGE_BF16, 8, 2, 128, 128, 211); /* pages longer than the kernel's tiles */
}

/* A paged call asking for a window or a soft cap that the backend lacks:
 * refused, naming the option. */
static void expect_refused(int window, float softcap, const char *names) {
    world w;
    world_make(&w, FORGE_BF16, 2, 64, 16, 8);
    const int s = new_seq(&w);
    TL_OK(append(&w, 1, &s, (int[]){20}, 1000));
    void *buf;
    TL_OK(forge_buffer_alloc(w.ctx, 4096, &buf));
    const forge_paged_attention_args a = {.batch = 1, .seqs = &s, .q_offsets = (int[]){0, 1}, .heads = 2,
                                          .q = buf, .out = buf, .window = window, .softcap = softcap};
    assert_int_equal(forge_paged_attention(w.cache, &a), FORGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(forge_last_error(), names));
    forge_buffer_free(w.ctx, buf);
    world_free(&w);
}

/* Sliding windows of 1 token, a page, 37 tokens (across pages) and past
 * every sequence, with and without soft-capping, for decode steps and
 * chunks whose first query's window starts pages after the sequence's
 * first; paged results equal contiguous ones. Each option where the
 * backend's table takes it, both where it takes both; else its refusal by
 * name. */
static void test_window_softcap(void **state) {
    const int window = tl_takes_options(g_backend, "paged attention", FORGE_ATTN_WINDOW);
    const int softcap = tl_takes_options(g_backend, "paged attention", FORGE_ATTN_SOFTCAP);
    static const int windows[] = {0, 1, 16, 37, 1000};
    for (int i = 0; i < dtype_count(); i++)
        for (int wi = 0; wi < 5; wi++)
            for (int cap = 0; cap <= 1; cap++) {
                if ((windows[wi] && !window) || (cap && !softcap) || (!windows[wi] && !cap)) continue;
                world w;
                const int page = wi % 2 ? 16 : 64;
                world_make(&w, dtype_at(i), 2, 64, page, 64);
                w.window = windows[wi], w.softcap = cap ? 0.5f : 0.0f;
                int seqs[3];
                for (int s = 0; s < 3; s++) seqs[s] = new_seq(&w);
                const uint64_t seed = 1100 + 100 * i + 10 * wi + cap;
                TL_OK(append(&w, 3, seqs, (int[]){3, 100, 250}, seed));
                float *q;
                free(attend(&w, 3, seqs, (int[]){1, 1, 1}, 8, 0, seed + 2, NULL));
                float *out = attend(&w, 3, seqs, (int[]){2, 40, 100}, 8, 0, seed + 3, &q);
                expect_same_as_contiguous(&w, 3, seqs, (int[]){2, 40, 100}, 8, q, out);
                free(q), free(out);
                world_free(&w);
            }
    if (!window) expect_refused(8, 0.0f, "a sliding window is not implemented");
    if (!softcap) expect_refused(0, 30.0f, "soft-capping is not implemented");
}

/* A fork shares its source's pages; an append to either copies the shared
 * partial page first, and leaves the other as it was. */
static void test_fork(void **state) {
    world w;
    world_make(&w, FORGE_BF16, 2, 64, 16, 32);
    const int a = new_seq(&w);
    TL_OK(append(&w, 1, &a, (int[]){37}, 300)); /* 2 full pages and 5 tokens of a third */
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 29);
    const int b = fork_seq(&w, a);
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 29); /* shared, not copied */
    int pa[8], pb[8], na, nb;
    TL_OK(forge_paged_seq_pages(w.cache, a, pa, &na));
    TL_OK(forge_paged_seq_pages(w.cache, b, pb, &nb));
    assert_int_equal(na, 3), assert_int_equal(nb, 3);
    assert_memory_equal(pa, pb, sizeof pa[0] * 3);

    TL_OK(append(&w, 1, &b, (int[]){4}, 301)); /* b copies the partial page */
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 28);
    TL_OK(forge_paged_seq_pages(w.cache, b, pb, &nb));
    assert_memory_equal(pa, pb, sizeof pa[0] * 2);
    assert_int_not_equal(pa[2], pb[2]);
    TL_OK(append(&w, 1, &a, (int[]){20}, 302)); /* a's partial page is its own again */
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 27);
    const int c = fork_seq(&w, b), d = fork_seq(&w, a);
    TL_OK(append(&w, 2, (int[]){c, d}, (int[]){30, 1}, 303));
    expect_contents(&w, 4, (int[]){a, b, c, d});
    free(attend(&w, 4, (int[]){a, b, c, d}, (int[]){1, 1, 3, 1}, 4, 0, 304, NULL));

    release(&w, a);
    release(&w, d);
    expect_contents(&w, 2, (int[]){b, c});
    free(attend(&w, 2, (int[]){b, c}, (int[]){1, 1}, 4, 0, 305, NULL));
    release(&w, b);
    release(&w, c);
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 32);
    world_free(&w);
}

/* Running out of pages (or past max_seq_len) is an error that changes no
 * sequence: lengths, tables, contents and the free count stay. */
static void test_out_of_pages(void **state) {
    world w;
    world_make(&w, FORGE_F16, 1, 32, 16, 6);
    const int a = new_seq(&w), b = new_seq(&w);
    TL_OK(append(&w, 2, (int[]){a, b}, (int[]){40, 20}, 400)); /* 3 + 2 pages */
    const int c = fork_seq(&w, a);
    int before[8], after[8], n_before, n_after;
    TL_OK(forge_paged_seq_pages(w.cache, a, before, &n_before));
    /* a needs 2 pages (its shared partial one copied, then one more): one is free */
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 1);
    assert_int_equal(append(&w, 2, (int[]){b, a}, (int[]){1, 9}, 401), FORGE_ERR_CAPACITY);
    assert_non_null(strstr(forge_last_error(), "pages"));
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 1);
    TL_OK(forge_paged_seq_pages(w.cache, a, after, &n_after));
    assert_int_equal(n_after, n_before);
    assert_memory_equal(before, after, sizeof before[0] * n_before);
    expect_contents(&w, 3, (int[]){a, b, c});
    /* past max_seq_len */
    assert_int_equal(append(&w, 1, &b, (int[]){8192}, 402), FORGE_ERR_CAPACITY);
    /* what fits still goes in: b's partial page has room for 12 */
    TL_OK(append(&w, 1, &b, (int[]){12}, 403));
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 1);
    TL_OK(append(&w, 1, &c, (int[]){1}, 404)); /* the copy of a's partial page takes the last */
    assert_int_equal(forge_paged_cache_free_pages(w.cache), 0);
    expect_contents(&w, 3, (int[]){a, b, c});
    free(attend(&w, 3, (int[]){a, b, c}, (int[]){2, 32, 41}, 2, 0, 405, NULL));
    world_free(&w);
}

/* More sequences than one launch takes, of ragged lengths (1 among them),
 * in one decode step; the same sequence twice in a batch. */
static void test_many_sequences(void **state) {
    enum { N = 70 };
    world w;
    world_make(&w, FORGE_BF16, 2, 128, 16, 1024);
    int seqs[N + 1], n_tokens[N], nq[N + 1];
    ref_rng rng = ref_rng_seed(500);
    for (int i = 0; i < N; i++) {
        seqs[i] = new_seq(&w);
        n_tokens[i] = i % 10 == 0 ? 1 : 1 + (int)(ref_rng_uniform(&rng) * 300);
        nq[i] = 1;
    }
    TL_OK(append(&w, N, seqs, n_tokens, 501));
    seqs[N] = seqs[3], nq[N] = 1;
    free(attend(&w, N + 1, seqs, nq, 8, 0, 502, NULL));
    world_free(&w);
}

/* With a fixed split size, a sequence's result is the same bits alone as
 * in a batch with others; without one, results stay within tolerance at
 * every split the backend picks. */
static void test_split_size(void **state) {
    world w;
    world_make(&w, FORGE_BF16, 2, 128, 16, 1024);
    int seqs[3];
    for (int i = 0; i < 3; i++) seqs[i] = new_seq(&w);
    TL_OK(append(&w, 3, seqs, (int[]){3001, 700, 5000}, 600));
    for (int split = 0; split <= 512; split += 256) {
        float *alone = attend(&w, 1, seqs, (int[]){1}, 8, split, 601, NULL);
        float *batch = attend(&w, 3, seqs, (int[]){1, 1, 1}, 8, split, 601, NULL); /* same queries for seqs[0] */
        if (split && memcmp(alone, batch, sizeof *alone * 8 * 128))
            fail_msg("split_size %d: sequence %d alone and in a batch of 3 give different bits", split, seqs[0]);
        free(alone), free(batch);
    }
    /* the split size a call would use: a fixed one as given; a chosen one
     * whole tiles of 64 on CUDA, the longest sequence on the CPU (no splits) */
    forge_paged_attention_args a = {.batch = 3, .seqs = seqs, .q_offsets = (int[]){0, 1, 2, 3}, .heads = 8};
    int used = -1, longest = 0;
    for (int i = 0; i < 3; i++) {
        int len;
        TL_OK(forge_paged_seq_len(w.cache, seqs[i], &len));
        if (len > longest) longest = len;
    }
    a.split_size = 256;
    TL_OK(forge_paged_split_size(w.cache, &a, &used));
    assert_int_equal(used, 256);
    a.split_size = 0;
    TL_OK(forge_paged_split_size(w.cache, &a, &used));
    if (g_backend == FORGE_BACKEND_CPU)
        assert_int_equal(used, longest);
    else if (used < 64 || used % 64 || used > longest + 63)
        fail_msg("chosen split size %d: not whole tiles of 64 up to the longest sequence (%d)", used, longest);
    a.split_size = 100;
    used = -1;
    assert_int_equal(forge_paged_split_size(w.cache, &a, &used), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "forge_paged_split_size"));
    assert_int_equal(used, -1);
    world_free(&w);
}

/* Bad arguments: a clear error naming the call, outputs and the cache untouched. */
static void test_bad_arguments(void **state) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    const forge_paged_config good = {.dtype = FORGE_BF16, .kv_heads = 2, .head_dim = 64, .page_size = 16,
                                     .n_pages = 8, .max_seqs = 2, .max_seq_len = 100};
    forge_paged_config bad[7];
    for (int i = 0; i < 7; i++) bad[i] = good;
    bad[0].page_size = 24, bad[1].n_pages = 0, bad[2].max_seqs = 0, bad[3].max_seq_len = 0;
    bad[4].head_dim = 300, bad[5].kv_heads = 0, bad[6].dtype = (forge_dtype)9;
    forge_paged_cache *cache = NULL;
    for (int i = 0; i < 7; i++) {
        assert_int_not_equal(forge_paged_cache_create(ctx, &bad[i], &cache), FORGE_OK);
        assert_null(cache);
        assert_non_null(strstr(forge_last_error(), "forge_paged_cache_create"));
    }
    TL_OK(forge_paged_cache_create(ctx, &good, &cache));
    int a, b, c;
    TL_OK(forge_paged_seq_new(cache, &a));
    TL_OK(forge_paged_seq_new(cache, &b));
    assert_int_equal(forge_paged_seq_new(cache, &c), FORGE_ERR_CAPACITY);
    assert_int_equal(forge_paged_seq_fork(cache, a, &c), FORGE_ERR_CAPACITY);
    assert_int_equal(forge_paged_seq_release(cache, 5), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "sequence 5"));

    unsigned char sentinel[8 * 64 * 2 * 4];
    memset(sentinel, 0x5a, sizeof sentinel);
    void *buf = tl_device_copy(ctx, sentinel, sizeof sentinel);
    assert_int_equal(forge_paged_append(cache, 2, (int[]){a, a}, (int[]){1, 1}, buf, buf), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_paged_append(cache, 1, (int[]){a}, (int[]){-1}, buf, buf), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_paged_append(cache, 1, (int[]){a}, (int[]){101}, buf, buf), FORGE_ERR_CAPACITY);
    assert_int_equal(forge_paged_append(cache, 1, (int[]){a}, (int[]){1}, NULL, buf), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_paged_append(cache, 0, (int[]){a}, (int[]){1}, buf, buf), FORGE_ERR_INVALID_ARGUMENT);
    int len;
    TL_OK(forge_paged_seq_len(cache, a, &len));
    assert_int_equal(len, 0);
    assert_int_equal(forge_paged_cache_free_pages(cache), 8);
    TL_OK(forge_paged_append(cache, 1, (int[]){a}, (int[]){3}, buf, buf));

    /* queries past what a sequence holds, heads not a multiple of kv_heads,
     * a split size off the page size, a dead sequence, offsets not from 0,
     * a negative scale or window, a soft cap that is not a number */
    const forge_paged_attention_args ok = {.batch = 1, .seqs = (int[]){a}, .q_offsets = (int[]){0, 1}, .heads = 4,
                                           .q = buf, .out = buf};
    forge_paged_attention_args e[9];
    for (int i = 0; i < 9; i++) e[i] = ok;
    e[0].q_offsets = (int[]){0, 4};
    e[1].heads = 3;
    e[2].split_size = 24;
    e[3].seqs = (int[]){b + 7};
    e[4].q_offsets = (int[]){1, 2};
    e[5].scale = -1.0f;
    e[6].out = NULL;
    e[7].window = -2;
    e[8].softcap = NAN;
    const forge_status want[] = {FORGE_ERR_SHAPE, FORGE_ERR_SHAPE, FORGE_ERR_INVALID_ARGUMENT,
                                 FORGE_ERR_INVALID_ARGUMENT, FORGE_ERR_SHAPE, FORGE_ERR_INVALID_ARGUMENT,
                                 FORGE_ERR_INVALID_ARGUMENT, FORGE_ERR_INVALID_ARGUMENT, FORGE_ERR_INVALID_ARGUMENT};
    for (int i = 0; i < 9; i++) {
        const forge_status st = forge_paged_attention(cache, &e[i]);
        if (st != want[i])
            fail_msg("case %d: %s, want %s (%s)", i, forge_status_str(st), forge_status_str(want[i]), forge_last_error());
        assert_non_null(strstr(forge_last_error(), "forge_paged_attention"));
    }
    unsigned char back[sizeof sentinel];
    TL_OK(forge_buffer_download(ctx, back, buf, sizeof back));
    assert_memory_equal(back, sentinel, sizeof back);
    forge_buffer_free(ctx, buf);
    forge_paged_cache_destroy(cache);
    forge_context_destroy(ctx);
}

/* Sizes near INT_MAX: page counts computed in 64 bits. An append of up to
 * INT_MAX tokens into 4 pages, and (on the CPU: the same host bookkeeping,
 * without an 8 GiB table on the device) 33 sequences of 2^30 tokens whose
 * page counts add up past INT_MAX, are out of capacity and change nothing.
 * A pool too large for the backend fails before any table is filled (that
 * took 29 s for INT_MAX pages when the tables came first). */
static void test_huge_sizes(void **state) {
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    unsigned char sentinel[64];
    memset(sentinel, 0x5a, sizeof sentinel);
    void *buf = tl_device_copy(ctx, sentinel, sizeof sentinel);
    forge_paged_config cfg = {.dtype = FORGE_F16, .kv_heads = 1, .head_dim = 32, .page_size = 16,
                              .n_pages = 4, .max_seqs = 1, .max_seq_len = INT_MAX};
    forge_paged_cache *cache;
    int a, len;
    TL_OK(forge_paged_cache_create(ctx, &cfg, &cache));
    TL_OK(forge_paged_seq_new(cache, &a));
    assert_int_equal(forge_paged_append(cache, 1, &a, (int[]){INT_MAX - 5}, buf, buf), FORGE_ERR_CAPACITY);
    assert_int_equal(forge_paged_append(cache, 1, &a, (int[]){INT_MAX}, buf, buf), FORGE_ERR_CAPACITY);
    TL_OK(forge_paged_seq_len(cache, a, &len));
    assert_int_equal(len, 0);
    assert_int_equal(forge_paged_cache_free_pages(cache), 4);
    forge_paged_cache_destroy(cache);

    if (g_backend == FORGE_BACKEND_CPU) {
        cfg.max_seqs = 33, cfg.max_seq_len = 1 << 30;
        TL_OK(forge_paged_cache_create(ctx, &cfg, &cache));
        int seqs[33], n_tokens[33];
        for (int i = 0; i < 33; i++) {
            TL_OK(forge_paged_seq_new(cache, &seqs[i]));
            n_tokens[i] = 1 << 30;
        }
        assert_int_equal(forge_paged_append(cache, 33, seqs, n_tokens, buf, buf), FORGE_ERR_CAPACITY);
        assert_non_null(strstr(forge_last_error(), "pages"));
        for (int i = 0; i < 33; i++) {
            TL_OK(forge_paged_seq_len(cache, seqs[i], &len));
            assert_int_equal(len, 0);
        }
        assert_int_equal(forge_paged_cache_free_pages(cache), 4);
        forge_paged_cache_destroy(cache);
    }

    /* 2^31 - 1 pages of 1 KiB: 2 TiB of K and V */
    cfg.n_pages = INT_MAX, cfg.max_seqs = 1, cfg.max_seq_len = 16;
    cache = NULL;
    const double t0 = tl_cpu_s();
    assert_int_equal(forge_paged_cache_create(ctx, &cfg, &cache), FORGE_ERR_OUT_OF_MEMORY);
    assert_null(cache);
    assert_true(tl_cpu_s() - t0 < tl_time_bound(2.0)); /* the pool's check, not a fill of 8 GiB of tables first */
    forge_buffer_free(ctx, buf);
    forge_context_destroy(ctx);
}

/* The call fn failed on its NULL cache, and its message names the
 * argument as the API does: "fn: cache is NULL". */
static void expect_cache_null(forge_status st, const char *fn) {
    assert_int_equal(st, FORGE_ERR_INVALID_ARGUMENT);
    char want[96];
    snprintf(want, sizeof want, "%s: cache is NULL", fn);
    if (strcmp(forge_last_error(), want) != 0) fail_msg("'%s', want '%s'", forge_last_error(), want);
}

/* Every message names the API's own argument (a NULL cache is "cache"). */
static void test_messages_name_arguments(void **state) {
    int n, s;
    const forge_paged_attention_args args = {.batch = 1, .seqs = (int[]){0}, .q_offsets = (int[]){0, 1}, .heads = 1};
    expect_cache_null(forge_paged_seq_release(NULL, 0), "forge_paged_seq_release");
    expect_cache_null(forge_paged_seq_len(NULL, 0, &n), "forge_paged_seq_len");
    expect_cache_null(forge_paged_seq_pages(NULL, 0, NULL, &n), "forge_paged_seq_pages");
    expect_cache_null(forge_paged_read(NULL, 0, NULL, NULL), "forge_paged_read");
    expect_cache_null(forge_paged_seq_fork(NULL, 0, &s), "forge_paged_seq_fork");
    expect_cache_null(forge_paged_seq_new(NULL, &s), "forge_paged_seq_new");
    expect_cache_null(forge_paged_append(NULL, 1, (int[]){0}, (int[]){1}, NULL, NULL), "forge_paged_append");
    expect_cache_null(forge_paged_attention(NULL, &args), "forge_paged_attention");
}

static int report(void **state) {
    for (int i = 0; i < dtype_count(); i++)
        printf("largest errors, %s: relative L2 %.2e\n", forge_dtype_name(dtype_at(i)), g_worst[dtype_at(i)]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) g_backend = FORGE_BACKEND_CUDA;
    tl_require_backend(g_backend);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_and_chunks), cmocka_unit_test(test_head_dims),
        cmocka_unit_test(test_fork),              cmocka_unit_test(test_out_of_pages),
        cmocka_unit_test(test_many_sequences),    cmocka_unit_test(test_split_size),
        cmocka_unit_test(test_bad_arguments),     cmocka_unit_test(test_huge_sizes),
        cmocka_unit_test(test_messages_name_arguments), cmocka_unit_test(test_window_softcap),
    };
    return cmocka_run_group_tests_name(forge_backend_name(g_backend), tests, NULL, report);
}
