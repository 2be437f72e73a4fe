/* SPDX-License-Identifier: Apache-2.0 */
/* test_util.h: helpers for the cmocka tests: layers with random weights,
 * poisoned outputs, and comparison with the float64 reference. */
#ifndef FORGE_TEST_UTIL_H
#define FORGE_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "forge.h"
#include "reference.h"
#include "testdata.h"

/* A layer with seeded random weights on one backend. */
typedef struct {
    forge_layer_config cfg;
    ref_random_layer w;
    forge_context *ctx;
    forge_layer *layer;
} test_layer;

void tl_make(test_layer *t, forge_backend backend, const forge_layer_config *cfg, uint64_t seed);
void tl_free(test_layer *t);

/* n normal floats of deviation scale (malloc'd). */
float *tl_random(size_t n, uint64_t seed, double scale);
/* n floats, all NaN (malloc'd): outputs start poisoned. */
float *tl_poisoned(size_t n);
/* The reference output of the layer for x [n_tokens, hidden] at pos0, x
 * rounded to the layer's dtype first (malloc'd). */
double *tl_reference(const test_layer *t, const float *x, int n_tokens, int pos0);

/* forge_layer_forward with host x and y as floats, through backend buffers
 * in the layer's dtype: x is converted and uploaded, the device y poisoned
 * with NaN, y downloaded and widened after the call. */
forge_status tl_forward(const test_layer *t, forge_kv_cache *cache, const forge_seq *seqs, int n_seqs,
                        const float *x, float *y);

/* The same through forge_layer_forward_paged over a paged cache. */
forge_status tl_forward_paged(const test_layer *t, forge_paged_cache *cache, const forge_seq *seqs, int n_seqs,
                              const float *x, float *y);

/* A backend buffer holding a copy of bytes of host memory (at least 16
 * bytes allocated, so that 0 bytes still give a buffer). */
void *tl_device_copy(forge_context *ctx, const void *host, size_t bytes);

/* Seconds on a monotonic clock, and this thread's processor time in
 * seconds, for bounds on how long a call may take where the bound is the
 * point (linear work, a check before large work); processor time is the
 * same on a machine busy with other work. */
double tl_now_s(void);
double tl_cpu_s(void);
/* A bound of s seconds on a plain build: scaled by FORGE_TEST_TIME_SCALE,
 * which sanitizer builds set (their allocator is several times slower). */
double tl_time_bound(double s);

/* The fuzzers' mutation of a file's bytes b [*n] in place (room for cap,
 * at least *n + 16): one to four edits, each a bit flipped, a byte drawn,
 * one of `interesting`'s characters written or inserted, a byte deleted,
 * or the file cut short there. */
void tl_mutate(unsigned char *b, size_t *n, size_t cap, ref_rng *r, const char *interesting);

/* Writes n bytes of b as the file dir/name. */
void tl_write_file(const char *dir, const char *name, const void *b, size_t n);

/* Exits the test program with ctest's skip code when the backend is absent. */
void tl_require_backend(forge_backend backend);

/* Whether some row of the support table for backend whose operation
 * begins with `operation` takes the FORGE_ATTN_* options (the backend then
 * dispatches calls that ask for them to it). */
int tl_takes_options(forge_backend backend, const char *operation, unsigned options);

/* Fails the test unless got is finite and within tol (relative L2) of want. */
void tl_expect_close(const float *got, const double *want, size_t n, double tol, const char *what);

/* Fails the test with the status and message unless st is FORGE_OK. */
#define TL_OK(expr)                                                                              \
    do {                                                                                         \
        forge_status tl_st_ = (expr);                                                            \
        if (tl_st_ != FORGE_OK)                                                                  \
            fail_msg("%s -> %s: %s", #expr, forge_status_str(tl_st_), forge_last_error());       \
    } while (0)

#endif
