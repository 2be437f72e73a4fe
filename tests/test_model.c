/* SPDX-License-Identifier: Apache-2.0 */
/* test_model.c: the model engine on the CPU against the float64 reference
 * of a whole decoder (src/reference/ref_model.c), on tiny model directories
 * the test writes itself (config.json and safetensors, one file or shards
 * with their index): every token's logits, greedy generation token for
 * token, a batch mixing prompts and decode steps, each architecture and
 * RoPE scaling; and bad directories and calls, each a clear error.
 *   test_model [cpu|cuda]   (the backend the comparisons run on) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu/cpu_ops.h"
#include "file.h"
#include "model/model.h"
#include "model_dir.h"
#include "test_util.h"
#include "testing.h"

/* The backend of the tests that compare with the reference (argv[1]). */
static forge_backend g_backend = FORGE_BACKEND_CPU;

static forge_model_options options(int max_seqs, int max_tokens) {
    forge_model_options o = {FORGE_F32, max_seqs, max_tokens, 0, 0, 0};
    return o;
}

/* The first largest of the reference's logits [vocab]: its greedy token. */
static int ref_argmax(const double *logits, int vocab) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Greedy generation by the reference: the whole forward again each token. */
static void ref_greedy(const md_weights *w, const int32_t *prompt, int n_prompt, int n_new, int32_t *out) {
    const int V = w->cfg.vocab_size;
    int32_t *all = malloc(sizeof *all * (size_t)(n_prompt + n_new));
    double *logits = malloc(sizeof *logits * (size_t)(n_prompt + n_new) * V);
    assert_true(all && logits);
    memcpy(all, prompt, sizeof *all * (size_t)n_prompt);
    for (int k = 0; k < n_new; k++) {
        const int n = n_prompt + k;
        assert_int_equal(ref_model_forward(&w->cfg, &w->ref, all, n, logits), 0);
        all[n] = out[k] = ref_argmax(logits + (size_t)(n - 1) * V, V);
    }
    free(all);
    free(logits);
}

static int32_t *prompt_of(int n, int vocab, uint64_t seed) {
    int32_t *p = malloc(sizeof *p * (size_t)n);
    assert_non_null(p);
    ref_rng r = ref_rng_seed(seed);
    for (int i = 0; i < n; i++) p[i] = (int32_t)(ref_rng_uniform(&r) * vocab);
    return p;
}

/* The model of spec s on the tests' backend, split over `ranks` ranks (0:
 * whole); 0 where the machine has fewer devices than ranks, or no NCCL
 * (the test says it skipped). */
static int open_model(md_model *mm, const md_spec *s, uint64_t seed, int max_seqs, int max_tokens, int ranks) {
    const forge_status st = md_model_open_split(mm, s, seed, g_backend, max_seqs, max_tokens, ranks);
    const char *why = forge_last_error();
    if (st == FORGE_ERR_UNSUPPORTED && ranks > 0 && (strstr(why, "CUDA devices") || strstr(why, "needs NCCL"))) {
        print_message("skipped: %s\n", forge_last_error());
        md_model_close(mm);
        return 0;
    }
    TL_OK(st);
    return 1;
}

/* One architecture end to end, the model split over `ranks` ranks (0:
 * whole): logits of every prompt token, then greedy generation, against
 * the reference. */
static void check_split(const md_spec *s, uint64_t seed, int ranks) {
    md_model mm;
    if (!open_model(&mm, s, seed, 2, 256, ranks)) return;
    forge_model *m = mm.m;
    const forge_model_config cfg = mm.cfg;
    const int n = 13, V = cfg.vocab_size, n_new = 20;
    int32_t *prompt = prompt_of(n, V, seed + 1);
    float *got = tl_poisoned((size_t)n * V);
    double *want = malloc(sizeof *want * (size_t)n * V);
    assert_non_null(want);
    int seq;
    TL_OK(forge_model_seq_new(m, &seq));
    const forge_model_input in = {seq, n, prompt};
    TL_OK(forge_model_step(m, &in, 1, 1, got));
    TL_OK(forge_model_seq_release(m, seq));
    assert_int_equal(ref_model_forward(&cfg, &mm.w.ref, prompt, n, want), 0);
    const ref_error e = ref_compare(got, want, (size_t)n * V);
    print_message("%s over %d ranks%s: logits of %d tokens, relative L2 %.2e, max abs %.2e\n", s->arch,
                  ranks ? ranks : 1, ranks ? "" : " (whole)", n, e.rel_l2, e.max_abs);
    if (e.nonfinite || e.rel_l2 > 1e-5) fail_msg("%s: logits off the reference by %g", s->arch, e.rel_l2);

    int32_t tokens[32], ref_tokens[32];
    int made;
    const forge_sampling greedy = forge_sampling_greedy();
    TL_OK(forge_model_generate(m, prompt, n, n_new, &greedy, NULL, 0, NULL, NULL, tokens, &made));
    assert_int_equal(made, n_new);
    ref_greedy(&mm.w, prompt, n, n_new, ref_tokens);
    for (int i = 0; i < n_new; i++)
        if (tokens[i] != ref_tokens[i]) fail_msg("%s: generated token %d is %d, the reference's %d", s->arch, i, tokens[i], ref_tokens[i]);
    free(prompt), free(got), free(want);
    md_model_close(&mm);
}

static void check_spec(const md_spec *s, uint64_t seed) { check_split(s, seed, 0); }

/* head_dim 32: the CUDA backend's paged cache takes 32 and up */
static const md_spec llama = {"LlamaForCausalLM", 97, 128, 96, 2, 4, 2, 32, 128, 1, 0, 0, FORGE_F32, ""};

static void test_llama_tied(void **state) {
    (void)state;
    check_spec(&llama, 11);
}

/* Llama 3.1's RoPE scaling (its original context 16, so every band is in
 * play at these positions), untied, in two shards of fp16 tensors. */
static void test_llama3_shards(void **state) {
    (void)state;
    md_spec s = llama;
    s.tie = 0, s.llama3_scaling = 1, s.shards = 1, s.file_dtype = FORGE_F16;
    check_spec(&s, 12);
}

static void test_qwen2_biases(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "Qwen2ForCausalLM", s.kv_heads = 1;
    check_spec(&s, 13);
}

/* Qwen 3: RMSNorm over each head of Q and K, and a head_dim that is not
 * hidden / heads. */
static void test_qwen3_qk_norm(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "Qwen3ForCausalLM", s.head_dim = 64;
    check_spec(&s, 14);
}

static void test_mistral(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "MistralForCausalLM", s.extra = ", \"sliding_window\": null";
    check_spec(&s, 15);
}

/* A backend whose support rows lack sliding windows refuses a windowed
 * model by name when it loads. */
static int refuses_windows(const md_spec *s) {
    if (tl_takes_options(g_backend, "", FORGE_ATTN_WINDOW)) return 0;
    md_model mm;
    md_model_write(&mm, s, 1);
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    forge_model *m = NULL;
    const forge_model_options o = options(2, 256);
    assert_int_equal(forge_model_load(ctx, mm.dir, &o, &m), FORGE_ERR_UNSUPPORTED);
    assert_non_null(strstr(forge_last_error(), "a sliding window is not implemented"));
    assert_null(m);
    forge_context_destroy(ctx);
    md_model_close(&mm);
    return 1;
}

/* Mistral v0.1's sliding window in every layer, shorter than the prompt
 * and than what generation reaches. */
