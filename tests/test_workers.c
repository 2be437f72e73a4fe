/* SPDX-License-Identifier: Apache-2.0 */
/* test_workers.c: the fixed threads of src/util/workers.c: every worker
 * runs every job once, as its own index, on its own thread for life; the
 * caller's share runs on the caller's thread; a job's writes are seen when
 * run returns. */
#include <pthread.h>
#include <string.h>

#include "test_util.h"
#include "workers.h"

enum { N = 3, JOBS = 200 };

typedef struct {
    int hits[N + 1];    /* times each index ran in this job */
    pthread_t who[N + 1];
    int job;
} tally;

static void count(void *arg, int i) {
    tally *t = arg;
    t->hits[i]++;
    t->who[i] = pthread_self();
}

static void test_every_worker_once(void **state) {
    (void)state;
    forge_workers *w;
    TL_OK(forge_workers_start(N, &w, "test"));
    pthread_t first[N];
    for (int job = 0; job < JOBS; job++) {
        const int with_caller = job % 2;
        tally t;
        memset(&t, 0, sizeof t);
        forge_workers_run(w, count, &t, with_caller);
        for (int i = 0; i < N; i++) {
            assert_int_equal(t.hits[i], 1);
            assert_false(pthread_equal(t.who[i], pthread_self()));
            if (job == 0) first[i] = t.who[i];
            else assert_true(pthread_equal(t.who[i], first[i])); /* worker i keeps its thread */
        }
        assert_int_equal(t.hits[N], with_caller);
        if (with_caller) assert_true(pthread_equal(t.who[N], pthread_self()));
    }
    forge_workers_stop(w);
    forge_workers_stop(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_worker_once)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
