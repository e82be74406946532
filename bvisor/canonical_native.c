/*
 * The strict canonical-CBOR validator: one pass over the bytes, no allocation, no recursion.
 *
 * bvisor.canonical defines the canonical form (its module docstring is the definition) and
 * keeps a pure-Python parser as the reference. This file checks exactly the same rules, in
 * the same order, so that for every input both accept, or both refuse at the same byte
 * offset with the same rule (the differential tests in tests/canonical prove it). It only
 * *checks*: once the bytes are proven canonical, cbor2 builds the value.
 *
 * What keeps it auditable:
 *  - the only memory is a fixed array of container frames on the C stack (one per open
 *    array or map, at most BV_CANON_DEPTH_CAP + 1 of them, the innermost held apart in
 *    `cur`) and the caller's result struct and span buffer; nothing is sized by the input;
 *  - nesting is a loop over that array, never recursion;
 *  - every length is compared against the bytes remaining (len - pos, with pos <= len
 *    always) before it is used, so no sum or product of attacker numbers can wrap;
 *  - a refusal reports where it is (offset) and which rule (enum bv_canon_rule), plus one
 *    number the message needs (arg); the wording lives in Python, next to the reference.
 *
 * Order of checks for one item, mirroring the reference parser: nesting depth (before the
 * head is read); the initial byte; additional information 31 (indefinite) and 28..30
 * (reserved); the argument bytes; shortest form (not for major type 7); then by major type:
 * string bytes present (and UTF-8 for text), declared item count no larger than the bytes
 * left, tags refused, simple values other than false/true/null refused (floats, undefined,
 * the two-byte form). A finished item then finishes its container: in a map, a key must be
 * a text string, strictly greater (bytewise, on its encoding) than the key before it.
 *
 * Compiled by cffi (bvisor/_build_canonical.py) into bvisor._canonical_c.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* BEGIN CFFI DECLARATIONS -- _build_canonical.py hands exactly this block to cffi's cdef,
 * so the enum and struct Python reads are the ones compiled here. Plain declarations only. */
enum bv_canon_rule {
    BV_CANON_OK = 0,
    BV_CANON_EMPTY = 1,
    BV_CANON_TRUNCATED = 2,
    BV_CANON_TRAILING = 3,
    BV_CANON_INDEFINITE = 4,
    BV_CANON_RESERVED_INFO = 5,
    BV_CANON_NOT_SHORTEST = 6,
    BV_CANON_BAD_UTF8 = 7,
    BV_CANON_COUNT_TOO_LARGE = 8,
    BV_CANON_TAG = 9,
    BV_CANON_FLOAT = 10,
    BV_CANON_SIMPLE = 11,
    BV_CANON_UNDEFINED = 12,
    BV_CANON_TOO_DEEP = 13,
    BV_CANON_KEY_NOT_TEXT = 14,
    BV_CANON_KEY_DUPLICATE = 15,
    BV_CANON_KEY_UNSORTED = 16,
    BV_CANON_BAD_CALL = 17
};
#define BV_CANON_DEPTH_CAP 64
/* Every field is a uint64_t, so Python may read the struct as five numbers in this order. */
struct bv_canon_result {
    uint64_t rule;      /* enum bv_canon_rule */
    uint64_t offset;    /* where the broken rule is (the item's head, or the missing bytes) */
    uint64_t arg;       /* bytes needed, trailing count, info, simple value, item count */
    uint64_t top_major; /* on success: the top-level item's major type */
    uint64_t top_count; /* on success: its count if it is an array or map, else 0 */
};
/* Returns the rule (0 on success). `result` may be NULL (verdict only). For a top-level
 * array, spans[2i] and spans[2i + 1] receive the offset and length of item i, for
 * i < span_cap; `spans` may be NULL when span_cap is 0. */
int bv_canon_validate(const char *data, size_t len, unsigned int max_depth,
                      struct bv_canon_result *result, uint64_t *spans, size_t span_cap);
/* END CFFI DECLARATIONS */

_Static_assert(sizeof(struct bv_canon_result) == 5 * sizeof(uint64_t),
               "struct bv_canon_result is read as five uint64_t");

/* One open array or map. */
struct bv_frame {
    uint64_t remaining;   /* items (array) or entries (map) not yet finished */
    size_t start;         /* offset of the container's head */
    size_t prev_key;      /* map: offset of the previous key's encoding */
    size_t prev_key_len;  /* map: its length in bytes */
    unsigned char major;  /* 4 array, 5 map */
    unsigned char in_value; /* map: the next item to finish is a value (1) or a key (0) */
    unsigned char has_prev; /* map: a previous key exists */
    unsigned char is_top_array; /* the top-level array: its items' spans are recorded */
};

