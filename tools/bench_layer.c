/* SPDX-License-Identifier: Apache-2.0 */
/* bench_layer.c: `forge bench layer`, timings of the whole layer. Each timed
 * call is a prefill of `batch` sequences of `seq` tokens into emptied cache
 * slots, the work of bench/torch_baseline.py layer. eager_us and
 * graph_us are device times by forge_stopwatch, as torch_baseline.py times
 * PyTorch (CUDA events around the call), of calls with profiling off and of
 * launches of the same call recorded as a graph; *_wall_us are the host's
 * times from the call until the device is done. Per-stage medians come
 * from a second pass with profiling on.
 * With --json, one object a line with torch_baseline.py's field names. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "layer_bench.h"

#define CMD "bench layer"

typedef struct {
    int batch, seq, heads, kv_heads, head_dim, hidden, iters, warmup, json;
    forge_backend backend;
    forge_dtype dtype;
    forge_attention attention;
} bench_args;

static const char *const stage_keys[FORGE_STAGE_COUNT] = {"qkv_us", "rope_cache_us",
                                                          "attention_us", "output_us"};

/* Timings of iters calls: device time by the stopwatch, and host wall time. */
typedef struct {
    double *eager, *eager_wall, *graph, *graph_wall;
} bench_times;

static void print_result(const bench_args *a, const char *impl, const bench_times *t,
                         const double *stage_med) {
    const int n = a->iters;
    const double med = cli_quantile(t->eager, n, 0.5), p10 = cli_quantile(t->eager, n, 0.1),
                 p90 = cli_quantile(t->eager, n, 0.9), lo = t->eager[0], hi = t->eager[n - 1];
    const double graph = cli_quantile(t->graph, n, 0.5), graph_p90 = cli_quantile(t->graph, n, 0.9);
    const double eager_wall = cli_quantile(t->eager_wall, n, 0.5), graph_wall = cli_quantile(t->graph_wall, n, 0.5);
    if (a->json) {
        printf("{\"mode\": \"layer\", \"impl\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, \"seq\": %d, "
               "\"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"hidden\": %d, \"iters\": %d, "
               "\"eager_us\": %.2f, \"eager_us_p10\": %.2f, \"eager_us_p90\": %.2f, "
               "\"eager_us_min\": %.2f, \"eager_us_max\": %.2f, \"graph_us\": %.2f, \"graph_us_p90\": %.2f, "
               "\"eager_wall_us\": %.2f, \"graph_wall_us\": %.2f",
               impl, forge_dtype_name(a->dtype), a->batch, a->seq, a->heads, a->kv_heads, a->head_dim,
               a->hidden, n, med, p10, p90, lo, hi, graph, graph_p90, eager_wall, graph_wall);
        for (int s = 0; s < FORGE_STAGE_COUNT; s++) printf(", \"%s\": %.2f", stage_keys[s], stage_med[s]);
        printf("}\n");
        return;
    }
    printf("%s layer: batch %d, seq %d, heads %d, kv_heads %d, head_dim %d, hidden %d, %s\n", impl,
           a->batch, a->seq, a->heads, a->kv_heads, a->head_dim, a->hidden, forge_dtype_name(a->dtype));
    printf("  eager: median %.2f us, p10 %.2f, p90 %.2f, min %.2f, max %.2f (%d calls; wall %.2f)\n", med,
           p10, p90, lo, hi, n, eager_wall);
    printf("  graph: median %.2f us, p90 %.2f (%d launches; wall %.2f)\n", graph, graph_p90, n, graph_wall);
    for (int s = 0; s < FORGE_STAGE_COUNT; s++)
        printf("  %-18s %10.2f us (median, profiling on)\n", forge_stage_name((forge_stage)s), stage_med[s]);
}

