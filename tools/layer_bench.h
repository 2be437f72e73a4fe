/* SPDX-License-Identifier: Apache-2.0 */
/* layer_bench.h: a layer with seeded random weights and a batch of prefills,
 * timed; what forge run and forge bench share. */
#ifndef FORGE_LAYER_BENCH_H
#define FORGE_LAYER_BENCH_H

#include "forge.h"
#include "testdata.h"

typedef struct {
    forge_layer_config cfg;
    int batch, seq;      /* batch sequences of seq tokens, each in its own slot */
    ref_random_layer w;  /* seeded random weights (seed 1)                      */
    forge_context *ctx;
    forge_layer *layer;
    forge_kv_cache *cache;
    forge_seq *seqs;     /* [batch]: prefills from position 0                    */
    float *x, *y;        /* [batch * seq, hidden] on the host, as floats; x seeded random (seed 2), rounded to the dtype */
    void *dx, *dy;       /* x, y where the backend computes, in the dtype          */
} layer_bench;

/* Sets up everything; returns 0, or the exit code after printing an error
 * (then layer_bench_close is still to be called). */
int layer_bench_open(layer_bench *b, const char *cmd, forge_backend backend,
                     const forge_layer_config *cfg, int batch, int seq);
void layer_bench_close(layer_bench *b);

/* `warmup` untimed calls, then `iters` timed calls with profiling off, then
 * `iters` with profiling on, whose per-stage medians go to stage_med. Each
 * call prefills every sequence into its emptied slot. us[i]: its device time
 * by forge_stopwatch (how torch_ref.py times PyTorch); wall_us[i]: the host's
 * time from the call until the device is done. Afterwards b->y holds the
 * output. Returns 0 or the exit code. */
int layer_bench_time(layer_bench *b, const char *cmd, int warmup, int iters, double *us,
                     double *wall_us, double stage_med[FORGE_STAGE_COUNT]);

/* The same call recorded once as a graph (forge_graph_create) and launched
 * `iters` times, timed likewise. */
int layer_bench_time_graph(layer_bench *b, const char *cmd, int warmup, int iters, double *us,
                           double *wall_us);

#endif
