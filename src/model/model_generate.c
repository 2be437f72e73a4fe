/* SPDX-License-Identifier: Apache-2.0 */
/* model_generate.c: generation in a sequence of its own: the prompt in
 * chunks, then a token a step, each drawn from the last logits (greedy
 * without a penalty: chosen on the device), until max_new tokens, a stop
 * token, or the callback says stop. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"

static const char fn[] = "forge_model_generate";

/* Prompt tokens a step takes at most: the workspace of a step grows with it. */
enum { PROMPT_CHUNK = 512 };

static forge_status check_sampling(const forge_sampling *s) {
    if (!(s->temperature >= 0.0f) || !(s->top_p > 0.0f && s->top_p <= 1.0f) || !(s->min_p >= 0.0f && s->min_p <= 1.0f) ||
        !(s->repeat_penalty > 0.0f) || s->top_k < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT,
                          "%s: sampling needs temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1 and "
                          "repeat_penalty > 0", fn);
    return FORGE_OK;
}

forge_status forge_model_generate(forge_model *m, const int32_t *prompt, int n_prompt, int max_new,
                                  const forge_sampling *sampling, const int32_t *stop, int n_stop,
                                  forge_token_fn on_token, void *user, int32_t *out, int *n_out) {
    FORGE_CHECK_NAMED(m, "model", fn);
    FORGE_CHECK_NOT_NULL(prompt, fn);
    FORGE_CHECK_NOT_NULL(sampling, fn);
    FORGE_CHECK_NOT_NULL(n_out, fn);
    if (n_stop > 0) FORGE_CHECK_NOT_NULL(stop, fn);
    if (n_prompt < 1 || max_new < 0 || n_stop < 0)
        return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: n_prompt = %d must be >= 1, max_new = %d and n_stop = %d "
                          ">= 0", fn, n_prompt, max_new, n_stop);
    forge_status st = check_sampling(sampling);
    if (st != FORGE_OK) return st;
    const int vocab = m->cfg.vocab_size;
    float *logits = malloc(sizeof *logits * (size_t)vocab);
    model_scored *scratch = malloc(sizeof *scratch * (size_t)vocab);
    int32_t *history = malloc(sizeof *history * ((size_t)n_prompt + (size_t)max_new));
    int seq = -1, made = 0;
    if (!logits || !scratch || !history) st = forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st == FORGE_OK) st = forge_model_seq_new(m, &seq);
    if (st == FORGE_OK) memcpy(history, prompt, sizeof *history * (size_t)n_prompt);
    /* greedy without a penalty needs no logits: the device chooses */
    const int on_device = sampling->temperature == 0.0f && sampling->repeat_penalty == 1.0f;
    int32_t next = 0;
    for (int at = 0; st == FORGE_OK && at < n_prompt; at += PROMPT_CHUNK) {
        const int n = n_prompt - at < PROMPT_CHUNK ? n_prompt - at : PROMPT_CHUNK;
        const forge_model_input in = {seq, n, prompt + at};
        st = on_device ? forge_model_step_greedy(m, &in, 1, &next) : forge_model_step(m, &in, 1, 0, logits);
    }
    uint64_t rng = sampling->seed;
    while (st == FORGE_OK && made < max_new) {
        const int32_t token =
            on_device ? next : model_sample(logits, vocab, sampling, history, n_prompt + made, &rng, scratch);
        history[n_prompt + made] = token;
        if (out) out[made] = token;
        made++;
        int done = on_token && on_token(user, token);
        for (int i = 0; i < n_stop; i++) done |= stop[i] == token;
        if (done || made == max_new) break;
        const forge_model_input in = {seq, 1, &history[n_prompt + made - 1]};
        st = on_device ? forge_model_step_greedy(m, &in, 1, &next) : forge_model_step(m, &in, 1, 0, logits);
    }
    if (seq >= 0) forge_model_seq_release(m, seq);
    *n_out = made;
    free(logits);
    free(scratch);
    free(history);
    return st;
}
