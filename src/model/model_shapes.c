/* SPDX-License-Identifier: Apache-2.0 */
/* model_shapes.c: the configs of well-known models by name, as their
 * config.json files have them, for models of random weights
 * (forge_model_load_random): benchmarks of a shape with nothing
 * downloaded. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "model.h"

#define LLAMA3_SCALING(f) {FORGE_ROPE_SCALING_LLAMA3, f, 1.0f, 4.0f, 8192}
#define QKV (FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V)

static const struct {
    const char *name;
    forge_model_config cfg;
} shapes[] = {
    /* name            arch               vocab  hidden inter  layers heads kv hd  positions eps  theta
                       rope scaling             tied bias qk_norm window from dtype */
    {"llama3-8b",      {FORGE_ARCH_LLAMA,   128256, 4096, 14336, 32, 32, 8, 128, 131072, 1e-5f, 500000.0f,
                        LLAMA3_SCALING(8.0f),  0, 0,   0, 0, 0, FORGE_BF16}},
    {"llama3.2-1b",    {FORGE_ARCH_LLAMA,   128256, 2048, 8192,  16, 32, 8, 64,  131072, 1e-5f, 500000.0f,
                        LLAMA3_SCALING(32.0f), 1, 0,   0, 0, 0, FORGE_BF16}},
    {"llama3.2-3b",    {FORGE_ARCH_LLAMA,   128256, 3072, 8192,  28, 24, 8, 128, 131072, 1e-5f, 500000.0f,
                        LLAMA3_SCALING(32.0f), 1, 0,   0, 0, 0, FORGE_BF16}},
    {"llama3-70b",     {FORGE_ARCH_LLAMA,   128256, 8192, 28672, 80, 64, 8, 128, 131072, 1e-5f, 500000.0f,
                        LLAMA3_SCALING(8.0f),  0, 0,   0, 0, 0, FORGE_BF16}},
    {"llama2-7b",      {FORGE_ARCH_LLAMA,   32000,  4096, 11008, 32, 32, 32, 128, 4096,  1e-5f, 10000.0f,
                        {0},                   0, 0,   0, 0, 0, FORGE_F16}},
    {"tinyllama-1.1b", {FORGE_ARCH_LLAMA,   32000,  2048, 5632,  22, 32, 4, 64,  2048,   1e-5f, 10000.0f,
                        {0},                   0, 0,   0, 0, 0, FORGE_BF16}},
    {"smollm2-135m",   {FORGE_ARCH_LLAMA,   49152,  576,  1536,  30, 9,  3, 64,  8192,   1e-5f, 100000.0f,
                        {0},                   1, 0,   0, 0, 0, FORGE_BF16}},
    {"mistral-7b",     {FORGE_ARCH_MISTRAL, 32768,  4096, 14336, 32, 32, 8, 128, 32768,  1e-5f, 1000000.0f,
                        {0},                   0, 0,   0, 0, 0, FORGE_BF16}},
    {"qwen2.5-7b",     {FORGE_ARCH_QWEN2,   152064, 3584, 18944, 28, 28, 4, 128, 32768,  1e-6f, 1000000.0f,
                        {0},                   0, QKV, 0, 0, 0, FORGE_BF16}},
    {"qwen3-0.6b",     {FORGE_ARCH_QWEN3,   151936, 1024, 3072,  28, 16, 8, 128, 40960,  1e-6f, 1000000.0f,
                        {0},                   1, 0,   1, 0, 0, FORGE_BF16}},
    {"qwen3-8b",       {FORGE_ARCH_QWEN3,   151936, 4096, 12288, 36, 32, 8, 128, 40960,  1e-6f, 1000000.0f,
                        {0},                   0, 0,   1, 0, 0, FORGE_BF16}},
};

const char *forge_model_shape_name(int i) {
    return i >= 0 && i < (int)(sizeof shapes / sizeof shapes[0]) ? shapes[i].name : NULL;
}

forge_status forge_model_shape(const char *name, forge_model_config *out) {
    static const char fn[] = "forge_model_shape";
    FORGE_CHECK_NOT_NULL(name, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    char known[512] = "";
    for (size_t i = 0, n = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (strcmp(shapes[i].name, name) == 0) {
            *out = shapes[i].cfg;
            return FORGE_OK;
        }
        if (n < sizeof known) n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", shapes[i].name);
    }
    return forge_fail(FORGE_ERR_NOT_FOUND, "%s: no shape named \"%s\" (known: %s)", fn, name, known);
}
