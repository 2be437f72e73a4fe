/* SPDX-License-Identifier: Apache-2.0 */
/* st_text.c: the safetensors header as text, checked before cJSON parses
 * it, for what cJSON lets through and JSON or Forge does not (st_text.h). */
#include <string.h>

#include "error.h"
#include "st_text.h"
#include "utf8.h"

int st_utf8_valid(const char *s) {
    const size_t n = strlen(s);
    return forge_utf8_valid_len(s, n) == n;
}

static int hex4(const char *s, const char *end, unsigned *out) {
    if (end - s < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        const char c = s[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 1;
}

/* What cJSON lets through and JSON or Forge does not: bytes that are not
 * UTF-8; in strings, raw control characters, \u0000 (a C string ends
 * there) and lone surrogates; numbers other than non-negative integers
 * (written without sign, fraction, exponent or leading zero) up to 2^53. */
forge_status st_check_header_text(const char *json, size_t n) {
    const char *p = json, *end = json + n;
    int in_string = 0;
    while (p < end) {
        const unsigned char c = (unsigned char)*p;
        const size_t at = (size_t)(p - json);
        if (c >= 0x80) {
            const size_t k = forge_utf8_char((const unsigned char *)p, (size_t)(end - p), NULL);
            if (!k) return forge_fail(FORGE_ERR_FORMAT, "safetensors: the header is not UTF-8 (byte %zu)", at);
            p += k;
        } else if (in_string) {
            if (c < 0x20)
                return forge_fail(FORGE_ERR_FORMAT, "safetensors: a string of the header holds control character "
                                  "0x%02x (byte %zu), which JSON escapes", c, at);
            if (c == '"') in_string = 0;
            if (c == '\\' && p + 1 < end && p[1] == 'u') {
                unsigned u, lo;
                if (!hex4(p + 2, end, &u)) return forge_fail(FORGE_ERR_FORMAT, "safetensors: a bad \\u escape (byte %zu)", at);
                if (u == 0)
                    return forge_fail(FORGE_ERR_FORMAT, "safetensors: a string of the header holds \\u0000 (byte %zu); "
                                      "Forge's names and values end at NUL", at);
                if (u >= 0xdc00 && u <= 0xdfff)
                    return forge_fail(FORGE_ERR_FORMAT, "safetensors: a lone surrogate \\u%04x (byte %zu)", u, at);
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (!(p + 7 < end && p[6] == '\\' && p[7] == 'u' && hex4(p + 8, end, &lo) && lo >= 0xdc00 &&
                          lo <= 0xdfff))
                        return forge_fail(FORGE_ERR_FORMAT, "safetensors: a lone surrogate \\u%04x (byte %zu)", u, at);
                    p += 6;
                }
                p += 6;
            } else {
                p += c == '\\' && p + 1 < end ? 2 : 1;
            }
        } else if (c == '"') {
            in_string = 1, p++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char *q = p;
            uint64_t v = 0; /* digits past 16 make it too large anyway */
            while (q < end && *q >= '0' && *q <= '9') v = q - p < 17 ? v * 10 + (uint64_t)(*q - '0') : v, q++;
            const int more = q < end && (*q == '.' || *q == 'e' || *q == 'E' || *q == '-' || *q == '+');
            if (c == '-' || more || (c == '0' && q - p > 1) || q - p > 16 || v > ST_MAX_SIZE)
                return forge_fail(FORGE_ERR_FORMAT, "safetensors: the number at byte %zu is not an integer in "
                                  "0 .. 2^53 written plainly (shapes and offsets are sizes)", at);
            p = q;
        } else {
            p++;
        }
    }
    return FORGE_OK;
}
