/* SPDX-License-Identifier: Apache-2.0 */
/* sample_speed.c: the host's draw of a token (model_sample) over one
 * vocabulary of random logits, in milliseconds a draw, for each sampling
 * setting given as "temperature top_k top_p min_p" (docs/BENCHMARKS.md).
 *   sample_speed VOCAB DRAWS [SIGMA] */
#include <math.h>
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
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: sample_speed VOCAB DRAWS [SIGMA]\n");
        return 2;
    }
    const int vocab = atoi(argv[1]), draws = atoi(argv[2]);
    const double sigma = argc == 4 ? atof(argv[3]) : 0;
    if (vocab < 2 || draws < 1) return 2;
    float *logits = malloc(sizeof *logits * (size_t)vocab);
    forge_scored *scratch = malloc(sizeof *scratch * (size_t)vocab);
    if (!logits || !scratch) return 3;
    /* logits uniform in [0, 8) (a flat distribution: top-p and min-p keep
     * tens of thousands of tokens), or normal with a deviation of sigma, as
     * a trained model's are roughly (3 or more: a few hundred tokens) */
    uint64_t r = 1;
    for (int i = 0; i < vocab; i++) {
        const double u1 = ((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 11) * 0x1.0p-53;
        const double u2 = ((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 11) * 0x1.0p-53;
        logits[i] = sigma > 0 ? (float)(sigma * sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2)) : (float)(8 * u1);
    }
    const forge_sampling settings[] = {{1.0f, 50, 1.0f, 0.0f, 1.0f, 1}, {0.6f, 50, 0.9f, 0.0f, 1.0f, 1},
                                       {1.0f, 0, 0.9f, 0.0f, 1.0f, 1}, {1.0f, 0, 1.0f, 0.05f, 1.0f, 1}};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        uint64_t rng = 7;
        long sum = 0;
        const double t0 = now_ms();
        for (int d = 0; d < draws; d++) sum += model_sample(logits, vocab, &settings[s], NULL, &rng, scratch);
        const forge_sampling *x = &settings[s];
        printf("temperature %.1f top_k %d top_p %.2f min_p %.2f: %.3f ms a draw (%ld)\n", x->temperature, x->top_k,
               x->top_p, x->min_p, (now_ms() - t0) / draws, sum % 10);
    }
    free(logits), free(scratch);
    return 0;
}
