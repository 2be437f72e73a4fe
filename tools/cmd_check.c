/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_check.c: `forge check`, the backend against the float64 reference over
 * a grid of shapes (sequence lengths, heads and KV heads, the head dims of
 * the support table, cached prefixes) on both attention paths, with fresh random weights and inputs
 * for every shape and NaN-poisoned outputs. Prints a table of errors; exits 1
 * if any is over the tolerance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "reference.h"
#include "testdata.h"

#define CMD "check"

typedef struct {
    int seq, heads, kv_heads, head_dim, prefix;
} check_shape;

/* Runs seq tokens after a cached prefix on one attention path; returns the
 * error of those tokens against want (the reference of the whole history). */
static forge_status run_path(forge_context *ctx, const forge_layer_config *cfg,
                             const forge_layer_weights *w, forge_attention path,
                             const check_shape *sh, const float *x, const double *want,
                             ref_error *err) {
    const size_t H = (size_t)cfg->hidden, hist = (size_t)sh->prefix + sh->seq;
    const size_t bytes = sizeof(float) * hist * H;
    float *y = malloc(bytes);
    forge_layer *layer = NULL;
    forge_kv_cache *cache = NULL;
    void *dx = NULL, *dy = NULL;
    forge_status st = y ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
    if (st == FORGE_OK) {
        for (size_t i = 0; i < hist * H; i++) y[i] = NAN;
        st = forge_layer_create(ctx, cfg, w, &layer);
    }
    if (st == FORGE_OK) st = forge_layer_set_attention(layer, path);
    if (st == FORGE_OK) st = forge_kv_cache_create(layer, 1, &cache);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, bytes, &dx);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, bytes, &dy);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, dx, x, bytes);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, dy, y, bytes);
    forge_seq pre = {.slot = 0, .pos0 = 0, .n_tokens = sh->prefix};
    if (st == FORGE_OK && sh->prefix) st = forge_layer_forward(layer, cache, &pre, 1, dx, dy);
    forge_seq now = {.slot = 0, .pos0 = sh->prefix, .n_tokens = sh->seq};
    const size_t skip = (size_t)sh->prefix * H;
    if (st == FORGE_OK)
        st = forge_layer_forward(layer, cache, &now, 1, (const float *)dx + skip, (float *)dy + skip);
    if (st == FORGE_OK) st = forge_buffer_download(ctx, y, dy, bytes);
    if (st == FORGE_OK) *err = ref_compare(y + skip, want + skip, (size_t)sh->seq * H);
    forge_buffer_free(ctx, dx);
    forge_buffer_free(ctx, dy);
    forge_kv_cache_destroy(cache);
    forge_layer_destroy(layer);
    free(y);
    return st;
}

#define MAX_DIMS 16

/* The head dims the support table names for fp32 (forge_support_row), in
 * order: the grid's, so that every kernel's dims are checked. */
static int fp32_head_dims(int dims[MAX_DIMS]) {
    int n = 0;
    for (int d = 1; d <= 256; d++)
        for (int i = 0; i < forge_support_count() && n < MAX_DIMS; i++) {
            const forge_support *r = forge_support_row(i);
            int listed = 0;
            for (int j = 0; j < r->n_head_dims; j++) listed |= r->head_dims[j] == d;
            if (listed && (r->dtypes & (1u << FORGE_F32))) {
                dims[n++] = d;
                break;
            }
        }
    return n;
}

int cmd_check(int argc, char **argv) {
    const char *backend_name = "auto";
    cli_opt opts[] = {{"--backend", OPT_STRING, &backend_name, 0}};
    int parsed = cli_parse(CMD, argc, argv, opts, 1);
    if (parsed != CLI_OK) return parsed;
    forge_backend backend;
    if ((parsed = cli_backend(CMD, backend_name, &backend)) != CLI_OK) return parsed;
    forge_context *ctx;
    forge_status st = forge_context_create(backend, &ctx);
    if (st != FORGE_OK) return cli_fail(CMD, st);

    int dims[MAX_DIMS];
    const int n_dims = fp32_head_dims(dims);
    check_shape grid[MAX_DIMS * 12];
    int n = 0;
    const int seqs[] = {1, 17, 128}, heads[][2] = {{4, 4}, {4, 1}, {8, 2}};
    for (int d = 0; d < n_dims; d++)
        for (int h = 0; h < 3; h++)
            for (int s = 0; s < 3; s++)
                grid[n++] = (check_shape){seqs[s], heads[h][0], heads[h][1], dims[d], 0};
    for (int d = 0; d < n_dims; d++) grid[n++] = (check_shape){1000, 4, 1, dims[d], 0}; /* long */
    for (int d = 0; d < n_dims; d++) grid[n++] = (check_shape){1, 8, 2, dims[d], 300};  /* decode */
    for (int d = 0; d < n_dims; d++) grid[n++] = (check_shape){33, 4, 2, dims[d], 95};  /* chunk */

    const double tol = ref_tolerance(FORGE_F32);
    printf("forge check: %s backend against the float64 reference, fp32, tolerance %.0e (relative L2)\n",
           forge_backend_name(forge_context_backend(ctx)), tol);
    printf("%6s %6s %6s %5s %8s  %-8s %10s %10s  %s\n", "prefix", "seq", "heads", "kv", "head_dim",
           "path", "rel_l2", "max_abs", "");
    int failures = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const check_shape *sh = &grid[i];
        forge_layer_config cfg = forge_layer_config_default(256, sh->heads, sh->kv_heads, sh->head_dim);
        cfg.max_seq = sh->prefix + sh->seq;
        cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O;
        const int hist = sh->prefix + sh->seq;
        ref_random_layer w;
        float *x = malloc(sizeof *x * (size_t)hist * cfg.hidden);
        double *want = malloc(sizeof *want * (size_t)hist * cfg.hidden);
        if (!x || !want || ref_random_layer_make(&w, &cfg, 1000 + (uint64_t)i) != 0) {
            free(x);
            free(want);
            rc = cli_error(CMD, "out of memory");
            break;
        }
        ref_rng rng = ref_rng_seed(2000 + (uint64_t)i);
        ref_rng_fill(&rng, x, (size_t)hist * cfg.hidden, 1.0);
        if (ref_layer_forward(&cfg, &w.w, x, hist, 0, want, NULL) != 0) rc = cli_error(CMD, "out of memory");
        for (int p = 0; p < 2 && !rc; p++) {
            ref_error err = {0};
            st = run_path(ctx, &cfg, &w.model, p ? FORGE_ATTENTION_UNFUSED : FORGE_ATTENTION_FLASH, sh, x, want, &err);
            if (st != FORGE_OK) {
                rc = cli_fail(CMD, st);
                break;
            }
            int ok = err.nonfinite == 0 && err.rel_l2 <= tol;
            failures += !ok;
            printf("%6d %6d %6d %5d %8d  %-8s %10.2e %10.2e  %s\n", sh->prefix, sh->seq, sh->heads,
                   sh->kv_heads, sh->head_dim, p ? "unfused" : "flash", err.rel_l2, err.max_abs,
                   ok ? "ok" : err.nonfinite ? "NON-FINITE" : "OVER");
        }
        ref_random_layer_free(&w);
        free(x);
        free(want);
    }
    forge_context_destroy(ctx);
    if (rc) return rc;
    printf("%d of %d checks within tolerance\n", 2 * n - failures, 2 * n);
    if (!failures) return rc;
    cli_error(CMD, "%d checks over the tolerance", failures);
    return CLI_CHECK_FAILED;
}
