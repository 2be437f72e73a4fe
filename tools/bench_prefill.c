/* SPDX-License-Identifier: Apache-2.0 */
/* bench_prefill.c: `forge bench prefill`, attention alone
 * (forge_attention_forward) on a batch of equal-length sequences, the work of
 * bench/torch_baseline.py prefill: q [B*S, H, D], k and v [B*S, K, D]
 * of random values, timed by forge_stopwatch (CUDA events around each call,
 * as torch_baseline.py times PyTorch). TFLOP/s counts 4 * B * H * D for
 * each (query, key) pair a query sees: S^2 pairs, halved when causal, as
 * torch_baseline.py does; with --window W, each query's min(W, position
 * + 1). --softcap C caps the scores as Gemma 2 does.
 * With --json, one object a line with torch_baseline.py's field names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "testdata.h"

#define CMD "bench prefill"

/* A device buffer of n random values of deviation 1 in dtype, or NULL. */
static void *random_buffer(forge_context *ctx, size_t n, forge_dtype dtype, uint64_t seed) {
    float *host = malloc(sizeof *host * n);
    void *raw = malloc(forge_dtype_size(dtype) * n), *dev = NULL;
    forge_status st = host && raw ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
    if (st == FORGE_OK) {
        ref_rng rng = ref_rng_seed(seed);
        for (size_t i = 0; i < n; i++) host[i] = (float)(2.0 * ref_rng_uniform(&rng) - 1.0) * 1.7320508f;
        st = forge_convert(raw, dtype, host, FORGE_F32, n);
    }
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, forge_dtype_size(dtype) * n, &dev);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, dev, raw, forge_dtype_size(dtype) * n);
    if (st != FORGE_OK) {
        cli_fail(CMD, st);
        forge_buffer_free(ctx, dev);
        dev = NULL;
    }
    free(host);
    free(raw);
    return dev;
}

