/* cmd_run.c: `forge run`, Forge's main job. The seed report's layer (seq 32,
 * 4 heads, head_dim 32, hidden 128, float32, RoPE) with seeded random weights
 * on the best backend present: which backend ran, per-stage and total times,
 * the largest error against the float64 reference, and fallbacks. Exits 1 if
 * the error is over the float32 tolerance. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "reference.h"
#include "testdata.h"

#define SEED_SEQ 32

int cmd_run(int argc, char **argv) {
    const char *backend_name = "auto";
    int iters = 200;
    const cli_opt opts[] = {{"--backend", OPT_STRING, &backend_name}, {"--iters", OPT_INT, &iters}};
    if (cli_parse("run", argc, argv, opts, 2) != 0) return 1;
    forge_backend backend;
    if (cli_backend(backend_name, &backend) != 0)
        return cli_error("run", "--backend must be auto, cpu or cuda, not '%s'", backend_name);
    if (iters < 1) return cli_error("run", "--iters = %d is below 1", iters);

    forge_layer_config cfg = forge_layer_config_default(128, 4, 4, 32);
    cfg.max_seq = SEED_SEQ;
    ref_random_layer w;
    float *x = malloc(sizeof(float) * SEED_SEQ * cfg.hidden);
    float *y = malloc(sizeof(float) * SEED_SEQ * cfg.hidden);
    double *want = malloc(sizeof(double) * SEED_SEQ * cfg.hidden);
    double *us = malloc(sizeof(double) * (size_t)iters);
    double *col = malloc(sizeof(double) * (size_t)iters);
    double(*stage)[FORGE_STAGE_COUNT] = malloc(sizeof *stage * (size_t)iters);
    if (!x || !y || !want || !us || !col || !stage || ref_random_layer_make(&w, &cfg, 1) != 0)
        return cli_error("run", "out of memory");
    ref_rng rng = ref_rng_seed(2);
    ref_rng_fill(&rng, x, (size_t)SEED_SEQ * cfg.hidden, 1.0);

    forge_context *ctx = NULL;
    forge_layer *layer = NULL;
    forge_kv_cache *cache = NULL;
    forge_status st = forge_context_create(backend, &ctx);
    if (st == FORGE_OK) st = forge_layer_create(ctx, &cfg, &w.w, &layer);
    if (st == FORGE_OK) st = forge_kv_cache_create(layer, 1, &cache);
    if (st == FORGE_OK) st = forge_layer_set_profiling(layer, 1);
    if (st != FORGE_OK) return cli_fail("run", st);

    /* each call is a fresh prefill of the 32 tokens into slot 0 */
    const forge_seq seq = {.slot = 0, .pos0 = 0, .n_tokens = SEED_SEQ};
    for (int it = 0; it < iters; it++) {
        int rc = cli_time_forward("run", layer, cache, &seq, 1, x, y, it == 0 ? 10 : 0, 1, &us[it]);
        if (rc) return rc;
        forge_layer_last_timings(layer, stage[it]);
    }
    if (ref_layer_forward(&cfg, &w.w, x, SEED_SEQ, 0, want, NULL) != 0)
        return cli_error("run", "out of memory for the reference");
    ref_error err = ref_compare(y, want, (size_t)SEED_SEQ * cfg.hidden);
    double tol = ref_tolerance(cfg.dtype);

    printf("forge run: seed layer, seq %d, heads %d, kv_heads %d, head_dim %d, hidden %d, %s, "
           "RoPE half theta %g\n",
           SEED_SEQ, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.hidden,
           forge_dtype_name(cfg.dtype), (double)cfg.rope_theta);
    printf("backend: %s%s\n", forge_backend_name(forge_context_backend(ctx)),
           backend == FORGE_BACKEND_AUTO ? " (best present)" : "");
    printf("%-20s %12s   (median of %d calls, profiling on)\n", "stage", "time (us)", iters);
    for (int s = 0; s < FORGE_STAGE_COUNT; s++) {
        for (int it = 0; it < iters; it++) col[it] = stage[it][s];
        printf("  %-18s %12.2f\n", forge_stage_name((forge_stage)s), cli_quantile(col, iters, 0.5));
    }
    printf("  %-18s %12.2f\n", "total", cli_quantile(us, iters, 0.5));
    printf("error vs float64 reference: max abs %.3g, relative L2 %.3g (tolerance %.0e), "
           "non-finite %zu\n",
           err.max_abs, err.rel_l2, tol, err.nonfinite);
    printf("fallbacks: none\n");
    int ok = err.nonfinite == 0 && err.rel_l2 <= tol;
    if (!ok) fprintf(stderr, "forge run: the output is outside the float32 tolerance\n");

    forge_kv_cache_destroy(cache);
    forge_layer_destroy(layer);
    forge_context_destroy(ctx);
    ref_random_layer_free(&w);
    free(x);
    free(y);
    free(want);
    free(us);
    free(col);
    free(stage);
    return ok ? 0 : 1;
}
