/* The data check's byte scans and row hashes in C (engine.data.arrowscan loads it with ctypes, which releases the
 * GIL for each call; without it, arrowscan does the same with numpy).  No Python header: a plain shared library,
 * built by `pip install` when a C compiler is there (pyproject: an optional extension).
 *
 * Each function is the numpy code's twin, byte for byte (tests/test_data_scale.py compares them):
 *   fs_line_ends   — arrowscan._line_ends: where each '\n' of a block is;
 *   fs_texts_seen  — arrowscan._texts_seen: may a text hold "{{", is every text surely ASCII;
 *   fs_hash_parts  — arrowscan.hash_words of each row's key, the key made of parts (texts and marks) as
 *                    arrowscan._columns joins them, padded with KEY_END (0xFE) to whole 8-byte words: each word
 *                    XOR its place times K, mixed by MurmurHash3's finaliser, summed; the sum XOR the words, mixed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define C1 0xFF51AFD7ED558CCDULL
#define C2 0xC4CEB9FE1A85EC53ULL
#define K 0x2545F4914F6CDD1DULL
#define KEY_END 0xFE

/* arrowscan checks it: a library built from an older source is not used (bump with any change of meaning) */
int32_t fs_version(void) { return 1; }

static inline uint64_t fmix(uint64_t x) {
    x ^= x >> 33;
    x *= C1;
    x ^= x >> 33;
    x *= C2;
    x ^= x >> 33;
    return x;
}

/* the positions of the '\n' bytes of p[0:n], the first `cap` of them written to out; returns how many there are */
int64_t fs_line_ends(const uint8_t *p, int64_t n, int64_t *out, int64_t cap) {
    int64_t k = 0;
    const uint8_t *q = p, *end = p + n;
    while (q < end) {
        const uint8_t *h = memchr(q, '\n', (size_t)(end - q));
        if (!h)
            break;
        if (k < cap)
            out[k] = h - p;
        k++;
        q = h + 1;
    }
    return k;
}

/* bit 0: a text may hold "{{" (the bytes hold "{{", or a \u007b / \u007B escape); bit 1: every text is surely
 * ASCII (every byte is, and no "\u" escape) */
int32_t fs_texts_seen(const uint8_t *p, int64_t n) {
    int braces = 0, escape_u = 0;
    const uint8_t *q = p, *end = p + n;
    while (n > 1 && q < end - 1) {
        const uint8_t *h = memchr(q, '{', (size_t)(end - 1 - q));
        if (!h)
            break;
        if (h[1] == '{') {
            braces = 1;
            break;
        }
        q = h + 1;
    }
    q = p;
    while (n > 1 && q < end - 1 && !(braces && escape_u)) {
        const uint8_t *h = memchr(q, '\\', (size_t)(end - 1 - q));
        if (!h)
            break;
        if (h[1] == 'u') {
            escape_u = 1;
            if (h + 5 < end && h[2] == '0' && h[3] == '0' && h[4] == '7' && (h[5] | 0x20) == 'b')
                braces = 1;
        }
        q = h + 1;
    }
    uint64_t acc = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= p[i];
    int ascii = (acc & 0x8080808080808080ULL) == 0 && !escape_u;
    return braces | (ascii << 1);
}

/* the hash of each of n rows' keys, a key being its `parts` one after the other: part j is a constant (offs[j] NULL:
 * the clen[j] bytes at data[j]) or one text per row (an Arrow binary / string array: 32-bit offsets offs[j], already
 * moved to the array's first row, bytes data[j], validity bitmap valid[j] or NULL, its first row at bit voff[j]).
 * A row with a null text has no key: 0.  Returns 0, or -1 when memory ran out. */
int32_t fs_hash_parts(int64_t n, int32_t nparts, const uint8_t **data, const int32_t **offs, const uint8_t **valid,
                      const int64_t *voff, const int64_t *clen, int64_t *out) {
    size_t cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        size_t len = 0;
        int null = 0;
        for (int32_t j = 0; j < nparts; j++) {
            if (offs[j]) {
                if (valid[j]) {
                    int64_t b = voff[j] + i;
                    if (!((valid[j][b >> 3] >> (b & 7)) & 1)) {
                        null = 1;
                        break;
                    }
                }
                len += (size_t)(offs[j][i + 1] - offs[j][i]);
            } else {
                len += (size_t)clen[j];
            }
        }
        if (null) {
            out[i] = 0;
            continue;
        }
        size_t words = len / 8 + 1, total = words * 8, at = 0;
        if (total > cap) {
            while (cap < total)
                cap *= 2;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                return -1;
            }
            buf = grown;
        }
        for (int32_t j = 0; j < nparts; j++) {
            if (offs[j]) {
                size_t m = (size_t)(offs[j][i + 1] - offs[j][i]);
                if (m)
                    memcpy(buf + at, data[j] + offs[j][i], m);
                at += m;
            } else {
                memcpy(buf + at, data[j], (size_t)clen[j]);
                at += (size_t)clen[j];
            }
        }
        memset(buf + at, KEY_END, total - at);
        uint64_t sum = 0;
        for (size_t w = 0; w < words; w++) {
            uint64_t x;
            memcpy(&x, buf + 8 * w, 8);
            sum += fmix(x ^ ((uint64_t)w * K));
        }
        out[i] = (int64_t)fmix(sum ^ (uint64_t)words);
    }
    free(buf);
    return 0;
}
