/* b64.c - standard base64. The decoder follows the observable rules of Go's
 * encoding/base64 StdEncoding (non-strict): CR/LF skipped anywhere, padding required,
 * trailing garbage after padding rejected, and the same error offsets. */
#include "metastore/b64.h"

#include <stdbool.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Two output characters for each 12-bit value, built on first use (the server has one
 * thread). */
static uint16_t b64_pairs[4096];
static bool b64_pairs_ready;

static void b64_pairs_init(void)
{
    for (unsigned v = 0; v < 4096; v++) {
        uint8_t two[2] = {(uint8_t)b64_alphabet[v >> 6], (uint8_t)b64_alphabet[v & 63]};
        memcpy(&b64_pairs[v], two, 2);
    }
    b64_pairs_ready = true;
}

size_t b64_encode(const uint8_t *src, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    if (!b64_pairs_ready)
        b64_pairs_init();
    /* Whole groups: each three input bytes are two 12-bit halves, two table lookups. */
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
        uint16_t q[2] = {b64_pairs[v >> 12], b64_pairs[v & 4095]};
        memcpy(out + o, q, 4);
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8);
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

/* Value of each byte in the alphabet, -1 for every other byte. */
static const int8_t b64_vals[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int b64_val(unsigned char c)
{
    return b64_vals[c];
}

static bool is_crlf(char c)
{
    return c == '\r' || c == '\n';
}

int b64_decode(const char *src, size_t n, uint8_t *out, size_t *out_len, size_t *err_off)
{
    size_t si = 0;
    size_t o = 0;

    /* Fast path: whole quanta of four alphabet bytes (no padding, no CR/LF). Anything else,
     * and the last quantum, go through the general loop below, which has Go's rules. */
    const unsigned char *u = (const unsigned char *)src;
    while (si + 8 <= n) {
        int a = b64_vals[u[si]], b = b64_vals[u[si + 1]], c = b64_vals[u[si + 2]],
            d = b64_vals[u[si + 3]];
        if ((a | b | c | d) < 0)
            break;
        uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
        si += 4;
    }
    while (si < n) {
        int q[4];
        int j = 0;
        bool end = false;
        while (j < 4) {
            if (si == n) {
                if (j == 0) {
                    *out_len = o;
                    return 0;
                }
                /* Input ended inside a quantum: padding was required. */
                *err_off = si - (size_t)j;
                return -1;
            }
            char c = src[si++];
            int v = b64_val((unsigned char)c);
            if (v >= 0) {
                q[j++] = v;
                continue;
            }
            if (is_crlf(c))
                continue;
            if (c != '=' || j < 2) {
                *err_off = si - 1;
                return -1;
            }
            if (j == 2) {
                /* "==" expected: the first '=' is consumed, find the second. */
                while (si < n && is_crlf(src[si]))
                    si++;
                if (si == n) {
                    *err_off = n;
                    return -1;
                }
                if (src[si] != '=') {
                    *err_off = si - 1;
                    return -1;
                }
                si++;
            }
            while (si < n && is_crlf(src[si]))
                si++;
            if (si < n) {
                *err_off = si;
                return -1;
            }
            end = true;
            break;
        }
        if (j >= 2)
            out[o++] = (uint8_t)((q[0] << 2) | (q[1] >> 4));
        if (j >= 3)
            out[o++] = (uint8_t)(((q[1] & 15) << 4) | (q[2] >> 2));
        if (j == 4)
            out[o++] = (uint8_t)(((q[2] & 3) << 6) | q[3]);
        if (end)
            break;
    }
    *out_len = o;
    return 0;
}
