/* SPDX-License-Identifier: Apache-2.0 */
/* utf8.h: UTF-8, checked one character at a time (a leaf). */
#ifndef FORGE_UTF8_H
#define FORGE_UTF8_H

#include <stddef.h>

/* The length (1 to 4) of the valid UTF-8 character at s[0 .. n), n >= 1:
 * no overlong form, no surrogate, nothing past U+10FFFF. Or 0, with *bad
 * (where not NULL) the length of the maximal invalid subpart there (1 to
 * 3): the bytes that one U+FFFD replaces, as Rust's from_utf8_lossy and
 * Unicode's recommended practice count them. */
size_t forge_utf8_char(const unsigned char *s, size_t n, size_t *bad);

/* The bytes of s[0 .. n) before its first that is not valid UTF-8: n when
 * all of it is. */
size_t forge_utf8_valid_len(const char *s, size_t n);

#endif