static void test_mistral_window(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "MistralForCausalLM", s.extra = ", \"sliding_window\": 5";
    if (!refuses_windows(&s)) check_spec(&s, 16);
}

/* Qwen 2's window, on from max_window_layers: layer 0 attends to all,
 * layer 1 through a window of 4. */
static void test_qwen2_window(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "Qwen2ForCausalLM", s.kv_heads = 1;
    s.extra = ", \"use_sliding_window\": true, \"sliding_window\": 4, \"max_window_layers\": 1";
    if (!refuses_windows(&s)) check_spec(&s, 17);
}

/* A sequence of test_batch: its token stream and how much of it the model
 * has taken. */
typedef struct {
    int seq, len;
    int32_t *tokens;
} tb_seq;

/* One step of s[0 .. n) taking n_new[b] more tokens each: each sequence's
 * logits are those of its own reference; with greedy, the step is
 * forge_model_step_greedy and each next token the reference's argmax. */
static void batch_step(md_model *mm, tb_seq **s, int n, const int *n_new, int greedy, const char *what) {
    const int V = mm->cfg.vocab_size;
    forge_model_input in[4];
    for (int b = 0; b < n; b++) in[b] = (forge_model_input){s[b]->seq, n_new[b], s[b]->tokens + s[b]->len};
    float *got = tl_poisoned((size_t)n * V);
    int32_t next[4] = {-1, -1, -1, -1};
    if (greedy) TL_OK(forge_model_step_greedy(mm->m, in, n, next));
    else TL_OK(forge_model_step(mm->m, in, n, 0, got));
    for (int b = 0; b < n; b++) {
        const int len = s[b]->len += n_new[b];
        double *want = malloc(sizeof *want * (size_t)len * V);
        assert_non_null(want);
        assert_int_equal(ref_model_forward(&mm->cfg, &mm->w.ref, s[b]->tokens, len, want), 0);
        const double *last = want + (size_t)(len - 1) * V;
        if (greedy) {
            const int best = ref_argmax(last, V);
            if (next[b] != best) fail_msg("%s: sequence %d at %d tokens: greedy %d, the reference's %d", what, b, len, next[b], best);
        } else {
            const ref_error e = ref_compare(got + (size_t)b * V, last, (size_t)V);
            if (e.nonfinite || e.rel_l2 > 1e-5) fail_msg("%s: sequence %d at %d tokens: logits off by %g", what, b, len, e.rel_l2);
        }
        free(want);
    }
    free(got);
}

/* Continuous batching: prompts of different lengths in one step, decode
 * steps of both, one sequence leaving and another joining with its prompt
 * beside the other's decode token, decode steps past a page's end, the
 * same sequences in another order, one alone; each sequence's logits those
 * of its own reference at every step, or its greedy token (on the device)
 * the reference's (on CUDA the decode steps replay a recording, made anew
 * where the sequences change). */
static void check_batch(const md_spec *s, uint64_t seed, int ranks) {
    md_model mm;
    if (!open_model(&mm, s, seed, 4, 256, ranks)) return;
    const int V = mm.cfg.vocab_size;
    tb_seq a = {0, 0, prompt_of(40, V, 31)}, b = {0, 0, prompt_of(40, V, 32)}, c = {0, 0, prompt_of(40, V, 33)};
    TL_OK(forge_model_seq_new(mm.m, &a.seq));
    TL_OK(forge_model_seq_new(mm.m, &b.seq));
    tb_seq *ab[2] = {&a, &b}, *bc[2] = {&b, &c}, *cb[2] = {&c, &b};
    const int prompts[2] = {9, 4}, ones[2] = {1, 1}, joins[2] = {1, 6};
    batch_step(&mm, ab, 2, prompts, 0, "prompts");
    for (int k = 0; k < 3; k++) batch_step(&mm, ab, 2, ones, 0, "decode");
    TL_OK(forge_model_seq_release(mm.m, a.seq));
    TL_OK(forge_model_seq_new(mm.m, &c.seq));
    batch_step(&mm, bc, 2, joins, 1, "a prompt joins");
    for (int k = 0; k < 12; k++) batch_step(&mm, bc, 2, ones, k % 2, "decode past a page");
    for (int k = 0; k < 2; k++) batch_step(&mm, cb, 2, ones, k % 2, "decode, order swapped");
    for (int k = 0; k < 2; k++) batch_step(&mm, bc, 1, ones, 0, "decode alone");
    int len;
    TL_OK(forge_model_seq_len(mm.m, b.seq, &len));
    assert_int_equal(len, b.len);
    assert_int_equal(len, 4 + 3 + 1 + 12 + 2 + 2);
    free(a.tokens), free(b.tokens), free(c.tokens);
    md_model_close(&mm);
}

static void test_batch(void **state) {
    (void)state;
    check_batch(&llama, 21, 0);
}

/* The same through a window of 5: past the first page (16 tokens), a
 * sequence's attention starts on a later page. */
static void test_batch_window(void **state) {
    (void)state;
    md_spec s = llama;
    s.arch = "MistralForCausalLM", s.extra = ", \"sliding_window\": 5";
    if (!refuses_windows(&s)) check_batch(&s, 22, 0);
}

/* Tensor parallelism: the model split over 1, 2 and 4 ranks (threads on
 * the CPU, summing between them) against the same reference: every
 * architecture, KV heads that ranks share where there are fewer than ranks
 * (2 over 4 ranks, Qwen 2's one over 2), the output projection's bias
 * added once, a vocabulary of 97 that no rank count divides (the LM head's
 * last rows zeros), and continuous batching. */
static void test_split(void **state) {
    (void)state;
    md_spec s = llama;
    check_split(&s, 50, 1);
    check_split(&s, 51, 2);
    check_split(&s, 52, 4);
    s.extra = ", \"attention_bias\": true";
    check_split(&s, 53, 2);
    s = llama, s.arch = "Qwen2ForCausalLM", s.kv_heads = 1;
    check_split(&s, 54, 2);
    s = llama, s.arch = "Qwen3ForCausalLM", s.head_dim = 64;
    check_split(&s, 55, 4);
    s = llama, s.tie = 0, s.llama3_scaling = 1, s.shards = 1;
    check_split(&s, 56, 2);
    check_batch(&llama, 57, 2);
    s = llama, s.arch = "MistralForCausalLM", s.extra = ", \"sliding_window\": 5";
    if (tl_takes_options(g_backend, "", FORGE_ATTN_WINDOW)) check_batch(&s, 58, 4);
}

/* A split model's step without room fails on every rank alike: an error
 * naming the room, every sequence as it was, and the next step right. */
static void test_split_capacity(void **state) {
    (void)state;
    md_model mm;
    if (!open_model(&mm, &llama, 64, 1, 64, 2)) return;
    const int V = mm.cfg.vocab_size;
    int32_t *prompt = prompt_of(70, V, 65);
    float *got = tl_poisoned((size_t)V);
    double *want = malloc(sizeof *want * (size_t)9 * V);
    assert_non_null(want);
    int seq, len;
    TL_OK(forge_model_seq_new(mm.m, &seq));
    forge_model_input in = {seq, 70, prompt};
    assert_int_equal(forge_model_step(mm.m, &in, 1, 0, got), FORGE_ERR_CAPACITY);
    TL_OK(forge_model_seq_len(mm.m, seq, &len));
    assert_int_equal(len, 0);
    in.n_tokens = 9;
    TL_OK(forge_model_step(mm.m, &in, 1, 0, got));
    assert_int_equal(ref_model_forward(&mm.cfg, &mm.w.ref, prompt, 9, want), 0);
    const ref_error e = ref_compare(got, want + (size_t)8 * V, (size_t)V);
    if (e.nonfinite || e.rel_l2 > 1e-5) fail_msg("split, after a step without room: logits off by %g", e.rel_l2);
    free(prompt), free(got), free(want);
    md_model_close(&mm);
}

