/* SPDX-License-Identifier: Apache-2.0 */
/* host_bandwidth.c: how fast this machine's cores together read memory, the
 * ceiling of the CPU backend's decode step (it streams the weights once a
 * token): THREADS threads each sum their share of a buffer of MIB
 * mebibytes, best of five passes, in GB/s (docs/BENCHMARKS.md).
 *   host_bandwidth [MIB [THREADS]]   (1024; the online cores) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} share;

static void *sum_share(void *arg) {
    share *s = arg;
    uint64_t acc = 0; /* integer sums vectorise without reassociation flags */
    for (size_t i = 0; i < s->n; i++) acc += s->p[i];
    s->sum = acc;
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const long mib = argc > 1 ? atol(argv[1]) : 1024;
    const long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (mib < 1 || threads < 1 || threads > 1024) {
        fprintf(stderr, "usage: host_bandwidth [MIB [THREADS]]\n");
        return 2;
    }
    const size_t words = (size_t)mib << 17;
    uint64_t *buf = malloc(words * sizeof *buf);
    share *shares = calloc((size_t)threads, sizeof *shares);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (!buf || !shares || !ids) return 3;
    for (size_t i = 0; i < words; i++) buf[i] = i;
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < 5; pass++) {
        const double t0 = now_s();
        const size_t each = words / threads;
        for (long t = 0; t < threads; t++) {
            shares[t] = (share){buf + each * t, t == threads - 1 ? words - each * t : each, 0};
            if (pthread_create(&ids[t], NULL, sum_share, &shares[t])) return 3;
        }
        for (long t = 0; t < threads; t++) pthread_join(ids[t], NULL), check += shares[t].sum;
        const double gbs = words * sizeof *buf / (now_s() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    printf("%ld MiB read by %ld threads: %.1f GB/s (best of 5; %llu)\n", mib, threads, best,
           (unsigned long long)(check % 10));
    free(buf), free(shares), free(ids);
    return 0;
}
