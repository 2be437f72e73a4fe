/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_generate.c: `forge generate`, a Hugging Face model directory and a
 * prompt in, generated text (or ids) out as it comes, and the counts and
 * speeds of the run at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

#define CMD "generate"

/* What the token callback needs: the stream that prints text, where the
 * ids go, and when the first token came (the end of the prefill). */
typedef struct {
    forge_token_stream *stream; /* NULL: nothing printed as it comes */
    double first;
    int n;
} run_state;

static int on_token(void *user, int32_t token) {
    run_state *r = user;
    if (r->n++ == 0) r->first = 1e-6 * cli_now_us();
    const char *text;
    if (r->stream && forge_token_stream_push(r->stream, token, &text) == FORGE_OK) {
        fputs(text, stdout);
        fflush(stdout);
    }
    return 0;
}

typedef struct {
    const char *model, *prompt, *prompt_ids, *dtype, *backend;
    int n, ctx, tp, ids, json;
    cli_sampling sampling;
} gen_args;

static int parse(int argc, char **argv, gen_args *a) {
    /* sampling options below 0: not given (generation_config.json's, or greedy) */
    *a = (gen_args){.dtype = "fp32", .backend = "auto", .n = 128, .sampling = CLI_SAMPLING_NONE};
    cli_opt opts[] = {
        {"--model", OPT_STRING, &a->model, 0},       {"--prompt", OPT_STRING, &a->prompt, 0},
        {"--prompt-ids", OPT_STRING, &a->prompt_ids, 0}, {"-n", OPT_INT, &a->n, 0},
        CLI_SAMPLING_OPTS(&a->sampling),
        {"--ctx", OPT_INT, &a->ctx, 0},              {"--dtype", OPT_STRING, &a->dtype, 0},
        {"--backend", OPT_STRING, &a->backend, 0},   {"--ids", OPT_FLAG, &a->ids, 0},
        {"--tp", OPT_INT, &a->tp, 0},                {"--json", OPT_FLAG, &a->json, 0},
    };
    int rc = cli_parse(CMD, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
    if (rc != CLI_OK) return rc;
    if (!a->model) return cli_usage(CMD, "--model is required");
    if (!a->prompt == !a->prompt_ids) return cli_usage(CMD, "give the prompt by --prompt or --prompt-ids, one of them");
    if (a->n < 0 || a->n > (1 << 24)) return cli_usage(CMD, "-n %d is outside [0, 2^24]", a->n);
    if (a->ctx < 0) return cli_usage(CMD, "--ctx %d is negative", a->ctx);
    if (a->tp < 0) return cli_usage(CMD, "--tp %d is negative", a->tp);
    return CLI_OK;
}

static void print_json(const int32_t *ids, int n_prompt, int made, double prefill_s, double decode_s) {
    printf("{\"prompt_tokens\": %d, \"generated_tokens\": %d, \"prefill_ms\": %.3f, \"prefill_tok_per_s\": %.2f, "
           "\"decode_tok_per_s\": %.2f, \"ids\": [",
           n_prompt, made, 1e3 * prefill_s, prefill_s > 0 ? n_prompt / prefill_s : 0.0,
           decode_s > 0 && made > 1 ? (made - 1) / decode_s : 0.0);
    for (int i = 0; i < made; i++) printf(i ? ", %d" : "%d", ids[i]);
    printf("]}\n");
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    int rc = parse(argc, argv, &a);
    if (rc != CLI_OK) return rc;
    forge_backend backend;
    forge_dtype dtype;
    if ((rc = cli_backend(CMD, a.backend, &backend)) != CLI_OK || (rc = cli_dtype(CMD, a.dtype, &dtype)) != CLI_OK)
        return rc;
    forge_tokenizer *tok = NULL;
    forge_status st = FORGE_OK;
    int32_t *prompt = NULL, *out = NULL;
    size_t n_prompt = 0;
    if (a.prompt) { /* the prompt's ids, with the tokenizer's special tokens (BOS) */
        if ((st = forge_tokenizer_load(a.model, &tok)) != FORGE_OK) return cli_fail(CMD, st);
        rc = cli_encode(CMD, tok, a.prompt, strlen(a.prompt), 1, &prompt, &n_prompt);
        if (rc == CLI_OK && n_prompt == 0) rc = cli_usage(CMD, "--prompt gives no tokens");
        if (rc != CLI_OK) {
            free(prompt);
            forge_tokenizer_free(tok);
            return rc;
        }
    } else {
        if (!(prompt = cli_parse_ids(a.prompt_ids, &n_prompt)))
            return cli_usage(CMD, "--prompt-ids '%s' is not a list of integers separated by commas", a.prompt_ids);
        if (!a.ids && !a.json && forge_tokenizer_load(a.model, &tok) != FORGE_OK) tok = NULL; /* text if it can */
    }
    forge_special_ids special = {-1, -1, 0, {0}};
    if (tok) forge_tokenizer_special_ids(tok, &special);
    forge_context *ctx = NULL;
    forge_model *model = NULL;
    forge_model_config cfg = {0};
    if (st == FORGE_OK) st = forge_model_config_read(a.model, &cfg);
    const long want = a.ctx ? a.ctx : (long)n_prompt + a.n;
    const int room = (int)(want < cfg.max_positions ? want : cfg.max_positions);
    /* the prompt must fit the context; generation stops where it is full
     * (the last token drawn is never fed, so one more than its room) */
    if (st == FORGE_OK && (long)n_prompt > room)
        rc = cli_usage(CMD, "the prompt's %zu tokens do not fit the context of %d (%s)", n_prompt, room,
                       room == cfg.max_positions ? "the model's max_position_embeddings" : "--ctx");
    if (!rc && st == FORGE_OK && a.n > room - (long)n_prompt + 1) {
        fprintf(stderr, "forge %s: -n %d stops at %ld: the context holds %d tokens\n", CMD, a.n,
                room - (long)n_prompt + 1, room);
        a.n = (int)(room - (long)n_prompt + 1);
    }
    if (!rc && st == FORGE_OK) st = forge_context_create(backend, &ctx);
    const forge_model_options opt = {dtype, 1, room, room, 0, a.tp};
    if (!rc && st == FORGE_OK) st = forge_model_load(ctx, a.model, &opt, &model);
    if (!rc && st == FORGE_OK && !(out = malloc(sizeof *out * (size_t)(a.n + 1)))) st = FORGE_ERR_OUT_OF_MEMORY;
    if (st != FORGE_OK) rc = cli_fail(CMD, st);
    run_state r = {NULL, 0, 0};
    if (!rc && tok && !a.ids && !a.json && forge_token_stream_create(tok, 1, &r.stream) != FORGE_OK) r.stream = NULL;
    forge_sampling s = forge_sampling_greedy();
    if (!rc && (st = forge_sampling_read(a.model, &s)) != FORGE_OK) rc = cli_fail(CMD, st);
    cli_sampling_apply(&a.sampling, &s);
    int made = 0;
    const double t0 = 1e-6 * cli_now_us();
    if (!rc && (st = forge_model_generate(model, prompt, (int)n_prompt, a.n, &s, special.eos_ids, special.n_eos,
                                          on_token, &r, out, &made)) != FORGE_OK)
        rc = cli_fail(CMD, st);
    const double t1 = 1e-6 * cli_now_us(), prefill = made ? r.first - t0 : t1 - t0, decode = made ? t1 - r.first : 0.0;
    if (!rc && a.json) {
        print_json(out, (int)n_prompt, made, prefill, decode);
    } else if (!rc) {
        for (int i = 0; a.ids && i < made; i++) printf(i ? " %d" : "%d", out[i]);
        if (a.ids || r.stream) printf("\n");
        if (!a.ids && !r.stream) /* no tokenizer to print text with: the ids */
            for (int i = 0; i < made; i++) printf(i + 1 < made ? "%d " : "%d\n", out[i]);
        fprintf(stderr, "forge %s: %zu prompt tokens, %d generated; prefill %.1f ms (%.1f tok/s), decode %.2f tok/s\n",
                CMD, n_prompt, made, 1e3 * prefill, prefill > 0 ? n_prompt / prefill : 0.0,
                decode > 0 && made > 1 ? (made - 1) / decode : 0.0);
    }
    forge_token_stream_free(r.stream);
    forge_model_free(model);
    forge_context_destroy(ctx);
    forge_tokenizer_free(tok);
    free(prompt);
    free(out);
    return rc;
}
