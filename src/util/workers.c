/* SPDX-License-Identifier: Apache-2.0 */
/* workers.c: the threads of workers.h. A job is handed out by bumping a
 * counter under the lock and broadcasting; each thread runs it once as its
 * own index and the last to finish wakes the caller. */
#include <pthread.h>
#include <stdlib.h>

#include "error.h"
#include "workers.h"

struct forge_workers {
    int n, started;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    unsigned job; /* jobs handed out */
    int pending;  /* workers still at the current one */
    int quit;
    forge_work_fn fn;
    void *arg;
};

typedef struct {
    forge_workers *w;
    int i;
} worker_start;

static void *worker_main(void *p) {
    worker_start s = *(worker_start *)p;
    free(p);
    forge_workers *w = s.w;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->job == seen && !w->quit) pthread_cond_wait(&w->go, &w->lock);
        if (w->quit) break;
        seen = w->job;
        const forge_work_fn fn = w->fn;
        void *arg = w->arg;
        pthread_mutex_unlock(&w->lock);
        fn(arg, s.i);
        pthread_mutex_lock(&w->lock);
        if (--w->pending == 0) pthread_cond_broadcast(&w->done);
        pthread_mutex_unlock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

void forge_workers_stop(forge_workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->started; i++) pthread_join(w->threads[i], NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->go);
    pthread_cond_destroy(&w->done);
    free(w->threads);
    free(w);
}

forge_status forge_workers_start(int n, forge_workers **out, const char *fn) {
    forge_workers *w = calloc(1, sizeof *w);
    if (w && !(w->threads = calloc((size_t)(n > 0 ? n : 1), sizeof *w->threads))) free(w), w = NULL;
    if (!w) return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    w->n = n;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->go, NULL);
    pthread_cond_init(&w->done, NULL);
    for (int i = 0; i < n; i++) {
        worker_start *s = malloc(sizeof *s);
        if (s) *s = (worker_start){w, i};
        if (!s || pthread_create(&w->threads[i], NULL, worker_main, s) != 0) {
            free(s);
            forge_workers_stop(w);
            return forge_fail(FORGE_ERR_OUT_OF_MEMORY, "%s: could not start thread %d of %d", fn, i, n);
        }
        w->started++;
    }
    *out = w;
    return FORGE_OK;
}

void forge_workers_run(forge_workers *w, forge_work_fn fn, void *arg, int with_caller) {
    pthread_mutex_lock(&w->lock);
    w->fn = fn, w->arg = arg, w->pending = w->n;
    w->job++;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->lock);
    if (with_caller) fn(arg, w->n);
    pthread_mutex_lock(&w->lock);
    while (w->pending > 0) pthread_cond_wait(&w->done, &w->lock);
    pthread_mutex_unlock(&w->lock);
}