static int time_layer(const bench_args *a) {
    forge_layer_config cfg = forge_layer_config_default(a->hidden, a->heads, a->kv_heads, a->head_dim);
    cfg.max_seq = a->seq;
    cfg.dtype = a->dtype;
    layer_bench b;
    double stage_med[FORGE_STAGE_COUNT];
    double *all = malloc(sizeof *all * 4 * (size_t)a->iters);
    if (!all) return cli_error(CMD, "out of memory");
    const bench_times t = {all, all + a->iters, all + 2 * (size_t)a->iters, all + 3 * (size_t)a->iters};
    int rc = layer_bench_open(&b, CMD, a->backend, &cfg, a->batch, a->seq);
    forge_status st;
    if (!rc && (st = forge_layer_set_attention(b.layer, a->attention)) != FORGE_OK) rc = cli_fail(CMD, st);
    if (!rc) rc = layer_bench_time(&b, CMD, a->warmup, a->iters, t.eager, t.eager_wall, stage_med);
    if (!rc) rc = layer_bench_time_graph(&b, CMD, a->warmup, a->iters, t.graph, t.graph_wall);
    if (!rc) {
        char impl[32];
        snprintf(impl, sizeof impl, "forge-%s%s", forge_backend_name(forge_context_backend(b.ctx)),
                 a->attention == FORGE_ATTENTION_UNFUSED ? "-unfused" : "");
        print_result(a, impl, &t, stage_med);
    }
    layer_bench_close(&b);
    free(all);
    return rc;
}

int bench_layer(int argc, char **argv) {
    bench_args a = {.batch = 1, .kv_heads = 0, .hidden = 0, .iters = 200, .warmup = 20};
    const char *dtype = "fp32", *backend = "auto", *attention = "flash";
    cli_opt opts[] = {
        {"--json", OPT_FLAG, &a.json, 0},        {"--seq", OPT_INT, &a.seq, 0},
        {"--heads", OPT_INT, &a.heads, 0},       {"--kv-heads", OPT_INT, &a.kv_heads, 0},
        {"--head-dim", OPT_INT, &a.head_dim, 0}, {"--hidden", OPT_INT, &a.hidden, 0},
        {"--batch", OPT_INT, &a.batch, 0},       {"--dtype", OPT_STRING, &dtype, 0},
        {"--iters", OPT_INT, &a.iters, 0},       {"--warmup", OPT_INT, &a.warmup, 0},
        {"--backend", OPT_STRING, &backend, 0},  {"--attention", OPT_STRING, &attention, 0},
    };
    int rc = cli_parse(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc != CLI_OK) return rc;
    static const int required[] = {1, 2, 4}; /* --seq, --heads, --head-dim */
    for (int i = 0; i < 3; i++)
        if (!opts[required[i]].given) return cli_usage(CMD, "%s is required", opts[required[i]].name);
    if (a.batch < 1 || a.iters < 1 || a.warmup < 0 || a.kv_heads < 0 || a.hidden < 0 || a.seq < 1 ||
        a.heads < 1 || a.head_dim < 1)
        return cli_usage(CMD, "--seq, --heads, --head-dim, --batch and --iters must be at least 1; --warmup, "
                              "--kv-heads and --hidden not negative");
    if (a.iters > CLI_MAX_ITERS || a.warmup > CLI_MAX_ITERS)
        return cli_usage(CMD, "--iters and --warmup are at most %d", CLI_MAX_ITERS);
    if (!a.kv_heads) a.kv_heads = a.heads;
    if (!a.hidden) {
        if ((int64_t)a.heads * a.head_dim > INT_MAX)
            return cli_usage(CMD, "--heads %d x --head-dim %d is past the largest hidden; give --hidden", a.heads,
                             a.head_dim);
        a.hidden = a.heads * a.head_dim;
    }
    if ((rc = cli_backend(CMD, backend, &a.backend)) != CLI_OK) return rc;
    if (strcmp(attention, "flash") == 0) a.attention = FORGE_ATTENTION_FLASH;
    else if (strcmp(attention, "unfused") == 0) a.attention = FORGE_ATTENTION_UNFUSED;
    else return cli_usage(CMD, "--attention must be flash or unfused, not '%s'", attention);
    if ((rc = cli_dtype(CMD, dtype, &a.dtype)) != CLI_OK) return rc;
    if ((int64_t)a.batch * a.seq * a.hidden > (int64_t)1 << 30)
        return cli_usage(CMD, "batch * seq * hidden is over 2^30 elements");
    return time_layer(&a);
}
