/* SPDX-License-Identifier: Apache-2.0 */
/* forge.c: the forge command-line tool, a thin layer over libforge.
 *
 *   forge run                 the seed layer on the best backend, checked
 *   forge attn ...            one layer on tensors from safetensors files
 *   forge bench layer|prefill|decode|step ...  timings, one JSON object a line with --json
 *   forge check               the backend against the reference over a grid
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: forge <command> [options]\n"
    "\n"
    "  run    [--backend auto|cpu|cuda] [--iters N]\n"
    "         the seed layer (seq 32, 4 heads, head_dim 32, hidden 128, fp32, RoPE)\n"
    "         with seeded random weights on the best backend: stage times, error\n"
    "         against the float64 reference, fallbacks\n"
    "  attn   --weights W.safetensors --input X.safetensors --out Y.safetensors\n"
    "         --heads H [--kv-heads K] [--rope-theta T] [--rope-style half|interleaved|none]\n"
    "         [--pos0 N] [--prefix P] [--backend B]\n"
    "         one attention layer: weights q_proj.weight, k_proj.weight, v_proj.weight,\n"
    "         o_proj.weight ([out, in]) and optional .bias; x [seq, hidden] or\n"
    "         [batch, seq, hidden]; writes y of the same shape and dtype\n"
    "  check  [--backend B]\n"
    "         the backend against the float64 reference over a grid of shapes\n"
    "         (lengths, heads, KV heads, head dims 32..256, cached prefixes) on both\n"
    "         attention paths: a table of errors; exit 1 if any is over tolerance\n"
    "  bench  layer [--json] --seq S --heads H [--kv-heads K] --head-dim D [--hidden N]\n"
    "         [--batch B] [--dtype fp32] [--iters N] [--warmup N] [--backend B]\n"
    "         [--attention flash|unfused]\n"
    "         median and spread of the whole layer, and per-stage medians\n"
    "  bench  prefill [--json] --seq S --heads H [--kv-heads K] --head-dim D [--batch B]\n"
    "         [--dtype bf16] [--no-causal] [--iters N] [--warmup N] [--backend B]\n"
    "         [--kernel auto|portable]\n"
    "         attention alone (forge_attention_forward) over B sequences of S tokens:\n"
    "         median time and TFLOP/s (causal FLOPs halved, as torch_ref.py counts);\n"
    "         --kernel portable times the mma.sync kernel where Hopper's would run\n"
    "  bench  decode [--json] --kv-len L --heads H [--kv-heads K] --head-dim D [--batch B]\n"
    "         [--dtype bf16] [--page-size 16] [--split-size S] [--iters N] [--warmup N]\n"
    "         [--backend B]\n"
    "         one decode step over a paged KV cache (forge_paged_attention) of B\n"
    "         sequences of L tokens: median time and TB/s of K and V read\n"
    "  bench  step [--json] --kv-len L --heads H [--kv-heads K] --head-dim D [--batch B]\n"
    "         [--hidden N] [--dtype bf16] [--page-size 16] [--split-size S] [--iters N]\n"
    "         [--warmup N] [--backend B]\n"
    "         one decode step of the whole layer over a paged KV cache of B sequences\n"
    "         of L tokens (forge_layer_forward_paged), eager and as a graph\n";

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("forge %s\n", forge_version());
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "attn") == 0) return cmd_attn(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0) return cmd_check(argc - 2, argv + 2);
    fprintf(stderr, "forge: unknown command '%s' (try forge help)\n", cmd);
    return 2;
}
