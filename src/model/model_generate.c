/* SPDX-License-Identifier: Apache-2.0 */
/* model_generate.c: generation in a sequence of its own: the prompt in
 * chunks, then a token a step, each drawn by forge_model_step_sample, until
 * max_new tokens, a stop token, or the callback says stop. */
#include "error.h"
#include "model.h"

static const char fn[] = "forge_model_generate";

/* Prompt tokens a step takes at most: the workspace of a step grows with it. */
enum { PROMPT_CHUNK = 512 };

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
    forge_status st = model_check_sampling(sampling, -1, fn);
    int seq = -1, made = 0;
    if (st == FORGE_OK) st = forge_model_seq_new(m, &seq);
    /* the prompt in chunks; only the last one's token is drawn */
    int32_t next = 0;
    for (int at = 0; st == FORGE_OK && at < n_prompt; at += PROMPT_CHUNK) {
        const int n = n_prompt - at < PROMPT_CHUNK ? n_prompt - at : PROMPT_CHUNK;
        const forge_model_input in = {seq, n, prompt + at};
        st = at + n < n_prompt ? forge_model_step_greedy(m, &in, 1, &next)
                               : forge_model_step_sample(m, &in, 1, sampling, &next);
    }
    while (st == FORGE_OK && made < max_new) {
        const int32_t token = next;
        if (out) out[made] = token;
        made++;
        int done = on_token && on_token(user, token);
        for (int i = 0; i < n_stop; i++) done |= stop[i] == token;
        if (done || made == max_new) break;
        const forge_model_input in = {seq, 1, &token};
        st = forge_model_step_sample(m, &in, 1, sampling, &next);
    }
    if (seq >= 0) forge_model_seq_release(m, seq);
    *n_out = made;
    return st;
}
