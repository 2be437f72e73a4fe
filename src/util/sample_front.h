/* SPDX-License-Identifier: Apache-2.0 */
/* sample_front.h: a draw's candidates as a backend finds them over a step's
 * logits on its device (backend.h's sample_front) and the model reads them
 * (model_sample.c): each row's settings in; out, each row's head and then
 * room for cap candidates. */
#ifndef FORGE_SAMPLE_FRONT_H
#define FORGE_SAMPLE_FRONT_H

#include <stddef.h>

/* A row's sampling (forge_sampling without its seed: the draw is the host's). */
typedef struct {
    float temperature, top_p, min_p, repeat_penalty;
    int top_k;
} forge_sample_row;

/* A candidate token: its score (the logit after the penalty and the
 * temperature) and its id. */
typedef struct {
    float score;
    int id;
} forge_scored;

typedef struct {
    double mass;  /* without top-k: the sum of exp(score - the largest) over the vocabulary */
    int count;    /* candidates found; only the first cap are written */
    int complete; /* without top-k: they are every token min-p keeps */
} forge_sample_head;

/* Bytes of one row of the output. */
#define FORGE_SAMPLE_ROW_BYTES(cap) (sizeof(forge_sample_head) + (size_t)(cap) * sizeof(forge_scored))

#endif
