/* SPDX-License-Identifier: Apache-2.0 */
/* layer_stack.c: one step of a stack of layers (a model's blocks,
 * src/model), each over a paged cache of its own that holds the same
 * sequences. Unlike forward.c's single call, the step is split so that
 * the caller's own work runs between the layers and the whole of it may
 * be recorded as one graph: every cache's pages for the new tokens and
 * every layer's workspace first (host work, outside any recording), then
 * the layers' computations, then the lengths advanced in every cache, or
 * the pages given back. The layers of a stack have no CPU twin: no
 * fallback, no self-check. */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

forge_status forge_stack_begin(forge_stack_step *s, const char *fn, forge_layer **layers,
                               forge_paged_cache **caches, int n_layers, const forge_seq *seqs, int n_seqs) {
    memset(s, 0, sizeof *s);
    s->fn = fn, s->layers = layers, s->caches = caches;
    forge_status st = forge_batch_make(&s->b, fn, layers[0], seqs, n_seqs, 1);
    if (st != FORGE_OK) return st;
    s->growth = malloc(sizeof *s->growth * (size_t)n_layers * (size_t)n_seqs);
    if (!s->growth) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int l = 0; st == FORGE_OK && l < n_layers; l++) {
        forge_page_growth *g = s->growth + (size_t)l * n_seqs;
        st = forge_paged_check_room(caches[l], n_seqs, s->b.ids, s->b.n_tokens, fn);
        if (st == FORGE_OK) st = forge_paged_grow(caches[l], n_seqs, s->b.ids, s->b.n_tokens, g, fn);
        if (st == FORGE_OK) s->n_grown = l + 1;
    }
    const forge_backend_ops *ops = layers[0]->ctx->ops;
    for (int l = 0; st == FORGE_OK && ops->reserve && l < n_layers; l++) {
        const forge_batch b = forge_batch_for(&s->b, layers[l]);
        st = ops->reserve(layers[l], caches[l], &b);
    }
    if (st != FORGE_OK) forge_stack_end(s, 0);
    return st;
}

forge_status forge_stack_forward(forge_stack_step *s, int l, const void *x, void *y, const int *pos_dev) {
    forge_batch b = forge_batch_for(&s->b, s->layers[l]);
    b.pos_dev = pos_dev;
    forge_stage failed;
    return s->layers[l]->ctx->ops->forward(s->layers[l], s->caches[l], &b, x, y, &failed);
}

void forge_stack_end(forge_stack_step *s, int ok) {
    for (int l = 0; l < s->n_grown; l++) {
        forge_paged_cache *c = s->caches[l];
        if (ok)
            for (int i = 0; i < s->b.n; i++) c->len[s->b.ids[i]] = s->b.lens[i];
        else
            forge_paged_ungrow(c, s->b.n, s->b.ids, s->growth + (size_t)l * s->b.n, s->fn);
    }
    free(s->growth);
    forge_batch_free(&s->b);
    memset(s, 0, sizeof *s);
}
