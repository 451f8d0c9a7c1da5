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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define B64_SIMD 1

/* 12 input bytes -> 16 characters per step with SSSE3 byte shuffles (the method described by
 * Wojciech Mula and Daniel Lemire): spread each 3-byte group over a 32-bit lane, isolate
 * the four 6-bit values with two multiplies, then map values to ASCII by adding a per-range
 * offset chosen with one shuffle. Reads 16 bytes per step, so it stops 4 bytes early. */
__attribute__((target("ssse3"))) static size_t b64_encode_ssse3(const uint8_t *src, size_t n,
                                                                char *out, size_t *used)
{
    const __m128i spread = _mm_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1);
    const __m128i mask_a = _mm_set1_epi32(0x0fc0fc00);
    const __m128i mul_a = _mm_set1_epi32(0x04000040);
    const __m128i mask_b = _mm_set1_epi32(0x003f03f0);
    const __m128i mul_b = _mm_set1_epi32(0x01000010);
    const __m128i offsets =
        _mm_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                      '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
    size_t i = 0, o = 0;
    for (; i + 16 <= n; i += 12, o += 16) {
        __m128i in = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        in = _mm_shuffle_epi8(in, spread);
        __m128i hi = _mm_mulhi_epu16(_mm_and_si128(in, mask_a), mul_a);
        __m128i lo = _mm_mullo_epi16(_mm_and_si128(in, mask_b), mul_b);
        __m128i v = _mm_or_si128(hi, lo); /* sixteen values 0..63 */
        /* Range index: 0 for A-Z, 1 for a-z, 2..11 for digits, 12 for '+', 13 for '/'. */
        __m128i r = _mm_subs_epu8(v, _mm_set1_epi8(51));
        __m128i upper = _mm_cmpgt_epi8(_mm_set1_epi8(26), v);
        r = _mm_or_si128(r, _mm_and_si128(upper, _mm_set1_epi8(13)));
        __m128i ascii = _mm_add_epi8(_mm_shuffle_epi8(offsets, r), v);
        _mm_storeu_si128((__m128i *)(void *)(out + o), ascii);
    }
    *used = i;
    return o;
}

static int b64_simd; /* 0 unknown, 1 yes, -1 no */
#endif

size_t b64_encode(const uint8_t *src, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    if (!b64_pairs_ready)
        b64_pairs_init();
#ifdef B64_SIMD
    if (!b64_simd)
        b64_simd = __builtin_cpu_supports("ssse3") ? 1 : -1;
    if (b64_simd > 0 && n >= 16)
        o = b64_encode_ssse3(src, n, out, &i);
#endif
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