int bench_prefill(int argc, char **argv) {
    cli_bench_shape sh = {.batch = 1, .iters = 30, .warmup = 5};
    int no_causal = 0, window = 0;
    double softcap = 0.0;
    const char *kernel_name = "auto";
    cli_opt extra[] = {{"--no-causal", OPT_FLAG, &no_causal, 0}, {"--kernel", OPT_STRING, &kernel_name, 0},
                       {"--window", OPT_INT, &window, 0}, {"--softcap", OPT_FLOAT, &softcap, 0}};
    const int parsed = cli_parse_bench_shape(CMD, "--seq", argc, argv, extra, 4, &sh);
    if (parsed != CLI_OK) return parsed;
    const int batch = sh.batch, seq = sh.len, heads = sh.heads, kv_heads = sh.kv_heads, head_dim = sh.head_dim;
    const int iters = sh.iters, warmup = sh.warmup, json = sh.json;
    const forge_dtype dtype = sh.dtype;
    const forge_backend backend = sh.backend;
    forge_kernel kernel;
    if (strcmp(kernel_name, "auto") == 0) kernel = FORGE_KERNEL_AUTO;
    else if (strcmp(kernel_name, "portable") == 0) kernel = FORGE_KERNEL_PORTABLE;
    else return cli_usage(CMD, "--kernel must be auto or portable, not '%s'", kernel_name);
    const int64_t tokens = (int64_t)batch * seq;
    if (tokens > 1 << 24 || tokens * heads * head_dim > (int64_t)1 << 31)
        return cli_usage(CMD, "batch * seq is over 2^24 tokens or batch * seq * heads * head_dim over 2^31 elements");

    int *offsets = malloc(sizeof *offsets * (size_t)(batch + 1));
    double *us = malloc(sizeof *us * (size_t)iters);
    if (!offsets || !us) return cli_error(CMD, "out of memory");
    for (int b = 0; b <= batch; b++) offsets[b] = b * seq;
    forge_context *ctx = NULL;
    void *q = NULL, *k = NULL, *v = NULL, *out = NULL;
    forge_status st = forge_context_create(backend, &ctx);
    if (st == FORGE_OK) st = forge_context_set_kernel(ctx, kernel);
    int rc = st == FORGE_OK ? 0 : cli_fail(CMD, st);
    const size_t nq = (size_t)tokens * heads * head_dim, nk = (size_t)tokens * kv_heads * head_dim;
    if (!rc && (!(q = random_buffer(ctx, nq, dtype, 1)) || !(k = random_buffer(ctx, nk, dtype, 2)) ||
                !(v = random_buffer(ctx, nk, dtype, 3))))
        rc = CLI_RUNTIME; /* random_buffer printed why */
    if (!rc && (st = forge_buffer_alloc(ctx, forge_dtype_size(dtype) * nq, &out)) != FORGE_OK) rc = cli_fail(CMD, st);
    const forge_attention_args a = {.dtype = dtype, .batch = batch, .heads = heads, .kv_heads = kv_heads,
                                    .head_dim = head_dim, .q_offsets = offsets, .kv_offsets = offsets,
                                    .q = q, .k = k, .v = v, .out = out, .causal = !no_causal, .window = window,
                                    .softcap = (float)softcap};
    cli_progress_start();
    for (int i = 0; !rc && i < warmup + iters; i++) {
        double t;
        cli_progress(CMD, "call", i + 1, warmup + iters);
        st = forge_stopwatch_start(ctx);
        if (st == FORGE_OK) st = forge_attention_forward(ctx, &a);
        if (st == FORGE_OK) st = forge_stopwatch_stop(ctx, &t);
        if (st != FORGE_OK) rc = cli_fail(CMD, st);
        else if (i >= warmup) us[i - warmup] = t;
    }
    cli_progress_done(CMD);
    if (!rc) {
        const double med = cli_quantile(us, iters, 0.5);
        double pairs = no_causal ? (double)seq * seq : (double)seq * seq / 2.0;
        if (window > 0 && window < seq) /* causal: query i sees min(window, i + 1) keys */
            pairs = (double)window * (window + 1) / 2.0 + (double)(seq - window) * window;
        const double flops = 4.0 * batch * heads * pairs * head_dim;
        const double tflops = flops / med / 1e6;
        const char *impl = forge_context_backend(ctx) != FORGE_BACKEND_CUDA ? "forge-cpu"
                           : kernel == FORGE_KERNEL_PORTABLE          ? "forge-cuda-portable"
                                                                      : "forge-cuda";
        if (json)
            printf("{\"mode\": \"prefill\", \"impl\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, \"heads\": %d, "
                   "\"kv_heads\": %d, \"head_dim\": %d, \"seq\": %d, \"causal\": %s, \"iters\": %d, "
                   "\"window\": %d, \"softcap\": %g, \"us\": %.2f, \"us_p10\": %.2f, \"us_p90\": %.2f, "
                   "\"TFLOPs\": %.2f}\n",
                   impl, forge_dtype_name(dtype), batch, heads, kv_heads, head_dim, seq,
                   no_causal ? "false" : "true", iters, window, softcap, med, cli_quantile(us, iters, 0.1),
                   cli_quantile(us, iters, 0.9), tflops);
        else
            printf("%s prefill: batch %d, seq %d, heads %d, kv_heads %d, head_dim %d, %s, %s, window %d, softcap %g\n"
                   "  median %.2f us (p10 %.2f, p90 %.2f, %d calls): %.2f TFLOP/s\n",
                   impl, batch, seq, heads, kv_heads, head_dim, forge_dtype_name(dtype),
                   no_causal ? "non-causal" : "causal", window, softcap, med, cli_quantile(us, iters, 0.1),
                   cli_quantile(us, iters, 0.9), iters, tflops);
    }
    forge_buffer_free(ctx, q);
    forge_buffer_free(ctx, k);
    forge_buffer_free(ctx, v);
    forge_buffer_free(ctx, out);
    forge_context_destroy(ctx);
    free(offsets);
    free(us);
    return rc;
}
