/* SPDX-License-Identifier: Apache-2.0 */
/* test_util.c: helpers shared by the tests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtype.h"
#include "test_util.h"

void tl_make(test_layer *t, forge_backend backend, const forge_layer_config *cfg, uint64_t seed) {
    t->cfg = *cfg;
    assert_int_equal(ref_random_layer_make(&t->w, cfg, seed), 0);
    TL_OK(forge_context_create(backend, &t->ctx));
    TL_OK(forge_layer_create(t->ctx, cfg, &t->w.model, &t->layer));
}

void tl_free(test_layer *t) {
    forge_layer_destroy(t->layer);
    forge_context_destroy(t->ctx);
    ref_random_layer_free(&t->w);
}

float *tl_random(size_t n, uint64_t seed, double scale) {
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    ref_rng r = ref_rng_seed(seed);
    ref_rng_fill(&r, x, n, scale);
    return x;
}

float *tl_poisoned(size_t n) {
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) y[i] = NAN;
    return y;
}

double *tl_reference(const test_layer *t, const float *x, int n_tokens, int pos0) {
    const size_t n = (size_t)n_tokens * t->cfg.hidden;
    double *want = malloc(sizeof *want * n);
    float *xr = malloc(sizeof *xr * n + 1); /* x as the layer sees it: in its dtype */
    assert_non_null(want);
    assert_non_null(xr);
    memcpy(xr, x, sizeof *xr * n);
    forge_round_to(t->cfg.dtype, xr, n);
    assert_int_equal(ref_layer_forward(&t->cfg, &t->w.w, xr, n_tokens, pos0, want, NULL), 0);
    free(xr);
    return want;
}

void tl_expect_close(const float *got, const double *want, size_t n, double tol, const char *what) {
    ref_error e = ref_compare(got, want, n);
    if (e.nonfinite || !(e.rel_l2 <= tol))
        fail_msg("%s: relative L2 %.3g (tolerance %.1g), max abs %.3g, %zu non-finite of %zu", what,
                 e.rel_l2, tol, e.max_abs, e.nonfinite, n);
}

/* A forward call through backend buffers: x converted and uploaded, y
 * poisoned, then downloaded and widened. paged NULL: forge_layer_forward
 * over cache, else forge_layer_forward_paged over paged. */
static forge_status forward_via_buffers(const test_layer *t, forge_kv_cache *cache, forge_paged_cache *paged,
                                        const forge_seq *seqs, int n_seqs, const float *x, float *y) {
    const forge_dtype dt = t->cfg.dtype;
    size_t tokens = 0;
    for (int i = 0; i < n_seqs; i++) tokens += seqs[i].n_tokens > 0 ? (size_t)seqs[i].n_tokens : 0;
    const size_t n = (tokens ? tokens : 1) * t->cfg.hidden, bytes = n * forge_dtype_size(dt);
    unsigned char *raw = malloc(bytes), *poison = malloc(bytes);
    assert_non_null(raw);
    assert_non_null(poison);
    memset(poison, 0xff, bytes); /* NaN in every dtype */
    void *dx = NULL, *dy = NULL;
    forge_status st = forge_buffer_alloc(t->ctx, bytes, &dx);
    if (st == FORGE_OK) st = forge_buffer_alloc(t->ctx, bytes, &dy);
    if (st == FORGE_OK && tokens) st = forge_convert(raw, dt, x, FORGE_F32, n);
    if (st == FORGE_OK && tokens) st = forge_buffer_upload(t->ctx, dx, raw, bytes);
    if (st == FORGE_OK) st = forge_buffer_upload(t->ctx, dy, poison, bytes);
    if (st == FORGE_OK)
        st = paged ? forge_layer_forward_paged(t->layer, paged, seqs, n_seqs, dx, dy)
                   : forge_layer_forward(t->layer, cache, seqs, n_seqs, dx, dy);
    if (st == FORGE_OK && tokens) st = forge_buffer_download(t->ctx, raw, dy, bytes);
    if (st == FORGE_OK && tokens) st = forge_convert(y, FORGE_F32, raw, dt, n);
    forge_buffer_free(t->ctx, dx);
    forge_buffer_free(t->ctx, dy);
    free(raw);
    free(poison);
    return st;
}

forge_status tl_forward(const test_layer *t, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                        const float *x, float *y) {
    return forward_via_buffers(t, cache, NULL, seqs, n_seqs, x, y);
}

forge_status tl_forward_paged(const test_layer *t, forge_paged_cache *cache, const forge_seq *seqs, int n_seqs,
                              const float *x, float *y) {
    return forward_via_buffers(t, NULL, cache, seqs, n_seqs, x, y);
}

void *tl_device_copy(forge_context *ctx, const void *host, size_t bytes) {
    void *d = NULL;
    TL_OK(forge_buffer_alloc(ctx, bytes ? bytes : 16, &d));
    if (bytes) TL_OK(forge_buffer_upload(ctx, d, host, bytes));
    return d;
}

void tl_require_backend(forge_backend backend) {
    forge_context *probe;
    if (forge_context_create(backend, &probe) != FORGE_OK) {
        printf("skipped: no %s device (%s)\n", backend == FORGE_BACKEND_CUDA ? "CUDA" : forge_backend_name(backend),
               forge_last_error());
        exit(77);
    }
    forge_context_destroy(probe);
}

int tl_takes_options(forge_backend backend, const char *operation, unsigned options) {
    for (int i = 0; i < forge_support_count(); i++) {
        const forge_support *r = forge_support_row(i);
        const int applies = r->backend == backend && (r->backend == FORGE_BACKEND_CPU ||
                                                      strncmp(r->operation, operation, strlen(operation)) == 0);
        if (applies && (r->options & options) == options) return 1;
    }
    return 0;
}

void tl_mutate(unsigned char *b, size_t *n, size_t cap, ref_rng *r, const char *interesting) {
    const size_t n_interesting = strlen(interesting);
    const int edits = 1 + (int)(ref_rng_uniform(r) * 4);
    for (int e = 0; e < edits && *n > 0; e++) {
        const size_t at = (size_t)(ref_rng_uniform(r) * (double)*n);
        const unsigned char pick = (unsigned char)interesting[(size_t)(ref_rng_uniform(r) * (double)n_interesting)];
        switch ((int)(ref_rng_uniform(r) * 6)) {
        case 0: b[at] ^= (unsigned char)(1u << (int)(ref_rng_uniform(r) * 8)); break;
        case 1: b[at] = (unsigned char)(ref_rng_uniform(r) * 256); break;
        case 2: b[at] = pick; break;
        case 3: /* a character inserted */
            if (*n < cap) {
                memmove(b + at + 1, b + at, *n - at);
                b[at] = pick;
                ++*n;
            }
            break;
        case 4: memmove(b + at, b + at + 1, *n - at - 1), --*n; break;
        default: *n = at; /* cut short */
        }
    }
}

void tl_write_file(const char *dir, const char *name, const void *b, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

double tl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double tl_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double tl_time_bound(double s) {
    const char *scale = getenv("FORGE_TEST_TIME_SCALE");
    return scale ? s * atof(scale) : s;
}
