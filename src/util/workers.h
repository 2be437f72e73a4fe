/* SPDX-License-Identifier: Apache-2.0 */
/* workers.h: a fixed set of threads that run one job at a time, thread i
 * always as worker i (a leaf: pthreads alone). The model's ranks use it so
 * that each rank's calls run on the one thread bound to its device; the
 * CPU backend, to spread a decode step's attention over the cores. */
#ifndef FORGE_WORKERS_H
#define FORGE_WORKERS_H

#include "forge.h"

typedef struct forge_workers forge_workers;
/* fn(arg, i) on worker i; what it reports goes through arg. */
typedef void (*forge_work_fn)(void *arg, int i);

/* n threads (workers 0 .. n-1), or FORGE_ERR_OUT_OF_MEMORY naming fn. */
forge_status forge_workers_start(int n, forge_workers **out, const char *fn);
/* fn(arg, i) on every worker i < n; returns when all are done. With
 * with_caller the calling thread takes a share too, as fn(arg, n), beside
 * them: n + 1 shares, for work that may run on any thread. */
void forge_workers_run(forge_workers *w, forge_work_fn fn, void *arg, int with_caller);
/* Ends the threads (after a job in flight); NULL is a no-op. */
void forge_workers_stop(forge_workers *w);

#endif