/* A rank that fails mid-step (the test hook, on its context) wakes the
 * other out of the collective it waits in: the step fails with the failed
 * rank's message, not the woken one's; the model then refuses steps as
 * broken (the ranks' caches may differ), and it frees without waiting for
 * anything. */
static void test_split_failure(void **state) {
    (void)state;
    for (int failing = 0; failing < 2; failing++) {
        md_model mm;
        if (!open_model(&mm, &llama, 66, 1, 64, 2)) return;
        int32_t *prompt = prompt_of(5, mm.cfg.vocab_size, 67);
        float *got = tl_poisoned((size_t)mm.cfg.vocab_size);
        int seq;
        TL_OK(forge_model_seq_new(mm.m, &seq));
        const forge_model_input in = {seq, 5, prompt};
        forge_context *ctx = mm.m->ranks[failing].ctx;
        forge_testing_fail_stage(ctx, FORGE_STAGE_ATTENTION);
        assert_int_equal(forge_model_step(mm.m, &in, 1, 0, got), FORGE_ERR_BACKEND);
        char want[16];
        snprintf(want, sizeof want, "(rank %d)", failing);
        if (!strstr(forge_last_error(), "injected failure") || !strstr(forge_last_error(), want))
            fail_msg("rank %d failed, but the step says \"%s\"", failing, forge_last_error());
        forge_testing_fail_stage(ctx, -1);
        assert_int_equal(forge_model_step(mm.m, &in, 1, 0, got), FORGE_ERR_BACKEND);
        assert_non_null(strstr(forge_last_error(), "free the model"));
        free(prompt), free(got);
        md_model_close(&mm);
    }
}

/* A seeded draw (temperature, top-k, top-p, the repetition penalty) gives
 * the same tokens split as whole. */
static void test_split_sampling(void **state) {
    (void)state;
    forge_sampling s = {0.8f, 20, 0.9f, 0.0f, 1.1f, 7};
    int32_t tokens[2][24];
    int made[2];
    for (int i = 0; i < 2; i++) {
        md_model mm;
        if (!open_model(&mm, &llama, 61, 1, 64, 2 * i)) return;
        int32_t *prompt = prompt_of(9, mm.cfg.vocab_size, 62);
        TL_OK(forge_model_generate(mm.m, prompt, 9, 24, &s, NULL, 0, NULL, NULL, tokens[i], &made[i]));
        assert_int_equal(made[i], 24);
        free(prompt);
        md_model_close(&mm);
    }
    for (int t = 0; t < 24; t++)
        if (tokens[0][t] != tokens[1][t]) fail_msg("token %d: %d split over 2 ranks, %d whole", t, tokens[1][t], tokens[0][t]);
}

/* Splits that do not fit the model: refused by name, nothing loaded. */
static void expect_split(const md_spec *s, int ranks, forge_status want, const char *names) {
    md_model mm;
    md_model_write(&mm, s, 63);
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &mm.ctx));
    const forge_model_options o = {FORGE_F32, 1, 64, 0, 0, ranks};
    assert_int_equal(forge_model_load(mm.ctx, mm.dir, &o, &mm.m), want);
    if (!strstr(forge_last_error(), names)) fail_msg("\"%s\" does not name %s", forge_last_error(), names);
    assert_null(mm.m);
    md_model_close(&mm);
}

static void test_bad_splits(void **state) {
    (void)state;
    md_spec s = llama; /* 4 heads, 2 KV heads, intermediate 96 */
    expect_split(&s, 3, FORGE_ERR_UNSUPPORTED, "does not divide the 4 attention heads");
    expect_split(&s, -1, FORGE_ERR_INVALID_ARGUMENT, "tensor_parallel = -1");
    expect_split(&s, 65, FORGE_ERR_INVALID_ARGUMENT, "tensor_parallel = 65");
    s.inter = 90;
    expect_split(&s, 4, FORGE_ERR_UNSUPPORTED, "intermediate_size = 90");
    s = llama, s.heads = 6, s.kv_heads = 3;
    expect_split(&s, 2, FORGE_ERR_UNSUPPORTED, "neither divides nor is a multiple of the 3 KV heads");
}

/* A config.json with one field changed: the status and the word the
 * message must name. */
static void expect_config(const char *extra, const char *arch, forge_status want, const char *names) {
    char *dir = md_temp_dir();
    md_spec s = llama;
    s.extra = extra;
    if (arch) s.arch = arch;
    md_write_config(dir, &s);
    forge_model_config cfg;
    assert_int_equal(forge_model_config_read(dir, &cfg), want);
    if (!strstr(forge_last_error(), names)) fail_msg("\"%s\" does not name %s", forge_last_error(), names);
    md_remove_dir(dir);
}

static void test_bad_configs(void **state) {
    (void)state;
    expect_config("", "GPTNeoXForCausalLM", FORGE_ERR_UNSUPPORTED, "GPTNeoXForCausalLM");
    expect_config(", \"hidden_act\": \"gelu\"", NULL, FORGE_ERR_UNSUPPORTED, "gelu");
    expect_config(", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", NULL, FORGE_ERR_UNSUPPORTED, "yarn");
    expect_config(", \"mlp_bias\": true", NULL, FORGE_ERR_UNSUPPORTED, "mlp_bias");
    expect_config(", \"use_sliding_window\": true, \"layer_types\": [\"sliding_attention\", \"full_attention\"]",
                  "Qwen2ForCausalLM", FORGE_ERR_UNSUPPORTED, "layer_types");
    expect_config(", \"use_sliding_window\": true, \"layer_types\": [\"full_attention\"]", "Qwen3ForCausalLM",
                  FORGE_ERR_FORMAT, "layer_types");
    expect_config(", \"use_sliding_window\": true, \"layer_types\": [\"chunked_attention\", \"full_attention\"]",
                  "Qwen2ForCausalLM", FORGE_ERR_UNSUPPORTED, "chunked_attention");
    expect_config(", \"use_sliding_window\": true, \"max_window_layers\": -1", "Qwen2ForCausalLM", FORGE_ERR_FORMAT,
                  "max_window_layers");
    expect_config(", \"sliding_window\": 0", "MistralForCausalLM", FORGE_ERR_FORMAT, "sliding_window");
    expect_config(", \"num_key_value_heads\": 3", NULL, FORGE_ERR_FORMAT, "num_key_value_heads");
    expect_config(", \"vocab_size\": -4", NULL, FORGE_ERR_FORMAT, "vocab_size");
    forge_model_config cfg;
    assert_int_equal(forge_model_config_read("/nonexistent", &cfg), FORGE_ERR_IO);
    assert_non_null(strstr(forge_last_error(), "config.json"));
}

/* config.json's fields of the windows, read as transformers reads them:
 * which layers have one, and how long it is. */
