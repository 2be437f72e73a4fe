/* SPDX-License-Identifier: Apache-2.0 */
/* forge.c: the forge command-line tool, a thin layer over the library: its
 * commands, their usage, and `forge help`.
 *
 *   forge run                 the seed layer on the best backend, checked
 *   forge attn ...            one layer on tensors from safetensors files
 *   forge check               the backend against the reference over a grid
 *   forge support             what runs where (the support table)
 *   forge generate ...        a model directory and a prompt in, tokens out
 *   forge bench layer|prefill|decode|step|model ...  timings, one JSON object a line with --json
 *
 * Exit codes: 0 done, 1 a check failed, 2 the command line is wrong, 3 it
 * could not run (a file, the library, the device). */
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
    const char *name; /* "run", "bench prefill" */
    int (*fn)(int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"run", cmd_run,
     "usage: forge run [--backend auto|cpu|cuda] [--iters N]\n"
     "  The seed report's layer (seq 32, 4 heads, head_dim 32, hidden 128, fp32,\n"
     "  half-rotation RoPE) with seeded random weights on the best backend present:\n"
     "  stage times, the error against the float64 reference, fallbacks. Exits 1 when\n"
     "  the error is over the float32 tolerance.\n"},
    {"attn", cmd_attn,
     "usage: forge attn --weights W.safetensors --input X.safetensors --out Y.safetensors\n"
     "                  --heads H [--kv-heads K] [--rope-theta T]\n"
     "                  [--rope-style half|interleaved|none] [--pos0 N] [--prefix P] [--backend B]\n"
     "  One attention layer on tensors from files: q_proj.weight, k_proj.weight,\n"
     "  v_proj.weight, o_proj.weight ([out, in]) and optional .bias under --prefix in W;\n"
     "  x [seq, hidden] or [batch, seq, hidden] in X. Writes y, of x's shape and dtype,\n"
     "  to Y (which must be neither input).\n"},
    {"check", cmd_check,
     "usage: forge check [--backend auto|cpu|cuda]\n"
     "  The backend against the float64 reference over a grid of shapes (lengths,\n"
     "  heads, KV heads, head dims 32..256, cached prefixes) on both attention paths:\n"
     "  a table of errors. Exits 1 if any is over tolerance.\n"},
    {"support", cmd_support,
     "usage: forge support\n"
     "  What runs where: each operation's kernel on each backend, the GPUs it needs,\n"
     "  its dtypes and head dims, as a markdown table (the README's support table).\n"},
    {"generate", cmd_generate,
     "usage: forge generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [-n N]\n"
     "                      [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
     "                      [--repeat-penalty R] [--seed S] [--ctx N] [--dtype fp32|fp16|bf16]\n"
     "                      [--backend auto|cpu|cuda] [--tp N] [--ids] [--json]\n"
     "  Generates up to N tokens (128) after the prompt with the Hugging Face model in\n"
     "  DIR (config.json, safetensors, tokenizer.json), printing the text as it comes;\n"
     "  --ids prints the generated ids on one line instead. Stops at the EOS ids of\n"
     "  generation_config.json and samples as it says (greedy without one); the options\n"
     "  override it, --temperature 0 being greedy. At the end,\n"
     "  the prompt and generated token counts, prefill time and speed and decode speed\n"
     "  go to stderr; --json prints them as one JSON object on stdout, with the ids.\n"
     "  --ctx is the tokens the sequence may hold (prompt + N by default), at most the\n"
     "  model's max_position_embeddings; N is cut to what fits. --tp N splits the model\n"
     "  over N GPUs (tensor parallelism through NCCL; 0, the default: one, whole).\n"},
    {"tokenize", cmd_tokenize,
     "usage: forge tokenize --model PATH (--text TEXT | --file F) [--no-special]\n"
     "  The token ids of the text (UTF-8) under a Hugging Face tokenizer, on one line,\n"
     "  separated by spaces: as tokenizers' Tokenizer.from_file(...).encode(text)\n"
     "  gives them, with the special tokens it adds (BOS ...) unless --no-special.\n"
     "  PATH is a tokenizer.json file or a model directory holding one.\n"},
    {"detokenize", cmd_detokenize,
     "usage: forge detokenize --model PATH --ids 1,2,3 [--skip-special]\n"
     "  The text of the ids under a Hugging Face tokenizer, as tokenizers' decode\n"
     "  gives it, without the special tokens with --skip-special.\n"},
    {"bench layer", bench_layer,
     "usage: forge bench layer [--json] --seq S --heads H [--kv-heads K] --head-dim D\n"
     "                         [--hidden N] [--batch B] [--dtype fp32|fp16|bf16] [--iters N]\n"
     "                         [--warmup N] [--backend B] [--attention flash|unfused]\n"
     "  The whole layer over B prompts of S tokens: median and spread, eager and as a\n"
     "  graph, and per-stage medians.\n"},
    {"bench prefill", bench_prefill,
     "usage: forge bench prefill [--json] --seq S --heads H [--kv-heads K] --head-dim D\n"
     "                           [--batch B] [--dtype bf16] [--no-causal] [--iters N]\n"
     "                           [--warmup N] [--backend B] [--kernel auto|portable]\n"
     "                           [--window W] [--softcap C]\n"
     "  Attention alone (forge_attention_forward) over B sequences of S tokens: median\n"
     "  time and TFLOP/s (of the (query, key) pairs seen: causal halves them, a\n"
     "  sliding window of W keys cuts them further). --kernel portable times the\n"
     "  mma.sync kernel where Hopper's would run; --softcap caps scores at C.\n"},
    {"bench decode", bench_decode,
     "usage: forge bench decode [--json] --kv-len L --heads H [--kv-heads K] --head-dim D\n"
     "                          [--batch B] [--dtype bf16] [--page-size 16] [--split-size S]\n"
     "                          [--iters N] [--warmup N] [--backend B] [--window W]\n"
     "                          [--softcap C]\n"
     "  One decode step over a paged KV cache (forge_paged_attention) of B sequences of\n"
     "  L tokens: median time and TB/s of K and V read (with a sliding window of W,\n"
     "  of the W last tokens); --softcap caps scores at C.\n"},
    {"bench step", bench_step,
     "usage: forge bench step [--json] --kv-len L --heads H [--kv-heads K] --head-dim D\n"
     "                        [--batch B] [--hidden N] [--dtype bf16] [--page-size 16]\n"
     "                        [--split-size S] [--iters N] [--warmup N] [--backend B]\n"
     "  One decode step of the whole layer over a paged KV cache of B sequences of L\n"
     "  tokens (forge_layer_forward_paged), eager and as a graph.\n"},
    {"bench model", bench_model,
     "usage: forge bench model (--model DIR | --shape NAME [--layers N]) [--batch B] [--prompt P]\n"
     "                         [--new N] [--dtype fp32] [--backend B] [--tp N] [--json]\n"
     "                         [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
     "                         [--repeat-penalty R] [--seed S]\n"
     "  A Hugging Face model directory loaded (timed), a step over B sequences of P\n"
     "  random tokens (prefill), then N decode steps of all of them, greedy or drawn as\n"
     "  the sampling options say: the rows of ../shared/bench/torch_model_ref.py (mode,\n"
     "  tok_per_s, ms, ms_per_token). --tp N splits the model over N GPUs (the rows\n"
     "  say tp).\n"
     "  --shape NAME: random weights of a well-known model's shape, nothing read\n"
     "  (llama3-8b, llama3.2-1b, llama3.2-3b, llama3-70b, llama2-7b, tinyllama-1.1b,\n"
     "  smollm2-135m, mistral-7b, qwen2.5-7b, qwen3-0.6b, qwen3-8b); --layers N keeps its\n"
     "  first N blocks.\n"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static const char overview[] =
    "usage: forge <command> [options]      forge help <command>      forge --version\n"
    "\n"
    "  run            the seed layer on the best backend, checked against the reference\n"
    "  attn           one attention layer on tensors from safetensors files\n"
    "  check          the backend against the float64 reference over a grid of shapes\n"
    "  support        what runs where: kernels, GPUs, dtypes, head dims\n"
    "  generate       text from a Hugging Face model directory and a prompt\n"
    "  tokenize       a text's token ids under a Hugging Face tokenizer.json\n"
    "  detokenize     ids back to text under a Hugging Face tokenizer.json\n"
    "  bench layer    the whole layer, timed\n"
    "  bench prefill  attention alone, timed (TFLOP/s)\n"
    "  bench decode   decode attention over a paged KV cache, timed (TB/s)\n"
    "  bench step     the layer's decode step over a paged KV cache, eager and as a graph\n"
    "  bench model    a whole model: load, prefill, decode (tok/s)\n"
    "\n"
    "Options take --name value or --name=value; `forge <command> --help` shows a\n"
    "command's. Exit codes: 0 done, 1 a check failed, 2 the command line is wrong,\n"
    "3 it could not run (a file, the library, the device).\n";

/* The command named by argv[0] (and argv[1] for bench), or NULL; *words is
 * how many words its name takes. */
static const command *find(int argc, char **argv, int *words) {
    for (int i = 0; i < N_COMMANDS; i++) {
        const char *name = commands[i].name, *space = strchr(name, ' ');
        if (!space && strcmp(argv[0], name) == 0) return *words = 1, &commands[i];
        if (space && argc >= 2 && strncmp(argv[0], name, (size_t)(space - name)) == 0 &&
            argv[0][space - name] == '\0' && strcmp(argv[1], space + 1) == 0)
            return *words = 2, &commands[i];
    }
    return NULL;
}

/* The usage of every command whose name begins with `group` ("bench"),
 * on out; 0 when there is none. */
static int print_group(const char *group, FILE *out) {
    int found = 0;
    for (int i = 0; i < N_COMMANDS; i++)
        if (strncmp(commands[i].name, group, strlen(group)) == 0 && commands[i].name[strlen(group)] == ' ')
            fputs(commands[i].usage, out), found = 1;
    return found;
}

static int is_help(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

/* forge help [COMMAND...] */
static int help(int argc, char **argv) {
    if (argc == 0) return fputs(overview, stdout), CLI_OK;
    int words;
    const command *c = find(argc, argv, &words);
    if (c && words == argc) return fputs(c->usage, stdout), CLI_OK;
    if (argc == 1 && print_group(argv[0], stdout)) return CLI_OK;
    fprintf(stderr, "forge help: no command '%s' (see forge help)\n", argv[0]);
    return CLI_USAGE;
}

int main(int argc, char **argv) {
    if (argc < 2) return fputs(overview, stderr), CLI_USAGE;
    if (strcmp(argv[1], "--version") == 0) return printf("forge %s\n", forge_version()), CLI_OK;
    if (strcmp(argv[1], "help") == 0 || is_help(argv[1])) return help(argc - 2, argv + 2);
    int words;
    const command *c = find(argc - 1, argv + 1, &words);
    if (!c) {
        if (argc == 2 || is_help(argv[2])) /* "forge bench": a usage error; "forge bench --help" */
            if (print_group(argv[1], argc == 2 ? stderr : stdout)) return argc == 2 ? CLI_USAGE : CLI_OK;
        fprintf(stderr, "forge: no command '%s%s%s' (see forge help)\n", argv[1], argc > 2 ? " " : "",
                argc > 2 && strcmp(argv[1], "bench") == 0 ? argv[2] : "");
        return CLI_USAGE;
    }
    for (int i = 1 + words; i < argc; i++)
        if (is_help(argv[i])) return fputs(c->usage, stdout), CLI_OK;
    /* the command sees its name as argv[0], as getopt_long expects */
    return c->fn(argc - words, argv + words);
}
