/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_comm.c: the CPU backend's collectives, between the threads of a
 * model's ranks in one process (what NCCL is between GPUs). The ranks meet
 * at a barrier, each with its buffer posted; each then reduces its own
 * share of the elements over every rank's buffer, in rank order (the same
 * float32 sums on every rank, run after run), and writes the sums into
 * every buffer; a second barrier holds each buffer until all have read it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_comm.h"
#include "error.h"

typedef struct {
    int n;
    pthread_mutex_t lock;
    pthread_cond_t met;
    int arrived;
    unsigned round; /* barriers passed, so that a waiter knows its own has */
    int aborted;
    int users;      /* ranks whose communicator is not yet freed */
    const void **in; /* [n]: what each rank posted */
    void **out;
} cpu_group;

typedef struct {
    cpu_group *g;
    int rank;
} cpu_comm;

/* Waits until every rank has arrived; FORGE_ERR_BACKEND once aborted. */
static forge_status meet(cpu_group *g, const char *fn) {
    pthread_mutex_lock(&g->lock);
    const unsigned round = g->round;
    if (++g->arrived == g->n) {
        g->arrived = 0;
        g->round++;
        pthread_cond_broadcast(&g->met);
    }
    while (g->round == round && !g->aborted) pthread_cond_wait(&g->met, &g->lock);
    const int aborted = g->aborted;
    pthread_mutex_unlock(&g->lock);
    return aborted ? forge_fail(FORGE_ERR_BACKEND, "%s: another rank failed", fn) : FORGE_OK;
}

forge_status cpu_comm_create(forge_context **ctxs, int n, void **comms, const char *fn) {
    (void)ctxs;
    cpu_group *g = calloc(1, sizeof *g);
    cpu_comm *c = calloc((size_t)n, sizeof *c);
    if (g) g->in = calloc((size_t)n, sizeof *g->in), g->out = calloc((size_t)n, sizeof *g->out);
    if (!g || !c || !g->in || !g->out) {
        if (g) free(g->in), free(g->out);
        free(g), free(c);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    g->n = g->users = n;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->met, NULL);
    /* the array of ranks is freed with the last of them: rank 0's pointer is its start */
    for (int r = 0; r < n; r++) c[r] = (cpu_comm){g, r}, comms[r] = &c[r];
    return FORGE_OK;
}

void cpu_comm_abort(void *comm) {
    cpu_group *g = ((cpu_comm *)comm)->g;
    pthread_mutex_lock(&g->lock);
    g->aborted = 1;
    pthread_cond_broadcast(&g->met);
    pthread_mutex_unlock(&g->lock);
}

void cpu_comm_free(void *comm) {
    cpu_comm *c = comm;
    cpu_group *g = c->g;
    pthread_mutex_lock(&g->lock);
    const int last = --g->users == 0;
    pthread_mutex_unlock(&g->lock);
    if (!last) return;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->met);
    free(g->in), free(g->out);
    free(g);
    free(c - c->rank);
}

forge_status cpu_all_reduce(forge_context *ctx, void *comm, forge_dtype dtype, void *buf, size_t count) {
    static const char fn[] = "all_reduce";
    (void)ctx;
    const cpu_comm *c = comm;
    cpu_group *g = c->g;
    if (dtype != FORGE_F32) return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the cpu backend sums fp32 alone", fn);
    g->out[c->rank] = buf;
    forge_status st = meet(g, fn);
    const size_t first = count * (size_t)c->rank / (size_t)g->n, end = count * (size_t)(c->rank + 1) / (size_t)g->n;
    for (size_t i = first; st == FORGE_OK && i < end; i++) {
        float sum = 0.0f;
        for (int r = 0; r < g->n; r++) sum += ((const float *)g->out[r])[i];
        for (int r = 0; r < g->n; r++) ((float *)g->out[r])[i] = sum;
    }
    return st == FORGE_OK ? meet(g, fn) : st;
}

forge_status cpu_all_gather(forge_context *ctx, void *comm, forge_dtype dtype, void *out, const void *in,
                            size_t count) {
    static const char fn[] = "all_gather";
    (void)ctx;
    const cpu_comm *c = comm;
    cpu_group *g = c->g;
    const size_t bytes = count * forge_dtype_size(dtype);
    g->in[c->rank] = in;
    forge_status st = meet(g, fn);
    for (int r = 0; st == FORGE_OK && r < g->n; r++) memcpy((char *)out + (size_t)r * bytes, g->in[r], bytes);
    return st == FORGE_OK ? meet(g, fn) : st;
}