static void expect_windows(const char *arch, const char *extra, int window, int from) {
    char *dir = md_temp_dir();
    md_spec s = llama;
    s.arch = arch, s.extra = extra;
    md_write_config(dir, &s);
    forge_model_config cfg;
    TL_OK(forge_model_config_read(dir, &cfg));
    if (cfg.sliding_window != window || cfg.max_window_layers != from)
        fail_msg("%s%s: window %d from layer %d, want %d from %d", arch, extra, cfg.sliding_window,
                 cfg.max_window_layers, window, from);
    md_remove_dir(dir);
}

static void test_window_configs(void **state) {
    (void)state;
    expect_windows("MistralForCausalLM", "", 4096, 0); /* transformers' default */
    expect_windows("MistralForCausalLM", ", \"sliding_window\": null", 0, 0);
    expect_windows("MistralForCausalLM", ", \"sliding_window\": 512", 512, 0);
    expect_windows("Qwen2ForCausalLM", ", \"sliding_window\": 512", 0, 0); /* use_sliding_window is off */
    expect_windows("Qwen2ForCausalLM", ", \"use_sliding_window\": true, \"sliding_window\": 512", 512, 2);
    expect_windows("Qwen2ForCausalLM", ", \"use_sliding_window\": true, \"max_window_layers\": 1", 4096, 1);
    expect_windows("Qwen3ForCausalLM", ", \"use_sliding_window\": true, \"sliding_window\": 64, "
                   "\"layer_types\": [\"full_attention\", \"sliding_attention\"]", 64, 1);
    expect_windows("Qwen3ForCausalLM", ", \"use_sliding_window\": true, \"sliding_window\": 64, "
                   "\"layer_types\": [\"full_attention\", \"full_attention\"]", 64, 2);
    expect_windows("Qwen2ForCausalLM", ", \"use_sliding_window\": true, \"sliding_window\": null", 0, 0);
    expect_windows("LlamaForCausalLM", ", \"sliding_window\": 512", 0, 0); /* not a Llama field */
}

/* Weights that do not fit the config, a shard the index names that is not
 * there, and calls out of range: clear errors, the model unchanged. */
static void test_bad_weights_and_calls(void **state) {
    (void)state;
    forge_context *ctx;
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &ctx));
    md_spec s = llama;
    md_model mm;
    md_model_write(&mm, &s, 41);
    char *dir = mm.dir;
    const forge_model_config cfg = mm.cfg;
    forge_model *m = NULL;
    const forge_model_options o = options(2, 64);
    /* the config asks for a wider MLP than the file holds */
    md_spec wide = s;
    wide.inter = 128;
    md_write_config(dir, &wide);
    assert_int_equal(forge_model_load(ctx, dir, &o, &m), FORGE_ERR_SHAPE);
    assert_non_null(strstr(forge_last_error(), "mlp.down_proj.weight"));
    assert_null(m);
    /* an untied model needs lm_head.weight */
    md_spec untied = s;
    untied.tie = 0;
    md_write_config(dir, &untied);
    assert_int_equal(forge_model_load(ctx, dir, &o, &m), FORGE_ERR_NOT_FOUND);
    assert_non_null(strstr(forge_last_error(), "lm_head.weight"));
    /* a model in bf16 on the CPU */
    forge_model_options bf16 = o;
    bf16.dtype = FORGE_BF16;
    assert_int_equal(forge_model_load(ctx, dir, &bf16, &m), FORGE_ERR_UNSUPPORTED);

    md_write_config(dir, &s);
    TL_OK(forge_model_load(ctx, dir, &o, &m));
    int seq;
    TL_OK(forge_model_seq_new(m, &seq));
    float *logits = tl_poisoned((size_t)cfg.vocab_size);
    const int32_t bad[2] = {3, cfg.vocab_size};
    forge_model_input in = {seq, 2, bad};
    assert_int_equal(forge_model_step(m, &in, 1, 0, logits), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "vocabulary"));
    int32_t next = -7;
    assert_int_equal(forge_model_step_greedy(m, &in, 1, &next), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "forge_model_step_greedy"));
    assert_int_equal(next, -7); /* nothing written */
    assert_int_equal(forge_model_step_greedy(m, &in, 1, NULL), FORGE_ERR_INVALID_ARGUMENT);
    int32_t *many = prompt_of(65, cfg.vocab_size, 5);
    in = (forge_model_input){seq, 65, many};
    assert_int_equal(forge_model_step(m, &in, 1, 0, logits), FORGE_ERR_CAPACITY);
    int len;
    TL_OK(forge_model_seq_len(m, seq, &len));
    assert_int_equal(len, 0);
    assert_true(isnan(logits[0])); /* nothing written */
    free(many);
    free(logits);
    forge_model_free(m);

    /* shards: the index names a file that is not there */
    md_spec sharded = s;
    sharded.shards = 1;
    md_write_model(dir, &sharded, &mm.w);
    char path[256];
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(forge_model_load(ctx, dir, &o, &m), FORGE_ERR_IO);
    assert_non_null(strstr(forge_last_error(), "model-00002-of-00002.safetensors"));
    md_model_close(&mm);
    forge_context_destroy(ctx);
}

/* Sampling: top_k 1 is greedy whatever the temperature; a seed draws the
 * same tokens again; a tiny top_p keeps only the likeliest. */
static void test_sampling(void **state) {
    (void)state;
    md_model mm;
    md_model_open(&mm, &llama, 51, g_backend, 1, 128);
    forge_model *m = mm.m;
    const forge_model_config cfg = mm.cfg;
    const char *dir = mm.dir;
    int32_t *prompt = prompt_of(5, cfg.vocab_size, 3), a[16], b[16], g[16];
    int na, nb, ng;
    const forge_sampling greedy = forge_sampling_greedy();
    TL_OK(forge_model_generate(m, prompt, 5, 16, &greedy, NULL, 0, NULL, NULL, g, &ng));
    forge_sampling s = {1.5f, 1, 1.0f, 0.0f, 1.0f, 7};
    TL_OK(forge_model_generate(m, prompt, 5, 16, &s, NULL, 0, NULL, NULL, a, &na));
    assert_memory_equal(a, g, sizeof a);
    s = (forge_sampling){1.0f, 0, 0.9f, 0.05f, 1.3f, 99};
    TL_OK(forge_model_generate(m, prompt, 5, 16, &s, NULL, 0, NULL, NULL, a, &na));
    TL_OK(forge_model_generate(m, prompt, 5, 16, &s, NULL, 0, NULL, NULL, b, &nb));
    assert_int_equal(na, 16);
    assert_memory_equal(a, b, sizeof a);
    s.top_p = 1e-6f, s.repeat_penalty = 1.0f;
    TL_OK(forge_model_generate(m, prompt, 5, 16, &s, NULL, 0, NULL, NULL, a, &na));
    assert_memory_equal(a, g, sizeof a);
    /* a stop token ends generation after it */
    int first = 0;
    while (g[first] != g[3]) first++;
    TL_OK(forge_model_generate(m, prompt, 5, 16, &greedy, &g[3], 1, NULL, NULL, a, &na));
    assert_int_equal(na, first + 1);
    s.temperature = -1.0f;
    assert_int_equal(forge_model_generate(m, prompt, 5, 16, &s, NULL, 0, NULL, NULL, a, &na), FORGE_ERR_INVALID_ARGUMENT);

    /* generation_config.json's sampling: greedy without the file or without
     * do_sample; with it, its values and transformers' defaults (top_k 50) */
    forge_sampling read;
    TL_OK(forge_sampling_read(dir, &read));
    assert_true(read.temperature == 0.0f);
    md_write_text(dir, "generation_config.json", "{\"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.9}");
    TL_OK(forge_sampling_read(dir, &read));
    assert_true(read.temperature == 0.6f && read.top_k == 50 && read.top_p == 0.9f && read.repeat_penalty == 1.0f);
    md_write_text(dir, "generation_config.json", "{\"do_sample\": false, \"temperature\": 0.6}");
    TL_OK(forge_sampling_read(dir, &read));
    assert_true(read.temperature == 0.0f);
    md_write_text(dir, "generation_config.json", "{\"do_sample\": true, \"top_p\": 2}");
    assert_int_equal(forge_sampling_read(dir, &read), FORGE_ERR_FORMAT);
    assert_non_null(strstr(forge_last_error(), "top_p"));
    free(prompt);
    md_model_close(&mm);
}