static int bv_fail(struct bv_canon_result *result, int rule, size_t offset, uint64_t arg)
{
    if (result != NULL) {
        result->rule = (uint64_t)rule;
        result->offset = (uint64_t)offset;
        result->arg = arg;
    }
    return rule;
}

/* Well-formed UTF-8 exactly as Unicode's table "well-formed byte sequences" (and CPython's
 * strict decoder) define it: no overlong forms, no surrogates D800..DFFF, nothing above
 * U+10FFFF, no truncated sequence. */
static int bv_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0; /* invariant: i <= n */
    for (;;) {
        /* A run of ASCII: eight bytes at a time, then byte by byte. */
        while (n - i >= 8) {
            uint64_t word;
            memcpy(&word, s + i, sizeof word);
            if ((word & UINT64_C(0x8080808080808080)) != 0)
                break;
            i += 8;
        }
        while (i < n && s[i] < 0x80)
            i += 1;
        if (i == n)
            return 1;
        unsigned char b = s[i]; /* a lead byte, or an invalid one */
        size_t tail;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (b >= 0xC2 && b <= 0xDF) {
            tail = 1;
        } else if (b == 0xE0) {
            tail = 2;
            lo = 0xA0;
        } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
            tail = 2;
        } else if (b == 0xED) {
            tail = 2;
            hi = 0x9F;
        } else if (b == 0xF0) {
            tail = 3;
            lo = 0x90;
        } else if (b >= 0xF1 && b <= 0xF3) {
            tail = 3;
        } else if (b == 0xF4) {
            tail = 3;
            hi = 0x8F;
        } else {
            return 0; /* 0x80..0xC1 (continuation or overlong lead), 0xF5..0xFF */
        }
        if (n - i - 1 < tail) /* i < n, so n - i - 1 cannot wrap */
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= tail; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        }
        i += tail + 1;
    }
}

/* The unsigned big-endian number in the `width` (1, 2, 4 or 8) bytes at `p`. */
static uint64_t bv_big_endian(const unsigned char *p, size_t width)
{
    switch (width) {
    case 1:
        return p[0];
    case 2:
        return (uint64_t)p[0] << 8 | p[1];
    case 4:
        return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
    default:
        return (uint64_t)bv_big_endian(p, 4) << 32 | bv_big_endian(p + 4, 4);
    }
}

