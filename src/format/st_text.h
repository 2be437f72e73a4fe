/* SPDX-License-Identifier: Apache-2.0 */
/* st_text.h: the text checks of safetensors.c (st_text.c). */
#ifndef FORGE_ST_TEXT_H
#define FORGE_ST_TEXT_H

#include <stddef.h>

#include "forge.h"

/* The largest number a header may hold (sizes, offsets): 2^53, which the
 * doubles cJSON parses into hold exactly. */
#define ST_MAX_SIZE ((uint64_t)1 << 53)

/* Whether the C string s is valid UTF-8: no overlong form, no surrogate,
 * nothing past U+10FFFF. */
int st_utf8_valid(const char *s);

/* FORGE_OK, or FORGE_ERR_FORMAT naming the byte, for what cJSON lets
 * through and JSON or Forge does not: bytes that are not UTF-8; in strings,
 * raw control characters, \u0000 (a C string ends there) and lone
 * surrogates; numbers other than non-negative integers (written without
 * sign, fraction, exponent or leading zero) up to ST_MAX_SIZE. */
forge_status st_check_header_text(const char *json, size_t n);

#endif