/* The fuzzer of the JSON files a model directory holds beside its weights
 * (safetensors' own is in test_safetensors): 1,500 mutations each of
 * config.json, model.safetensors.index.json and generation_config.json
 * (tl_mutate). Each read is refused with a message that names the call, or
 * gives what such a file may give: a config that passes every check, a
 * model that loads and runs a step, settings a step takes. Under the
 * sanitizers nothing may be read out of bounds or leaked. */
static void test_fuzz_files(void **state) {
    (void)state;
    if (g_backend != FORGE_BACKEND_CPU) skip(); /* files only: once is enough */
    md_spec spec = llama;
    spec.shards = 1;
    md_model mm;
    md_model_write(&mm, &spec, 43);
    const char *dir = mm.dir;
    md_write_text(dir, "generation_config.json", "{\"do_sample\": true, \"temperature\": 0.7, \"top_k\": 20, "
                  "\"top_p\": 0.9, \"min_p\": 0.05, \"repetition_penalty\": 1.1, \"eos_token_id\": [1, 2]}");
    forge_context *ctx;
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &ctx));
    const forge_model_options o = options(1, 64);
    const char *files[3] = {"config.json", "model.safetensors.index.json", "generation_config.json"};
    const char *calls[3] = {"forge_model_config_read: ", "forge_model_load: ", "forge_sampling_read: "};
    ref_rng r = ref_rng_seed(91);
    for (int f = 0; f < 3; f++) {
        char path[512], *orig;
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        TL_OK(forge_read_file("fuzz", path, &orig, &len));
        unsigned char *b = malloc(len + 16);
        assert_non_null(b);
        int accepted = 0, refused = 0;
        for (int iter = 0; iter < 1500; iter++) {
            size_t n = len;
            memcpy(b, orig, len);
            tl_mutate(b, &n, len + 16, &r, "{}[]\":,0123456789-.eE \\nultrfas");
            tl_write_file(dir, files[f], b, n);
            forge_status st;
            if (f == 0) {
                forge_model_config c;
                st = forge_model_config_read(dir, &c);
                if (st == FORGE_OK) TL_OK(model_config_check(&c, "fuzz"));
            } else if (f == 1) {
                forge_model *m = NULL;
                st = forge_model_load(ctx, dir, &o, &m);
                if (st == FORGE_OK) { /* it runs */
                    const int32_t prompt[3] = {1, 2, 3};
                    int32_t next;
                    forge_model_input in = {0, 3, prompt};
                    TL_OK(forge_model_seq_new(m, &in.seq));
                    TL_OK(forge_model_step_greedy(m, &in, 1, &next));
                } else {
                    assert_null(m);
                }
                forge_model_free(m);
            } else {
                forge_sampling smp;
                st = forge_sampling_read(dir, &smp);
                if (st == FORGE_OK) TL_OK(model_check_sampling(&smp, -1, "fuzz"));
            }
            if (st == FORGE_OK) {
                accepted++;
            } else {
                refused++;
                if (strncmp(forge_last_error(), calls[f], strlen(calls[f])) != 0)
                    fail_msg("%s, mutation %d: \"%s\" does not name %s", files[f], iter, forge_last_error(), calls[f]);
            }
        }
        print_message("%s: %d mutations accepted, %d refused\n", files[f], accepted, refused);
        assert_true(accepted > 0 && refused > 0);
        tl_write_file(dir, files[f], orig, len);
        free(orig), free(b);
    }
    forge_context_destroy(ctx);
    md_model_close(&mm);
}

/* The bit of token t in a bitmap of the vocabulary. */
static void mark_seen(uint32_t *seen, int32_t t) { seen[t / 32] |= 1u << t % 32; }

/* Steps of n sequences through m by forge_model_step_sample with
 * settings s[n] (prompts of n_prompt[i] tokens, then `steps` decode steps),
 * and through twin (the same weights) by forge_model_step: every token must
 * be model_sample's over the twin's logits, with the penalty over every
 * token its sequence has taken in and a draw seeded by its seed and
 * length. The sequences are left alive with lens[i] tokens drawn (the last
 * one not fed); in[i] feeds that last token. */
static void expect_sampled_steps(forge_model *m, forge_model *twin, const forge_sampling *s, int n,
                                 const int *n_prompt, int steps, int *lens, forge_model_input *in, int32_t *fed) {
    const int V = forge_model_get_config(m).vocab_size, words = (V + 31) / 32;
    uint32_t *seen = calloc((size_t)n * words, sizeof *seen);
    float *logits = malloc(sizeof *logits * (size_t)n * V);
    forge_scored *scratch = malloc(sizeof *scratch * (size_t)V);
    int32_t **prompts = malloc(sizeof *prompts * (size_t)n), *next = malloc(sizeof *next * (size_t)n);
    forge_model_input *twin_in = malloc(sizeof *twin_in * (size_t)n);
    assert_true(seen && logits && scratch && prompts && next && twin_in);
    for (int i = 0; i < n; i++) {
        prompts[i] = prompt_of(n_prompt[i], V, 70 + (uint64_t)i);
        for (int t = 0; t < n_prompt[i]; t++) mark_seen(seen + (size_t)i * words, prompts[i][t]);
        lens[i] = n_prompt[i];
        TL_OK(forge_model_seq_new(m, &in[i].seq));
        TL_OK(forge_model_seq_new(twin, &twin_in[i].seq));
        in[i].n_tokens = twin_in[i].n_tokens = n_prompt[i];
        in[i].tokens = twin_in[i].tokens = prompts[i];
    }
    for (int step = 0; step <= steps; step++) {
        TL_OK(forge_model_step_sample(m, in, n, s, next));
        TL_OK(forge_model_step(twin, twin_in, n, 0, logits));
        for (int i = 0; i < n; i++) {
            uint64_t rng = s[i].seed + (uint64_t)lens[i] * 0x9e3779b97f4a7c15ull;
            const int32_t want = model_sample(logits + (size_t)i * V, V, &s[i], seen + (size_t)i * words, &rng, scratch);
            if (next[i] != want) fail_msg("step %d, sequence %d: %d, the twin's logits draw %d", step, i, next[i], want);
            fed[i] = next[i];
            mark_seen(seen + (size_t)i * words, fed[i]);
            lens[i]++;
            in[i].n_tokens = twin_in[i].n_tokens = 1;
            in[i].tokens = twin_in[i].tokens = &fed[i];
        }
    }
    for (int i = 0; i < n; i++) free(prompts[i]);
    free(seen), free(logits), free(scratch), free(prompts), free(next), free(twin_in);
}