/* Bytewise comparison of two encodings; a proper prefix sorts first. */
static int bv_compare(const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len)
{
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

int bv_canon_validate(const char *data, size_t len, unsigned int max_depth,
                      struct bv_canon_result *result, uint64_t *spans, size_t span_cap)
{
    const unsigned char *buf = (const unsigned char *)data;
    /* The innermost open container lives in `cur` (so it can stay in registers); its
     * parents are saved in `outer`, outer[i] being the container at depth i. At most
     * max_depth + 1 <= BV_CANON_DEPTH_CAP + 1 containers are ever open, so at most
     * BV_CANON_DEPTH_CAP are parents. */
    struct bv_frame outer[BV_CANON_DEPTH_CAP];
    struct bv_frame cur = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t depth = 0;     /* open containers = the nesting depth of the next item */
    size_t pos = 0;       /* invariant: pos <= len */
    size_t top_index = 0; /* items of a top-level array finished so far */
    size_t start;
    unsigned int major, info;
    uint64_t arg;

    if (result != NULL)
        memset(result, 0, sizeof *result);
    if (max_depth > BV_CANON_DEPTH_CAP || (data == NULL && len != 0)
        || (spans == NULL && span_cap != 0))
        return bv_fail(result, BV_CANON_BAD_CALL, 0, 0);
    if (len == 0)
        return bv_fail(result, BV_CANON_EMPTY, 0, 0);

    for (;;) {
        start = pos;
        if (depth > max_depth)
            return bv_fail(result, BV_CANON_TOO_DEEP, start, max_depth);

        /* The head: initial byte, then 0, 1, 2, 4 or 8 argument bytes, big-endian. */
        if (pos == len)
            return bv_fail(result, BV_CANON_TRUNCATED, pos, 1);
        major = buf[pos] >> 5;
        info = buf[pos] & 0x1F;
        pos += 1;
        if (info < 24) {
            arg = info;
        } else if (info == 31) {
            return bv_fail(result, BV_CANON_INDEFINITE, start, 0);
        } else if (info > 27) {
            return bv_fail(result, BV_CANON_RESERVED_INFO, start, info);
        } else {
            size_t width = (size_t)1 << (info - 24);
            uint64_t minimum = width == 1 ? 24 : UINT64_C(1) << (4 * width);
            if (width > len - pos)
                return bv_fail(result, BV_CANON_TRUNCATED, pos, width);
            arg = bv_big_endian(buf + pos, width);
            pos += width;
            if (major != 7 && arg < minimum)
                return bv_fail(result, BV_CANON_NOT_SHORTEST, start, 0);
        }

        switch (major) {
        case 0: /* unsigned integer */
        case 1: /* negative integer */
            break;
        case 2: /* byte string */
        case 3: /* text string */
            if (arg > (uint64_t)(len - pos))
                return bv_fail(result, BV_CANON_TRUNCATED, pos, arg);
            if (major == 3 && !bv_utf8_ok(buf + pos, (size_t)arg))
                return bv_fail(result, BV_CANON_BAD_UTF8, start, 0);
            pos += (size_t)arg;
            break;
        case 4: /* array */
        case 5: /* map */
            /* Every item takes at least one byte: refuse absurd counts before looping. */
            if (arg > (uint64_t)(len - pos))
                return bv_fail(result, BV_CANON_COUNT_TOO_LARGE, start, arg);
            if (depth == 0 && result != NULL)
                result->top_count = arg;
            if (arg == 0)
                break; /* empty: finished already */
            /* depth <= max_depth <= BV_CANON_DEPTH_CAP here, so depth - 1 < the cap. */
            if (depth > 0)
                outer[depth - 1] = cur;
            cur.remaining = arg;
            cur.start = start;
            cur.prev_key = 0;
            cur.prev_key_len = 0;
            cur.major = (unsigned char)major;
            cur.in_value = 0;
            cur.has_prev = 0;
            cur.is_top_array = depth == 0 && major == 4;
            depth += 1;
            continue; /* its first item comes next */
        case 6:
            return bv_fail(result, BV_CANON_TAG, start, 0);
        default: /* 7: simple values and floats */
            if (info >= 25)
                return bv_fail(result, BV_CANON_FLOAT, start, 0);
            if (info == 24 || arg < 20)
                return bv_fail(result, BV_CANON_SIMPLE, start, arg);
            if (arg == 23)
                return bv_fail(result, BV_CANON_UNDEFINED, start, 0);
            break; /* 20 false, 21 true, 22 null */
        }

        /* The item [start, pos) of type `major` is finished; it may finish its container,
         * which may finish its own, and so on. */
        for (;;) {
            if (depth == 0)
                goto top_finished;
            if (cur.major == 5 && !cur.in_value) {
                size_t key_len = pos - start;
                if (major != 3)
                    return bv_fail(result, BV_CANON_KEY_NOT_TEXT, start, 0);
                if (cur.has_prev) {
                    int order = bv_compare(buf + start, key_len, buf + cur.prev_key,
                                           cur.prev_key_len);
                    if (order == 0)
                        return bv_fail(result, BV_CANON_KEY_DUPLICATE, start, 0);
                    if (order < 0)
                        return bv_fail(result, BV_CANON_KEY_UNSORTED, start, 0);
                }
                cur.prev_key = start;
                cur.prev_key_len = key_len;
                cur.has_prev = 1;
                cur.in_value = 1;
                break; /* the key's value comes next */
            }
            if (cur.is_top_array) {
                if (top_index < span_cap) {
                    spans[2 * top_index] = (uint64_t)start;
                    spans[2 * top_index + 1] = (uint64_t)(pos - start);
                }
                top_index += 1;
            }
            cur.in_value = 0;
            cur.remaining -= 1;
            if (cur.remaining > 0)
                break; /* the container's next item comes next */
            /* The container itself is finished: report it to its parent. */
            start = cur.start;
            major = cur.major;
            depth -= 1;
            if (depth > 0)
                cur = outer[depth - 1];
        }
    }

top_finished:
    if (pos != len)
        return bv_fail(result, BV_CANON_TRAILING, pos, (uint64_t)(len - pos));
    if (result != NULL)
        result->top_major = major;
    return BV_CANON_OK;
}
