/* SPDX-License-Identifier: Apache-2.0 */
/* dtype.c: dtype names and sizes, and conversion between fp32, fp16 and bf16. */
#include <string.h>

#include "dtype.h"
#include "error.h"

const char *forge_dtype_name(forge_dtype dtype) {
    switch (dtype) {
    case FORGE_F32: return "fp32";
    case FORGE_F16: return "fp16";
    case FORGE_BF16: return "bf16";
    }
    return "unknown";
}

size_t forge_dtype_size(forge_dtype dtype) {
    switch (dtype) {
    case FORGE_F32: return 4;
    case FORGE_F16:
    case FORGE_BF16: return 2;
    }
    return 0;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float forge_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t forge_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet, keep the sign */
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

float forge_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* Inf or NaN */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t forge_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: Inf */
    if (a < 0x38800000u) { /* below 2^-14: subnormal half, round to nearest even */
        float m = bits_f32(a) * 0x1p24f; /* exact multiple of 2^-24 units */
        uint32_t q = (uint32_t)m;
        float rest = m - (float)q;
        if (rest > 0.5f || (rest == 0.5f && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    /* normal: rebias the exponent and round the 13 dropped mantissa bits */
    uint32_t r = a - 0x38000000u;
    r = (r + 0xfffu + ((r >> 13) & 1)) >> 13;
    return sign | (uint16_t)r;
}

forge_status forge_convert(void *dst, forge_dtype dst_dtype, const void *src,
                           forge_dtype src_dtype, size_t n) {
    if (forge_dtype_size(dst_dtype) == 0 || forge_dtype_size(src_dtype) == 0)
        return forge_fail(FORGE_ERR_DTYPE, "forge_convert: unknown dtype (%d -> %d)",
                          (int)src_dtype, (int)dst_dtype);
    if (n == 0) return FORGE_OK;
    FORGE_CHECK_NOT_NULL(dst, "forge_convert");
    FORGE_CHECK_NOT_NULL(src, "forge_convert");
    if (dst_dtype == src_dtype) {
        memmove(dst, src, n * forge_dtype_size(src_dtype));
        return FORGE_OK;
    }
    /* elements go through memcpy: tensors inside a file need not be aligned */
    const unsigned char *in = src;
    unsigned char *out = dst;
    const size_t in_size = forge_dtype_size(src_dtype), out_size = forge_dtype_size(dst_dtype);
    for (size_t i = 0; i < n; i++, in += in_size, out += out_size) {
        float f;
        uint16_t h;
        if (src_dtype == FORGE_F32) memcpy(&f, in, 4);
        else {
            memcpy(&h, in, 2);
            f = src_dtype == FORGE_F16 ? forge_f16_to_f32(h) : forge_bf16_to_f32(h);
        }
        if (dst_dtype == FORGE_F32) memcpy(out, &f, 4);
        else {
            h = dst_dtype == FORGE_F16 ? forge_f32_to_f16(f) : forge_f32_to_bf16(f);
            memcpy(out, &h, 2);
        }
    }
    return FORGE_OK;
}

void forge_round_to(forge_dtype dtype, float *p, size_t n) {
    if (dtype == FORGE_F16)
        for (size_t i = 0; i < n; i++) p[i] = forge_f16_to_f32(forge_f32_to_f16(p[i]));
    else if (dtype == FORGE_BF16)
        for (size_t i = 0; i < n; i++) p[i] = forge_bf16_to_f32(forge_f32_to_bf16(p[i]));
}