/* forge_model_step_sample over a batch of four sequences with settings of
 * their own (greedy; greedy with a penalty; a penalty with top-p and
 * min-p; top-k with a strong penalty), prompts of different lengths and
 * then 12 decode steps, against a twin model's logits (on CUDA the backend
 * finds each draw's candidates); the same over a vocabulary of 8,192 whose
 * candidates overflow a front (top-k 5,000, top-p 0.999 at temperature 8),
 * so that their rows come to the host. Then a bad setting or none leaves
 * the sequences and next as they were. */
static void test_step_sample(void **state) {
    (void)state;
    md_model mm;
    md_model_open(&mm, &llama, 61, g_backend, 4, 256);
    const forge_model_options o = options(4, 256);
    forge_model *twin;
    TL_OK(forge_model_load(mm.ctx, mm.dir, &o, &twin));
    const forge_sampling s[4] = {forge_sampling_greedy(), {0.0f, 0, 1.0f, 0.0f, 1.5f, 0},
                                 {0.8f, 0, 0.9f, 0.02f, 1.3f, 5}, {1.2f, 8, 1.0f, 0.0f, 4.0f, 6}};
    const int n_prompt[4] = {7, 3, 11, 5};
    int lens[4];
    int32_t fed[4];
    forge_model_input in[4];
    expect_sampled_steps(mm.m, twin, s, 4, n_prompt, 12, lens, in, fed);

    forge_sampling bad[4] = {s[0], s[1], s[2], s[3]};
    bad[1].top_p = 0.0f;
    int32_t untouched[4] = {-7, -7, -7, -7};
    assert_int_equal(forge_model_step_sample(mm.m, in, 4, bad, untouched), FORGE_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(forge_last_error(), "sampling[1]"));
    assert_int_equal(forge_model_step_sample(mm.m, in, 4, NULL, untouched), FORGE_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < 4; i++) {
        int len;
        TL_OK(forge_model_seq_len(mm.m, in[i].seq, &len));
        assert_int_equal(len, lens[i] - 1); /* the last token drawn was never fed */
        assert_int_equal(untouched[i], -7);
    }
    forge_model_free(twin);
    md_model_close(&mm);

    forge_model_config c;
    TL_OK(forge_model_shape("smollm2-135m", &c)); /* shrunk, but for its vocabulary */
    c.vocab_size = 8192, c.hidden = 64, c.intermediate = 64, c.layers = 1, c.heads = 2, c.kv_heads = 1;
    c.head_dim = 32, c.max_positions = 128;
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    const forge_model_options wide_o = options(2, 128);
    forge_model *wide, *wide_twin;
    TL_OK(forge_model_load_random(ctx, &c, &wide_o, 3, &wide));
    TL_OK(forge_model_load_random(ctx, &c, &wide_o, 3, &wide_twin));
    const forge_sampling overflow[2] = {{8.0f, 5000, 1.0f, 0.0f, 1.0f, 1}, {8.0f, 0, 0.999f, 0.0f, 1.1f, 2}};
    const int wide_prompt[2] = {4, 6};
    expect_sampled_steps(wide, wide_twin, overflow, 2, wide_prompt, 3, lens, in, fed);
    forge_model_free(wide), forge_model_free(wide_twin);
    forge_context_destroy(ctx);
}

/* A stand-in on the CPU for a backend's sample_front, so that the model's
 * side of it (its buffers, the settings and seen bits going up, the fronts
 * coming down, the fall back to a row of logits) runs on this machine: each
 * row's front found by a sort of the whole row, three candidates past what
 * the draw needs (with their ties), shuffled; every third row says it
 * found more than fit, so that its row comes to the host. */
static forge_status fake_sample_front(forge_context *ctx, forge_dtype dtype, void *out, const void *logits,
                                      const forge_sample_row *settings, const uint32_t *seen, long rows, int vocab,
                                      int cap) {
    (void)ctx, (void)dtype;
    forge_scored *all = malloc(sizeof *all * (size_t)vocab);
    assert_non_null(all);
    uint64_t lcg = 1;
    for (long r = 0; r < rows; r++) {
        const forge_sample_row *st = &settings[r];
        const float *row = (const float *)logits + r * vocab;
        const uint32_t *bits = seen && st->repeat_penalty != 1.0f ? seen + r * ((vocab + 31) / 32) : NULL;
        for (int i = 0; i < vocab; i++) {
            float x = row[i];
            if (bits && bits[i / 32] >> (i % 32) & 1) x = x > 0 ? x / st->repeat_penalty : x * st->repeat_penalty;
            all[i] = (forge_scored){st->temperature > 0.0f ? x / st->temperature : x, i};
        }
        double top = all[0].score;
        for (int i = 1; i < vocab; i++) top = all[i].score > top ? all[i].score : top;
        const double mass = model_mass(all, vocab, top);
        qsort(all, (size_t)vocab, sizeof *all, model_order);
        const int top_k = st->top_k > 0 && st->top_k < vocab;
        int limit = vocab, n = 1;
        if (!top_k && st->min_p > 0.0f)
            for (limit = 0; limit < vocab && exp(all[limit].score - top) >= st->min_p;) limit++;
        if (st->temperature > 0.0f) {
            if (top_k) {
                n = st->top_k;
            } else if (st->top_p < 1.0f) {
                double cum = 0.0;
                for (n = 0; n < limit && cum < st->top_p;) cum += exp(all[n++].score - top) / mass;
            } else {
                n = limit;
            }
            n = n + 3 < limit ? n + 3 : limit;
            while (n < limit && all[n].score == all[n - 1].score) n++;
        }
        forge_sample_head *h = (forge_sample_head *)((char *)out + (size_t)r * FORGE_SAMPLE_ROW_BYTES(cap));
        forge_scored *c = (forge_scored *)(h + 1);
        assert_true(n <= cap);
        memcpy(c, all, sizeof *c * (size_t)n);
        for (int i = n - 1; i > 0 && st->temperature > 0.0f; i--) {
            const int j = (int)((lcg = lcg * 6364136223846793005ull + 1442695040888963407ull) >> 33) % (i + 1);
            const forge_scored t = c[i];
            c[i] = c[j], c[j] = t;
        }
        *h = (forge_sample_head){mass, r % 3 == 2 ? cap + 1 : n, !top_k && n == limit};
    }
    free(all);
    return FORGE_OK;
}

/* forge_model_step_sample through a backend's fronts, on the CPU: the
 * stand-in above in place of the CPU's (absent) sample_front, the tokens a
 * twin's logits draw. */
static void test_step_sample_fronts(void **state) {
    (void)state;
    if (g_backend != FORGE_BACKEND_CPU) skip(); /* the stand-in computes on the host */
    md_model mm;
    md_model_open(&mm, &llama, 62, FORGE_BACKEND_CPU, 4, 256);
    forge_context *twin_ctx;
    forge_model *twin;
    const forge_model_options o = options(4, 256);
    TL_OK(forge_context_create(FORGE_BACKEND_CPU, &twin_ctx));
    TL_OK(forge_model_load(twin_ctx, mm.dir, &o, &twin));
    const forge_backend_ops *cpu = mm.ctx->ops;
    forge_backend_ops with_fronts = *cpu;
    with_fronts.sample_front = fake_sample_front;
    mm.ctx->ops = &with_fronts;
    const forge_sampling s[4] = {{0.0f, 0, 1.0f, 0.0f, 1.5f, 0}, {0.8f, 0, 0.9f, 0.02f, 1.3f, 5},
                                 {1.2f, 8, 1.0f, 0.0f, 4.0f, 6}, {1.0f, 0, 1.0f, 0.1f, 1.0f, 7}};
    const int n_prompt[4] = {7, 3, 11, 5};
    int lens[4];
    int32_t fed[4];
    forge_model_input in[4];
    expect_sampled_steps(mm.m, twin, s, 4, n_prompt, 12, lens, in, fed);
    mm.ctx->ops = cpu;
    forge_model_free(twin);
    forge_context_destroy(twin_ctx);
    md_model_close(&mm);
}

