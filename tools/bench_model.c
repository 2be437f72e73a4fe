/* SPDX-License-Identifier: Apache-2.0 */
/* bench_model.c: `forge bench model`, a whole model timed the way
 * ../shared/bench/torch_model_ref.py times transformers, its rows' fields
 * the same so that the two stand side by side: the load (mode "load"), one
 * step over batch x prompt random tokens (mode "prefill": ms, tok_per_s),
 * then `new` decode steps of every sequence (mode "decode": tok_per_s
 * over all sequences, ms_per_token a step), after a round of the same
 * untimed; greedy, or drawn as the sampling options say (the rows then
 * carry "sampling"). --shape NAME: a model of that shape with random
 * weights (forge_model_shape, forge_model_load_random), nothing read;
 * --layers N keeps its first N blocks; --tp N splits the model over N
 * ranks (GPUs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

#define CMD "bench model"

static void print_row(int json, const char *mode, const forge_model_config *c, const char *dtype, int tp, int batch,
                      int prompt, int new_tokens, double s, const char *source, const char *sampling) {
    const double tokens = strcmp(mode, "prefill") == 0 ? (double)batch * prompt : (double)batch * new_tokens;
    if (!json) {
        if (strcmp(mode, "load") == 0) printf("load     %9.1f ms  (%s)\n", 1e3 * s, source);
        else printf("%-8s %9.1f ms  %10.1f tok/s%s\n", mode, 1e3 * s, tokens / s,
                    strcmp(mode, "decode") == 0 ? "  (all sequences)" : "");
        return;
    }
    printf("{\"mode\": \"%s\", \"impl\": \"forge\", \"dtype\": \"%s\", \"layers\": %d, \"hidden\": %d, "
           "\"intermediate\": %d, \"heads\": %d, \"kv_heads\": %d, \"vocab\": %d, \"tp\": %d, \"batch\": %d",
           mode, dtype, c->layers, c->hidden, c->intermediate, c->heads, c->kv_heads, c->vocab_size, tp, batch);
    if (sampling && strcmp(mode, "decode") == 0) printf(", \"sampling\": \"%s\"", sampling);
    if (strcmp(mode, "load") == 0) printf(", \"source\": \"%s\", \"ms\": %.2f}\n", source, 1e3 * s);
    else if (strcmp(mode, "prefill") == 0) printf(", \"prompt\": %d, \"ms\": %.2f, \"tok_per_s\": %.1f}\n", prompt, 1e3 * s, tokens / s);
    else printf(", \"prompt\": %d, \"new\": %d, \"tok_per_s\": %.1f, \"ms_per_token\": %.3f}\n", prompt, new_tokens,
                tokens / s, 1e3 * s / new_tokens);
}

/* The prefill of every sequence in one step, then the decode steps, each
 * sequence's token drawn as s says (greedy: chosen on the device, as
 * transformers' generate takes its argmax there); the sequences are
 * released at the end. */
static forge_status run(forge_model *m, const forge_model_config *c, int batch, int prompt, int new_tokens,
                        const forge_sampling *s, double *prefill_s, double *decode_s) {
    int *seqs = malloc(sizeof *seqs * (size_t)batch);
    int32_t *tokens = malloc(sizeof *tokens * (size_t)batch * (size_t)prompt);
    int32_t *next = malloc(sizeof *next * (size_t)batch);
    forge_model_input *in = malloc(sizeof *in * (size_t)batch);
    forge_sampling *each = malloc(sizeof *each * (size_t)batch);
    forge_status st = seqs && tokens && next && in && each ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
    for (int b = 0; st == FORGE_OK && b < batch; b++) each[b] = *s;
    uint64_t r = 1;
    for (long i = 0; st == FORGE_OK && i < (long)batch * prompt; i++)
        tokens[i] = (int32_t)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 33) % c->vocab_size;
    for (int b = 0; st == FORGE_OK && b < batch; b++) {
        st = forge_model_seq_new(m, &seqs[b]);
        in[b] = (forge_model_input){seqs[b], prompt, tokens + (size_t)b * prompt};
    }
    double t0 = cli_now_us();
    if (st == FORGE_OK) st = forge_model_step_sample(m, in, batch, each, next);
    *prefill_s = (cli_now_us() - t0) * 1e-6;
    t0 = cli_now_us();
    for (int k = 0; st == FORGE_OK && k < new_tokens; k++) {
        for (int b = 0; b < batch; b++) in[b] = (forge_model_input){seqs[b], 1, next + b};
        st = forge_model_step_sample(m, in, batch, each, next);
    }
    *decode_s = (cli_now_us() - t0) * 1e-6;
    for (int b = 0; st == FORGE_OK && b < batch; b++) st = forge_model_seq_release(m, seqs[b]);
    free(seqs), free(tokens), free(next), free(in), free(each);
    return st;
}

