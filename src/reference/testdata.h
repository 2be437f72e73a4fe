/* SPDX-License-Identifier: Apache-2.0 */
/* testdata.h: seeded random layers and inputs, and error measures against the
 * float64 reference; shared by the tests and the forge tool. */
#ifndef FORGE_TESTDATA_H
#define FORGE_TESTDATA_H

#include <stddef.h>
#include <stdint.h>

#include "forge.h"

typedef struct {
    uint64_t state;
} ref_rng;

ref_rng ref_rng_seed(uint64_t seed);
double ref_rng_uniform(ref_rng *r); /* [0, 1) */
double ref_rng_normal(ref_rng *r);  /* mean 0, deviation 1 */
/* n floats, normal with deviation `scale`. */
void ref_rng_fill(ref_rng *r, float *dst, size_t n, double scale);

/* A random layer as an initialised model would have it: weights with
 * deviation 1/sqrt(fan_in), biases (where cfg->bias asks) with deviation 0.1.
 * `model` is in cfg->dtype, for forge_layer_create; `w` holds the same values
 * as floats (rounded to that dtype), for the float64 reference. */
typedef struct {
    forge_layer_weights w;     /* points into the float arrays below */
    forge_layer_weights model; /* w, or for 16-bit dtypes `narrow` */
    float *q_proj, *k_proj, *v_proj, *o_proj;
    float *q_bias, *k_bias, *v_bias, *o_bias;
    void *narrow[8];           /* the arrays above in a 16-bit dtype, in that order */
} ref_random_layer;

/* Returns 0, or -1 when out of memory (nothing then to free). */
int ref_random_layer_make(ref_random_layer *l, const forge_layer_config *cfg, uint64_t seed);
void ref_random_layer_free(ref_random_layer *l);

/* How far got is from want. */
typedef struct {
    double max_abs;   /* largest |got - want|                 */
    double rel_l2;    /* ||got - want||_2 / ||want||_2        */
    size_t nonfinite; /* elements of got that are NaN or Inf  */
} ref_error;

ref_error ref_compare(const float *got, const double *want, size_t n);

/* The largest relative L2 error accepted against the float64 reference for a
 * layer computed in dtype: the one place these tolerances are stated. */
double ref_tolerance(forge_dtype dtype);

#endif
