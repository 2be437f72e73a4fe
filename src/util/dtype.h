/* SPDX-License-Identifier: Apache-2.0 */
/* dtype.h: scalar conversions between fp32 and the 16-bit float formats. */
#ifndef FORGE_DTYPE_H
#define FORGE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "forge.h"

float forge_f16_to_f32(uint16_t h);
uint16_t forge_f32_to_f16(float f);   /* round to nearest even, overflow to Inf */
float forge_bf16_to_f32(uint16_t h);
uint16_t forge_f32_to_bf16(float f);  /* round to nearest even */

/* p[i] = p[i] rounded to dtype (round to nearest even) and back; fp32: nothing. */
void forge_round_to(forge_dtype dtype, float *p, size_t n);

#endif