int bench_model(int argc, char **argv) {
    const char *model = NULL, *shape = NULL, *dtype_name = "fp32", *backend_name = "auto";
    int batch = 1, prompt = 128, new_tokens = 32, layers = 0, tp = 0, json = 0;
    cli_sampling sampling = CLI_SAMPLING_NONE;
    cli_opt opts[] = {
        CLI_SAMPLING_OPTS(&sampling),
        {"--model", OPT_STRING, &model, 0},   {"--shape", OPT_STRING, &shape, 0},
        {"--layers", OPT_INT, &layers, 0},    {"--batch", OPT_INT, &batch, 0},
        {"--prompt", OPT_INT, &prompt, 0},    {"--new", OPT_INT, &new_tokens, 0},
        {"--dtype", OPT_STRING, &dtype_name, 0}, {"--backend", OPT_STRING, &backend_name, 0},
        {"--tp", OPT_INT, &tp, 0},            {"--json", OPT_FLAG, &json, 0},
    };
    int rc = cli_parse(CMD, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]));
    if (rc != CLI_OK) return rc;
    if (!model == !shape) return cli_usage(CMD, "give one of --model DIR and --shape NAME");
    if (layers && !shape) return cli_usage(CMD, "--layers goes with --shape");
    if (batch < 1 || batch > 4096 || prompt < 1 || prompt > (1 << 20) || new_tokens < 1 || new_tokens > (1 << 20))
        return cli_usage(CMD, "--batch, --prompt and --new must be positive (batch up to 4096)");
    if (tp < 0) return cli_usage(CMD, "--tp %d is negative", tp);
    forge_dtype dtype;
    forge_backend backend;
    if ((rc = cli_dtype(CMD, dtype_name, &dtype)) != CLI_OK || (rc = cli_backend(CMD, backend_name, &backend)) != CLI_OK)
        return rc;
    forge_context *ctx = NULL;
    forge_model *m = NULL;
    forge_model_config c;
    forge_status st = shape ? forge_model_shape(shape, &c) : forge_model_config_read(model, &c);
    if (st == FORGE_OK && layers) {
        if (layers < 1 || layers > c.layers) {
            fprintf(stderr, "forge %s: --layers %d is outside [1, %d] of %s\n", CMD, layers, c.layers, shape);
            return CLI_USAGE;
        }
        c.layers = layers;
    }
    if (st == FORGE_OK) st = forge_context_create(backend, &ctx);
    const forge_model_options opt = {dtype, batch, batch * (prompt + new_tokens), prompt + new_tokens, 0, tp};
    const double t0 = cli_now_us();
    if (st == FORGE_OK) st = shape ? forge_model_load_random(ctx, &c, &opt, 1, &m) : forge_model_load(ctx, model, &opt, &m);
    const double load_s = (cli_now_us() - t0) * 1e-6;
    double prefill_s = 0, decode_s = 0;
    forge_sampling draw = forge_sampling_greedy();
    cli_sampling_apply(&sampling, &draw);
    char sampled[128];
    snprintf(sampled, sizeof sampled, "temperature %g, top_k %d, top_p %g, min_p %g, repeat_penalty %g",
             draw.temperature, draw.top_k, draw.top_p, draw.min_p, draw.repeat_penalty);
    const int greedy = draw.temperature == 0.0f && draw.repeat_penalty == 1.0f;
    /* a warmup round first (the backend's first calls plan its GEMMs and
     * grow its buffers), its sequences released, then the timed one */
    if (st == FORGE_OK) st = run(m, &c, batch, prompt, new_tokens, &draw, &prefill_s, &decode_s);
    if (st == FORGE_OK) st = run(m, &c, batch, prompt, new_tokens, &draw, &prefill_s, &decode_s);
    if (st == FORGE_OK) {
        const char *source = shape ? "random" : "files";
        const char *how = greedy ? NULL : sampled;
        print_row(json, "load", &c, dtype_name, tp, batch, prompt, new_tokens, load_s, source, how);
        print_row(json, "prefill", &c, dtype_name, tp, batch, prompt, new_tokens, prefill_s, source, how);
        print_row(json, "decode", &c, dtype_name, tp, batch, prompt, new_tokens, decode_s, source, how);
    } else {
        rc = cli_fail(CMD, st);
    }
    forge_model_free(m);
    forge_context_destroy(ctx);
    return rc;
}
