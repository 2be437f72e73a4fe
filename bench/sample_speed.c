/* SPDX-License-Identifier: Apache-2.0 */
/* sample_speed.c: the host's draw of a token (model_sample) over one
 * vocabulary of random logits, in milliseconds a draw, for each sampling
 * setting given as "temperature top_k top_p min_p" (docs/BENCHMARKS.md).
 *   sample_speed VOCAB DRAWS */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/model.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sample_speed VOCAB DRAWS\n");
        return 2;
    }
    const int vocab = atoi(argv[1]), draws = atoi(argv[2]);
    if (vocab < 2 || draws < 1) return 2;
    float *logits = malloc(sizeof *logits * (size_t)vocab);
    model_scored *scratch = malloc(sizeof *scratch * (size_t)vocab);
    if (!logits || !scratch) return 3;
    uint64_t r = 1;
    for (int i = 0; i < vocab; i++) logits[i] = (float)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 40) / (1 << 21);
    const forge_sampling settings[] = {{1.0f, 50, 1.0f, 0.0f, 1.0f, 1}, {0.6f, 50, 0.9f, 0.0f, 1.0f, 1},
                                       {1.0f, 0, 0.9f, 0.0f, 1.0f, 1}, {1.0f, 0, 1.0f, 0.05f, 1.0f, 1}};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        uint64_t rng = 7;
        long sum = 0;
        const double t0 = now_ms();
        for (int d = 0; d < draws; d++) sum += model_sample(logits, vocab, &settings[s], NULL, 0, &rng, scratch);
        const forge_sampling *x = &settings[s];
        printf("temperature %.1f top_k %d top_p %.2f min_p %.2f: %.3f ms a draw (%ld)\n", x->temperature, x->top_k,
               x->top_p, x->min_p, (now_ms() - t0) / draws, sum % 10);
    }
    free(logits), free(scratch);
    return 0;
}
