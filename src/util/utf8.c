/* SPDX-License-Identifier: Apache-2.0 */
/* utf8.c: UTF-8, checked one character at a time, by the ranges each
 * continuation byte may take (Unicode's table of well-formed sequences), so
 * that the first byte out of range ends the maximal invalid subpart. */
#include "utf8.h"

size_t forge_utf8_char(const unsigned char *s, size_t n, size_t *bad) {
    const unsigned char c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else return bad ? (*bad = 1, 0) : 0;
    for (size_t i = 1; i <= need; i++) {
        const unsigned lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (i >= n || s[i] < lo_i || s[i] > hi_i) return bad ? (*bad = i, 0) : 0;
    }
    return need + 1;
}

size_t forge_utf8_valid_len(const char *s, size_t n) {
    for (size_t at = 0, w; at < n; at += w)
        if ((w = forge_utf8_char((const unsigned char *)s + at, n - at, NULL)) == 0) return at;
    return n;
}
