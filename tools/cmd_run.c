/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_run.c: `forge run`, Forge's main job. The seed report's layer (seq 32,
 * 4 heads, head_dim 32, hidden 128, float32, RoPE) with seeded random weights
 * on the best backend present: which backend ran, per-stage and total times,
 * the largest error against the float64 reference, and fallbacks. Exits 1 if
 * the error is over the float32 tolerance. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "commands.h"
#include "layer_bench.h"
#include "reference.h"

#define CMD "run"
#define SEED_SEQ 32

/* Prints the report; returns 0, or 1 when the output is out of tolerance. */
static int report(const layer_bench *b, forge_backend asked, double *us, double *wall_us, int iters,
                  const double *stage_med, const double *want) {
    const forge_layer_config *c = &b->cfg;
    ref_error err = ref_compare(b->y, want, (size_t)SEED_SEQ * c->hidden);
    double tol = ref_tolerance(c->dtype);
    printf("forge run: seed layer, seq %d, heads %d, kv_heads %d, head_dim %d, hidden %d, %s, "
           "RoPE half theta %g\n",
           SEED_SEQ, c->heads, c->kv_heads, c->head_dim, c->hidden, forge_dtype_name(c->dtype),
           (double)c->rope_theta);
    const forge_backend ran = forge_context_backend(b->ctx);
    if (asked == FORGE_BACKEND_AUTO && ran == FORGE_BACKEND_CPU &&
        forge_backend_available(FORGE_BACKEND_CUDA) != FORGE_OK)
        printf("backend: cpu (best present; not cuda: %s)\n", forge_last_error());
    else
        printf("backend: %s%s\n", forge_backend_name(ran), asked == FORGE_BACKEND_AUTO ? " (best present)" : "");
    printf("%-20s %12s   (medians of %d calls)\n", "stage", "time (us)", iters);
    for (int s = 0; s < FORGE_STAGE_COUNT; s++)
        printf("  %-18s %12.2f\n", forge_stage_name((forge_stage)s), stage_med[s]);
    printf("  %-18s %12.2f   (profiling off; %.2f on the host's clock)\n", "total",
           cli_quantile(us, iters, 0.5), cli_quantile(wall_us, iters, 0.5));
    printf("error vs float64 reference: max abs %.3g, relative L2 %.3g (tolerance %.0e), "
           "non-finite %zu\n",
           err.max_abs, err.rel_l2, tol, err.nonfinite);
    uint64_t counts[FORGE_STAGE_COUNT], any = 0;
    forge_context_fallback_counts(b->ctx, counts);
    printf("fallbacks:");
    for (int s = 0; s < FORGE_STAGE_COUNT; s++)
        if (counts[s]) printf(" %s %llu", forge_stage_name((forge_stage)s), (unsigned long long)counts[s]), any += counts[s];
    printf("%s\n", any ? "" : " none");
    if (err.nonfinite == 0 && err.rel_l2 <= tol) return CLI_OK;
    cli_error(CMD, "the output is outside the %s tolerance", forge_dtype_name(c->dtype));
    return CLI_CHECK_FAILED;
}

int cmd_run(int argc, char **argv) {
    const char *backend_name = "auto";
    int iters = 200;
    cli_opt opts[] = {{"--backend", OPT_STRING, &backend_name, 0}, {"--iters", OPT_INT, &iters, 0}};
    int rc = cli_parse(CMD, argc, argv, opts, 2);
    if (rc != CLI_OK) return rc;
    forge_backend backend;
    if ((rc = cli_backend(CMD, backend_name, &backend)) != CLI_OK) return rc;
    if (iters < 1 || iters > CLI_MAX_ITERS) return cli_usage(CMD, "--iters = %d is outside 1 .. %d", iters, CLI_MAX_ITERS);

    forge_layer_config cfg = forge_layer_config_default(128, 4, 4, 32);
    cfg.max_seq = SEED_SEQ;
    layer_bench b;
    double *us = malloc(sizeof *us * 2 * (size_t)iters);
    double *want = malloc(sizeof *want * SEED_SEQ * cfg.hidden);
    double stage_med[FORGE_STAGE_COUNT];
    rc = us && want ? CLI_OK : cli_error(CMD, "out of memory");
    if (!rc) rc = layer_bench_open(&b, CMD, backend, &cfg, 1, SEED_SEQ);
    if (!rc) rc = layer_bench_time(&b, CMD, 10, iters, us, us + iters, stage_med);
    if (!rc && ref_layer_forward(&cfg, &b.w.w, b.x, SEED_SEQ, 0, want, NULL) != 0)
        rc = cli_error(CMD, "out of memory for the reference");
    if (!rc) rc = report(&b, backend, us, us + iters, iters, stage_med, want);
    if (us && want) layer_bench_close(&b);
    free(us);
    free(want);
    return rc;
}
