/* SPDX-License-Identifier: Apache-2.0 */
/* model_ranks.c: the threads of a split model's ranks, one a rank
 * (workers.h), each bound to its rank's device for its life, so that every
 * call of a rank's context runs where its memory is; the caller's thread
 * hands each of them the same job and waits for all. One thread a rank
 * rather than one process a rank: the model stays one object of one
 * library call, its sequences and sampling kept once, and the ranks'
 * collectives (NCCL's, or the CPU's between threads) need no launcher. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "workers.h"

struct model_pool {
    forge_workers *threads;
    forge_status *status; /* [ranks]: each rank's result of the job */
    char (*message)[512]; /* [ranks]: and its forge_last_error() */
};

/* A job as the workers run it: fn for rank i, its result kept. */
typedef struct {
    forge_model *m;
    model_rank_fn fn;
    void *arg;
} rank_job;

static void run_rank(void *p, int r) {
    const rank_job *j = p;
    model_pool *pool = j->m->pool;
    pool->status[r] = j->fn(j->m, r, j->arg);
    if (pool->status[r] != FORGE_OK) snprintf(pool->message[r], sizeof pool->message[r], "%s", forge_last_error());
}

forge_status model_ranks_run(forge_model *m, model_rank_fn fn, void *arg) {
    model_pool *p = m->pool;
    if (!p) return fn(m, 0, arg);
    rank_job j = {m, fn, arg};
    forge_workers_run(p->threads, run_rank, &j, 0);
    /* the first rank to fail, where the others' failures followed from it */
    const int first = m->broken && p->status[m->failed_rank] != FORGE_OK ? m->failed_rank : 0;
    for (int k = 0; k < m->split.ranks; k++) {
        const int r = (first + k) % m->split.ranks;
        if (p->status[r] != FORGE_OK) return forge_fail(p->status[r], "%s (rank %d)", p->message[r], r);
    }
    return FORGE_OK;
}

/* Every rank's communicator aborted, once (the first failing rank does
 * it): a rank waits in its collectives on all the others, and the kernels
 * of NCCL's that wait on a failed rank return only once their own
 * communicator is aborted. */
void model_ranks_abort(forge_model *m, int rank) {
    if (!m->pool || atomic_exchange(&m->broken, 1)) return;
    m->failed_rank = rank;
    for (int r = 0; r < m->split.ranks; r++)
        if (m->ranks[r].comm) m->ranks[0].ctx->ops->comm_abort(m->ranks[r].comm);
}

forge_status model_broken(const char *fn) {
    return forge_fail(FORGE_ERR_BACKEND, "%s: a step failed on one rank while the others went on, so that their "
                      "caches may differ; free the model", fn);
}

static void pool_free(model_pool *p) {
    if (!p) return;
    forge_workers_stop(p->threads);
    free(p->status), free(p->message);
    free(p);
}

/* The first job of every thread: to its rank's device, and rank r > 0's
 * context made there, as rank 0's is set. */
static forge_status bind_rank(forge_model *m, int r, void *arg) {
    const char *fn = arg;
    forge_context *ctx0 = m->ranks[0].ctx;
    const forge_backend_ops *ops = ctx0->ops;
    forge_status st = ops->use_device ? ops->use_device(ctx0, r, fn) : FORGE_OK;
    if (st != FORGE_OK || r == 0) return st;
    forge_context *ctx;
    if ((st = forge_context_create(ops->kind, &ctx)) != FORGE_OK) return st;
    ctx->kernel = ctx0->kernel;
    m->ranks[r].ctx = ctx;
    return FORGE_OK;
}

forge_status model_ranks_start(forge_model *m, forge_context *ctx, const char *fn) {
    const int n = m->split.ranks;
    m->ranks[0].ctx = ctx;
    if (m->opt.tensor_parallel == 0) return FORGE_OK; /* whole: the caller's thread, no collectives */
    const forge_backend_ops *ops = ctx->ops;
    if (!ops->comm_create)
        return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: the %s backend does not split models (tensor_parallel = %d)", fn,
                          forge_backend_name(ops->kind), n);
    model_pool *p = calloc(1, sizeof *p);
    if (p) {
        p->status = calloc((size_t)n, sizeof *p->status);
        p->message = calloc((size_t)n, sizeof *p->message);
    }
    if (!p || !p->status || !p->message) {
        pool_free(p);
        return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    forge_status st = forge_workers_start(n, &p->threads, fn);
    if (st != FORGE_OK) {
        pool_free(p);
        return st;
    }
    m->pool = p;
    st = model_ranks_run(m, bind_rank, (void *)fn);
    forge_context *ctxs[MODEL_MAX_RANKS];
    void *comms[MODEL_MAX_RANKS];
    for (int r = 0; r < n; r++) ctxs[r] = m->ranks[r].ctx, comms[r] = NULL;
    if (st == FORGE_OK) st = ops->comm_create(ctxs, n, comms, fn);
    for (int r = 0; st == FORGE_OK && r < n; r++) m->ranks[r].comm = comms[r];
    return st;
}

void model_ranks_stop(forge_model *m) {
    model_pool *p = m->pool;
    if (!p) return;
    for (int r = 0; r < m->split.ranks; r++)
        if (m->ranks[r].comm) m->ranks[0].ctx->ops->comm_free(m->ranks[r].comm);
    pool_free(p);
    m->pool = NULL;
}