/* model_sample's candidates found the plain way: the whole vocabulary
 * sorted, top-k keeping the ties with the k-th; then its draw. The mass is
 * summed as model_sample sums it: over the top-k candidates in their
 * order, or over the whole vocabulary in the order of ids. */
static int32_t oracle_sample(const float *scores, int vocab, const forge_sampling *s, uint64_t *rng) {
    forge_scored *v = malloc(sizeof *v * (size_t)vocab);
    assert_non_null(v);
    for (int i = 0; i < vocab; i++) v[i] = (forge_scored){scores[i] / s->temperature, i};
    const int top_k = s->top_k > 0 && s->top_k < vocab;
    double mass = 0.0, top = v[0].score;
    for (int i = 1; i < vocab; i++) top = v[i].score > top ? v[i].score : top;
    if (!top_k) mass = model_mass(v, vocab, top);
    qsort(v, (size_t)vocab, sizeof *v, model_order);
    int kept = vocab;
    if (top_k) {
        for (kept = s->top_k; kept < vocab && v[kept].score == v[s->top_k - 1].score;) kept++;
        mass = model_mass(v, kept, top);
    }
    const int32_t id = model_draw_sorted(v, kept, mass, s, rng);
    free(v);
    return id;
}

/* model_sample, which sorts only the top-k candidates it selects, draws the
 * very tokens of a sort of the whole vocabulary, on logits with many ties,
 * for top-k of 0 (none) and of 1 to all but one, with and without top-p and
 * min-p. */
static void test_sample_selection(void **state) {
    (void)state;
    enum { V = 1000 };
    float logits[V];
    forge_scored *scratch = malloc(sizeof *scratch * V);
    assert_non_null(scratch);
    ref_rng r = ref_rng_seed(77);
    const int ks[] = {0, 1, 2, 7, 50, 500, V - 1};
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < V; i++) logits[i] = (float)(int)(ref_rng_uniform(&r) * 40) / 4; /* 160 values: ties */
        for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
            const forge_sampling s = {0.5f + (float)(round % 4) * 0.5f, ks[k], round % 3 ? 0.9f : 1.0f,
                                      round % 2 ? 0.05f : 0.0f, 1.0f, 0};
            uint64_t a = (uint64_t)round * 31 + k, b = a;
            for (int draw = 0; draw < 5; draw++) {
                const int32_t got = model_sample(logits, V, &s, NULL, &a, scratch);
                const int32_t want = oracle_sample(logits, V, &s, &b);
                if (got != want) fail_msg("round %d, top_k %d, draw %d: %d, the full sort's %d", round, ks[k], draw, got, want);
            }
        }
    }
    free(scratch);
}

/* model_draw_front on candidates as a backend's sample_front may leave
 * them (a start of the order with every tie of its last, shuffled): the
 * token model_sample draws from the whole row, for fronts of the least it
 * needs and more; -1 for a top-p front that stops short of the walk, for
 * fewer than top-k's k and for more candidates than were written. */
static void test_draw_front(void **state) {
    (void)state;
    enum { V = 1000 };
    float logits[V];
    forge_scored *all = malloc(sizeof *all * V), *front = malloc(sizeof *front * V), *scratch = malloc(sizeof *scratch * V);
    assert_true(all && front && scratch);
    ref_rng r = ref_rng_seed(78);
    const int ks[] = {0, 1, 7, 50, V - 1};
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < V; i++) logits[i] = (float)(int)(ref_rng_uniform(&r) * 40) / 4; /* ties */
        for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
            const forge_sampling s = {round % 5 ? 0.5f + (float)(round % 4) * 0.5f : 0.0f, ks[k],
                                      round % 3 ? 0.9f : 1.0f, round % 2 ? 0.05f : 0.0f, 1.0f, 0};
            const int top_k = s.top_k > 0 && s.top_k < V;
            for (int i = 0; i < V; i++) all[i] = (forge_scored){s.temperature > 0 ? logits[i] / s.temperature : logits[i], i};
            double top = all[0].score;
            for (int i = 1; i < V; i++) top = all[i].score > top ? all[i].score : top;
            const double mass = model_mass(all, V, top);
            qsort(all, V, sizeof *all, model_order);
            /* the candidates the draw needs: one when greedy; top-k's with their
             * ties; else the tokens min-p keeps, as far as the top-p walk goes */
            int limit = V, needed;
            if (!top_k && s.min_p > 0.0f)
                for (limit = 0; limit < V && exp(all[limit].score - top) >= s.min_p;) limit++;
            if (s.temperature <= 0.0f) {
                needed = 1;
            } else if (top_k) {
                for (needed = s.top_k; needed < V && all[needed].score == all[s.top_k - 1].score;) needed++;
            } else if (s.top_p < 1.0f) {
                double cum = 0.0;
                for (needed = 0; needed < limit && cum < s.top_p;) cum += exp(all[needed++].score - top) / mass;
            } else {
                needed = limit;
            }
            for (int trial = 0; trial < 4; trial++) {
                int m = trial == 0 ? needed : trial == 3 ? needed - 1
                                          : needed + (int)(ref_rng_uniform(&r) * (limit - needed + 1));
                m = m > limit ? limit : m;
                if (trial == 3) /* short: back to where the tie group of token `needed` starts */
                    while (m > 0 && all[m].score == all[m - 1].score) m--;
                while (m > 0 && m < limit && all[m].score == all[m - 1].score) m++; /* ties go together */
                if (s.temperature <= 0.0f) m = trial ? 0 : 1; /* greedy: the first largest alone */
                if (m < 1) continue;
                memcpy(front, all, sizeof *front * (size_t)m);
                for (int i = m - 1; i > 0; i--) { /* in no order */
                    const int j = (int)(ref_rng_uniform(&r) * (i + 1));
                    const forge_scored t = front[i];
                    front[i] = front[j], front[j] = t;
                }
                const forge_sample_head h = {mass, m, m == limit};
                uint64_t a = (uint64_t)round * 7 + k, b = a;
                const int32_t want = model_sample(logits, V, &s, NULL, &b, scratch);
                const int short_walk = !top_k && s.temperature > 0.0f && m < needed && !h.complete;
                const int32_t expect = short_walk || (top_k && s.temperature > 0.0f && m < s.top_k) ? -1 : want;
                const int32_t got = model_draw_front(&h, front, V, V, &s, &a);
                if (got != expect)
                    fail_msg("round %d, top_k %d, a front of %d (%d needed, %d kept): %d, want %d", round, s.top_k, m,
                             needed, limit, got, expect);
                if (trial == 0 && m > 1) assert_int_equal(model_draw_front(&h, front, m - 1, V, &s, &a), -1);
            }
        }
    }
    free(all), free(front), free(scratch);
}

/* The CPU backend's projection, sgemm or sgemv a block of W at a time by
 * the number of rows, against a float64 product: rows on both sides of
 * CPU_LINEAR_GEMV_ROWS, W of several blocks and a partial last one, with
 * and without a bias. */
