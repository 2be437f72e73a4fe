/* SPDX-License-Identifier: Apache-2.0 */
/* minimal.c: one attention layer through Forge's C API: a prefill of four
 * tokens, then one decode step, on the best backend present. */
#include <forge.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    enum { HIDDEN = 64, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16 };
    forge_layer_config cfg = forge_layer_config_default(HIDDEN, HEADS, KV_HEADS, HEAD_DIM);
    cfg.max_seq = 128;

    /* weights in Hugging Face layout, [out_features, in_features] */
    static float wq[HEADS * HEAD_DIM * HIDDEN], wk[KV_HEADS * HEAD_DIM * HIDDEN],
        wv[KV_HEADS * HEAD_DIM * HIDDEN], wo[HIDDEN * HEADS * HEAD_DIM];
    float *all[] = {wq, wk, wv, wo};
    size_t sizes[] = {sizeof wq, sizeof wk, sizeof wv, sizeof wo};
    for (int m = 0; m < 4; m++)
        for (size_t i = 0; i < sizes[m] / sizeof(float); i++) all[m][i] = (float)rand() / (float)RAND_MAX - 0.5f;
    forge_layer_weights w = {.q_proj = wq, .k_proj = wk, .v_proj = wv, .o_proj = wo};
    float host_x[5 * HIDDEN], host_y[5 * HIDDEN];
    for (int i = 0; i < 5 * HIDDEN; i++) host_x[i] = (float)rand() / (float)RAND_MAX - 0.5f;

    forge_context *ctx = NULL;
    forge_layer *layer = NULL;
    forge_kv_cache *cache = NULL;
    float *x = NULL, *y = NULL; /* where the backend computes */
    forge_status st = forge_context_create(FORGE_BACKEND_AUTO, &ctx); /* CUDA if present */
    if (st == FORGE_OK) st = forge_layer_create(ctx, &cfg, &w, &layer);
    if (st == FORGE_OK) st = forge_kv_cache_create(layer, 1, &cache); /* one sequence */
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, sizeof host_x, (void **)&x);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, sizeof host_y, (void **)&y);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, x, host_x, sizeof host_x);

    forge_seq prefill = {.slot = 0, .pos0 = 0, .n_tokens = 4};
    if (st == FORGE_OK) st = forge_layer_forward(layer, cache, &prefill, 1, x, y);
    forge_seq decode = {.slot = 0, .pos0 = 4, .n_tokens = 1};
    if (st == FORGE_OK) st = forge_layer_forward(layer, cache, &decode, 1, x + 4 * HIDDEN, y + 4 * HIDDEN);
    if (st == FORGE_OK) st = forge_buffer_download(ctx, host_y, y, sizeof host_y); /* waits */

    if (st != FORGE_OK) fprintf(stderr, "forge: %s: %s\n", forge_status_str(st), forge_last_error());
    else printf("y[4][0] = %f on %s\n", host_y[4 * HIDDEN], forge_backend_name(forge_context_backend(ctx)));
    forge_buffer_free(ctx, x);
    forge_buffer_free(ctx, y);
    forge_kv_cache_destroy(cache);
    forge_layer_destroy(layer);
    forge_context_destroy(ctx);
    return st == FORGE_OK ? 0 : 1;
}