static void test_cpu_linear(void **state) {
    (void)state;
    const int in = 1000, out = (int)(2.5 * CPU_LINEAR_BLOCK_BYTES / (in * sizeof(float)));
    const int rows[] = {1, 3, CPU_LINEAR_GEMV_ROWS, CPU_LINEAR_GEMV_ROWS + 1};
    float *x = tl_random((size_t)CPU_LINEAR_GEMV_ROWS * 2 * in, 5, 1.0);
    float *w = tl_random((size_t)out * in, 6, 1.0), *bias = tl_random((size_t)out, 7, 1.0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            float *y = tl_poisoned((size_t)rows[i] * out);
            cpu_linear(y, x, w, with_bias ? bias : NULL, rows[i], in, out);
            for (int r = 0; r < rows[i]; r++)
                for (int o = 0; o < out; o++) {
                    double want = with_bias ? bias[o] : 0;
                    for (int k = 0; k < in; k++) want += (double)x[(size_t)r * in + k] * w[(size_t)o * in + k];
                    if (!(fabs(y[(size_t)r * out + o] - want) <= 1e-4 * (1 + fabs(want))))
                        fail_msg("%d rows, bias %d: y[%d][%d] = %g, want %g", rows[i], with_bias, r, o,
                                 y[(size_t)r * out + o], want);
                }
            free(y);
        }
    free(x), free(w), free(bias);
}

/* The logits of one prompt through a model of random weights. */
static float *random_model_logits(forge_context *ctx, const forge_model_config *cfg, uint64_t seed, int ranks) {
    forge_model *m;
    forge_model_options o = options(1, 64);
    o.tensor_parallel = ranks;
    TL_OK(forge_model_load_random(ctx, cfg, &o, seed, &m));
    const int32_t prompt[5] = {3, 1, 4, 1, 5};
    float *logits = tl_poisoned((size_t)cfg->vocab_size);
    int seq;
    TL_OK(forge_model_seq_new(m, &seq));
    const forge_model_input in = {seq, 5, prompt};
    TL_OK(forge_model_step(m, &in, 1, 0, logits));
    forge_model_free(m);
    for (int i = 0; i < cfg->vocab_size; i++) assert_true(isfinite(logits[i]));
    return logits;
}

/* Named shapes and models of random weights: every shape's config passes
 * the checks config.json's numbers pass; a random model is the same for
 * the same seed and another for another; a bad config is refused by name. */
static void test_random_models(void **state) {
    (void)state;
    int n = 0;
    for (const char *name; (name = forge_model_shape_name(n)); n++) {
        forge_model_config c;
        TL_OK(forge_model_shape(name, &c));
        TL_OK(model_config_check(&c, "test"));
    }
    assert_true(n >= 10);
    forge_model_config c;
    TL_OK(forge_model_shape("llama3-8b", &c));
    assert_true(c.hidden == 4096 && c.intermediate == 14336 && c.layers == 32 && c.kv_heads == 8 &&
                c.vocab_size == 128256 && c.rope_scaling.type == FORGE_ROPE_SCALING_LLAMA3 && !c.tie_embeddings);
    assert_int_equal(forge_model_shape("llama9", &c), FORGE_ERR_NOT_FOUND);
    assert_non_null(strstr(forge_last_error(), "no shape named \"llama9\" (known: llama3-8b, llama3.2-1b"));

    TL_OK(forge_model_shape("qwen3-0.6b", &c)); /* shrunk: Qwen 3's norms of heads, tied */
    c.vocab_size = 97, c.hidden = 128, c.intermediate = 96, c.layers = 2, c.heads = 4, c.kv_heads = 2;
    c.head_dim = 32, c.max_positions = 128;
    forge_context *ctx;
    TL_OK(forge_context_create(g_backend, &ctx));
    float *a = random_model_logits(ctx, &c, 7, 0), *b = random_model_logits(ctx, &c, 7, 0);
    float *d = random_model_logits(ctx, &c, 8, 0);
    assert_memory_equal(a, b, sizeof *a * (size_t)c.vocab_size);
    int differ = 0;
    for (int i = 0; i < c.vocab_size; i++) differ += a[i] != d[i];
    assert_true(differ > c.vocab_size / 2);
    free(a), free(b), free(d);
    /* split, each rank draws only its part: the same model (the MLP's
     * 8320 x 128 weights pass the drawn block's million and repeat it) */
    forge_model_config wide = c;
    wide.intermediate = 8320;
    a = random_model_logits(ctx, &wide, 7, 0), b = random_model_logits(ctx, &wide, 7, 2);
    double num = 0, den = 0;
    for (int i = 0; i < c.vocab_size; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += (double)a[i] * a[i];
    if (!(sqrt(num / den) < 1e-5)) fail_msg("a random model split over 2 ranks is off the whole one by %g", sqrt(num / den));
    free(a), free(b);

    forge_model *m = (forge_model *)&c; /* must stay untouched */
    const forge_model_options o = options(1, 64);
    forge_model_config bad = c;
    bad.kv_heads = 3;
    assert_int_equal(forge_model_load_random(ctx, &bad, &o, 1, &m), FORGE_ERR_FORMAT);
    assert_non_null(strstr(forge_last_error(), "num_attention_heads 4 is not a multiple of num_key_value_heads 3"));
    bad = c, bad.vocab_size = 0;
    assert_int_equal(forge_model_load_random(ctx, &bad, &o, 1, &m), FORGE_ERR_FORMAT);
    assert_non_null(strstr(forge_last_error(), "vocab_size = 0 is outside [1, 16777216]"));
    assert_ptr_equal(m, (forge_model *)&c);
    assert_int_equal(forge_model_load_random(ctx, NULL, &o, 1, &m), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_model_load_random(NULL, &c, &o, 1, &m), FORGE_ERR_INVALID_ARGUMENT);
    assert_int_equal(forge_model_shape(NULL, &c), FORGE_ERR_INVALID_ARGUMENT);
    assert_null(forge_model_shape_name(-1));
    assert_null(forge_model_shape_name(n));
    forge_context_destroy(ctx);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) g_backend = FORGE_BACKEND_CUDA;
    tl_require_backend(g_backend);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_tied),   cmocka_unit_test(test_llama3_shards),
        cmocka_unit_test(test_qwen2_biases), cmocka_unit_test(test_qwen3_qk_norm),
        cmocka_unit_test(test_mistral),      cmocka_unit_test(test_batch),
        cmocka_unit_test(test_mistral_window), cmocka_unit_test(test_qwen2_window),
        cmocka_unit_test(test_batch_window), cmocka_unit_test(test_window_configs),
        cmocka_unit_test(test_bad_configs),  cmocka_unit_test(test_bad_weights_and_calls),
        cmocka_unit_test(test_sampling),     cmocka_unit_test(test_step_sample),
        cmocka_unit_test(test_step_sample_fronts),
        cmocka_unit_test(test_sample_selection), cmocka_unit_test(test_draw_front),
        cmocka_unit_test(test_random_models), cmocka_unit_test(test_cpu_linear),
        cmocka_unit_test(test_fuzz_files),   cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_sampling), cmocka_unit_test(test_bad_splits),
        cmocka_unit_test(test_split_capacity), cmocka_unit_test(test_split_failure),
    };
    return cmocka_run_group_tests_name(g_backend == FORGE_BACKEND_CUDA ? "model_cuda" : "model", tests, NULL, NULL);
}
