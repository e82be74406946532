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
 * Below the validator, two more sections serve the ledger's verify walk: BLAKE3 (keyed and
 * derive-key modes) and bv_ledger_record, which validates one record, types its header
 * and computes both of its digests in one call, so a record that is fine costs one C call.
 * A record it refuses is judged again by the strict Python path, which names the problem.
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
 * i < span_cap; for a top-level map, item 2k is entry k's key and item 2k + 1 its value.
 * `spans` may be NULL when span_cap is 0. */
int bv_canon_validate(const char *data, size_t len, unsigned int max_depth,
                      struct bv_canon_result *result, uint64_t *spans, size_t span_cap);
/* The ledger's per-record check (see "The ledger record" below). Every field is a
 * uint64_t but the two digests, so Python may read the numbers as ten uint64s. */
struct bv_record_view {
    uint64_t seq;          /* item 1 */
    uint64_t time_ns;      /* item 3 */
    uint64_t header_end;   /* where the payload's encoding starts */
    uint64_t prev_offset;  /* item 2's 32 bytes */
    uint64_t kind_offset;  /* item 4's text bytes */
    uint64_t kind_len;
    uint64_t run_offset;   /* item 5's bytes (run_len 0: null) */
    uint64_t run_len;
    uint64_t hash_offset;  /* item 6's 32 bytes: the payload hash the record claims */
    uint64_t payload_ok;   /* 1: the payload hashes to item 6 */
    unsigned char event_hash[32];   /* the event hash, computed */
    unsigned char payload_hash[32]; /* the payload hash, computed */
};
/* The BLAKE3 derive-key context key of `context` (the first half of derive_key mode). */
void bv_blake3_context_key(const char *context, size_t len, unsigned char *key_out);
/* The 32-byte BLAKE3 digest of `data` keyed by `key` (32 bytes) with `flags` (64 for
 * derive-key material): derive_key(context, data) is this with the context key. */
void bv_blake3_keyed(const unsigned char *key, uint32_t flags, const char *data, size_t len,
                     unsigned char *out);
/* 0 when `data` is a strictly canonical ledger record (module doc of bvisor.ledger.record:
 * the canonical encoding, at most max_depth deep, of an array of eight items whose header
 * items are well typed), with `view` filled and both digests computed under the context
 * key `event_key`; else nonzero (1: not canonical within max_depth, 2: not a record of
 * that shape, 3: not the seq `expect_seq` or not linked to `expect_prev`, checked only
 * when `expect_prev` is not NULL), and the caller's strict path says why. Never judges
 * the kind's grammar. */
int bv_ledger_record(const char *data, size_t len, unsigned int max_depth,
                     const unsigned char *event_key, uint64_t expect_seq,
                     const unsigned char *expect_prev, struct bv_record_view *view);
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
    unsigned char is_top;   /* the top-level array or map: its items' spans are recorded */
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
    size_t top_index = 0; /* items (keys and values) of the top container finished so far */
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
            cur.is_top = depth == 0;
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
                if (cur.is_top) {
                    if (top_index < span_cap) {
                        spans[2 * top_index] = (uint64_t)start;
                        spans[2 * top_index + 1] = (uint64_t)key_len;
                    }
                    top_index += 1;
                }
                break; /* the key's value comes next */
            }
            if (cur.is_top) {
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


/* ---------------------------------------------------------------------------------------
 * BLAKE3, written from its specification (the compression function, the chunk chaining
 * and the binary tree of chaining values, in the keyed and derive-key modes only: the
 * ledger needs nothing else). Incremental, with a fixed-size stack of chaining values
 * (54 levels cover 2^64 bytes); no allocation. tests/canonical checks it against the
 * blake3 package on lengths around every block and chunk boundary.
 */
#define BV_B3_BLOCK 64
#define BV_B3_CHUNK 1024
enum {
    BV_B3_CHUNK_START = 1,
    BV_B3_CHUNK_END = 2,
    BV_B3_PARENT = 4,
    BV_B3_ROOT = 8,
    BV_B3_DERIVE_KEY_CONTEXT = 32,
    BV_B3_DERIVE_KEY_MATERIAL = 64
};

static const uint32_t bv_b3_iv[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                                     0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
/* The message word each G step reads in each of the 7 rounds: round r uses the
 * specification's permutation applied r times to 0..15. */
static const unsigned char bv_b3_schedule[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

#define BV_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BV_G(a, b, c, d, x, y)                                                             \
    do {                                                                                 \
        a = a + b + (x);                                                                 \
        d = BV_ROTR(d ^ a, 16);                                                          \
        c = c + d;                                                                       \
        b = BV_ROTR(b ^ c, 12);                                                          \
        a = a + b + (y);                                                                 \
        d = BV_ROTR(d ^ a, 8);                                                           \
        c = c + d;                                                                       \
        b = BV_ROTR(b ^ c, 7);                                                           \
    } while (0)

static uint32_t bv_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The compression function: the 16 output words for one 64-byte block. The state lives
 * in sixteen locals so the compiler can keep it in registers. */
static void bv_b3_compress(const uint32_t cv[8], const unsigned char block[BV_B3_BLOCK],
                           uint64_t counter, uint32_t block_len, uint32_t flags, uint32_t out[16])
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = bv_le32(block + 4 * i);
    uint32_t s0 = cv[0], s1 = cv[1], s2 = cv[2], s3 = cv[3];
    uint32_t s4 = cv[4], s5 = cv[5], s6 = cv[6], s7 = cv[7];
    uint32_t s8 = bv_b3_iv[0], s9 = bv_b3_iv[1], s10 = bv_b3_iv[2], s11 = bv_b3_iv[3];
    uint32_t s12 = (uint32_t)counter, s13 = (uint32_t)(counter >> 32);
    uint32_t s14 = block_len, s15 = flags;
    for (int r = 0; r < 7; r++) {
        const unsigned char *k = bv_b3_schedule[r];
        BV_G(s0, s4, s8, s12, m[k[0]], m[k[1]]);
        BV_G(s1, s5, s9, s13, m[k[2]], m[k[3]]);
        BV_G(s2, s6, s10, s14, m[k[4]], m[k[5]]);
        BV_G(s3, s7, s11, s15, m[k[6]], m[k[7]]);
        BV_G(s0, s5, s10, s15, m[k[8]], m[k[9]]);
        BV_G(s1, s6, s11, s12, m[k[10]], m[k[11]]);
        BV_G(s2, s7, s8, s13, m[k[12]], m[k[13]]);
        BV_G(s3, s4, s9, s14, m[k[14]], m[k[15]]);
    }
    out[0] = s0 ^ s8;
    out[1] = s1 ^ s9;
    out[2] = s2 ^ s10;
    out[3] = s3 ^ s11;
    out[4] = s4 ^ s12;
    out[5] = s5 ^ s13;
    out[6] = s6 ^ s14;
    out[7] = s7 ^ s15;
    out[8] = s8 ^ cv[0];
    out[9] = s9 ^ cv[1];
    out[10] = s10 ^ cv[2];
    out[11] = s11 ^ cv[3];
    out[12] = s12 ^ cv[4];
    out[13] = s13 ^ cv[5];
    out[14] = s14 ^ cv[6];
    out[15] = s15 ^ cv[7];
}

struct bv_b3 {
    uint32_t key[8];
    uint32_t flags;          /* the mode's flag, added to every compression */
    uint32_t cv[8];          /* the current chunk's chaining value */
    uint64_t chunk_counter;  /* chunks finished before the current one */
    unsigned char block[BV_B3_BLOCK];
    size_t block_len;        /* bytes in `block` */
    size_t blocks_done;      /* blocks of the current chunk already compressed */
    uint32_t stack[54][8];   /* chaining values of finished subtrees, largest first */
    size_t stack_len;
};

static void bv_b3_init(struct bv_b3 *h, const uint32_t key[8], uint32_t flags)
{
    memcpy(h->key, key, sizeof h->key);
    memcpy(h->cv, key, sizeof h->cv);
    h->flags = flags;
    h->chunk_counter = 0;
    h->block_len = 0;
    h->blocks_done = 0;
    h->stack_len = 0;
    memset(h->block, 0, sizeof h->block);
}

static uint32_t bv_b3_start_flag(const struct bv_b3 *h)
{
    return h->blocks_done == 0 ? BV_B3_CHUNK_START : 0;
}

static void bv_b3_parent(const struct bv_b3 *h, const uint32_t left[8], const uint32_t right[8],
                         uint32_t out[16])
{
    unsigned char block[BV_B3_BLOCK];
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 4; k++) {
            block[4 * i + k] = (unsigned char)(left[i] >> (8 * k));
            block[32 + 4 * i + k] = (unsigned char)(right[i] >> (8 * k));
        }
    }
    bv_b3_compress(h->key, block, 0, BV_B3_BLOCK, h->flags | BV_B3_PARENT, out);
}

/* The current chunk is full (1024 bytes, its last block still buffered): finish it and
 * merge it into the stack, one parent per trailing zero bit of the chunk count. */
static void bv_b3_finish_chunk(struct bv_b3 *h)
{
    uint32_t out[16], cv[8];
    bv_b3_compress(h->cv, h->block, h->chunk_counter, (uint32_t)h->block_len,
                   h->flags | bv_b3_start_flag(h) | BV_B3_CHUNK_END, out);
    memcpy(cv, out, sizeof cv);
    uint64_t total = h->chunk_counter + 1;
    while ((total & 1) == 0) {
        h->stack_len -= 1;
        bv_b3_parent(h, h->stack[h->stack_len], cv, out);
        memcpy(cv, out, sizeof cv);
        total >>= 1;
    }
    memcpy(h->stack[h->stack_len], cv, sizeof cv);
    h->stack_len += 1;
    h->chunk_counter += 1;
    memcpy(h->cv, h->key, sizeof h->cv);
    h->block_len = 0;
    h->blocks_done = 0;
    memset(h->block, 0, sizeof h->block);
}

static void bv_b3_update(struct bv_b3 *h, const unsigned char *data, size_t len)
{
    while (len > 0) {
        if (h->block_len == BV_B3_BLOCK) {
            if (h->blocks_done == BV_B3_CHUNK / BV_B3_BLOCK - 1) {
                bv_b3_finish_chunk(h); /* more input follows: the chunk is not the last */
            } else {
                uint32_t out[16];
                bv_b3_compress(h->cv, h->block, h->chunk_counter, BV_B3_BLOCK,
                               h->flags | bv_b3_start_flag(h), out);
                memcpy(h->cv, out, sizeof h->cv);
                h->blocks_done += 1;
                h->block_len = 0;
                memset(h->block, 0, sizeof h->block);
            }
        }
        size_t take = BV_B3_BLOCK - h->block_len;
        if (take > len)
            take = len;
        memcpy(h->block + h->block_len, data, take);
        h->block_len += take;
        data += take;
        len -= take;
    }
}

static void bv_b3_final(const struct bv_b3 *h, unsigned char out[32])
{
    uint32_t words[16], cv[8];
    uint32_t flags = h->flags | bv_b3_start_flag(h) | BV_B3_CHUNK_END;
    if (h->stack_len == 0) {
        bv_b3_compress(h->cv, h->block, h->chunk_counter, (uint32_t)h->block_len,
                       flags | BV_B3_ROOT, words);
    } else {
        bv_b3_compress(h->cv, h->block, h->chunk_counter, (uint32_t)h->block_len, flags, words);
        memcpy(cv, words, sizeof cv);
        for (size_t i = h->stack_len; i-- > 0;) {
            unsigned char block[BV_B3_BLOCK];
            for (int w = 0; w < 8; w++) {
                for (int k = 0; k < 4; k++) {
                    block[4 * w + k] = (unsigned char)(h->stack[i][w] >> (8 * k));
                    block[32 + 4 * w + k] = (unsigned char)(cv[w] >> (8 * k));
                }
            }
            uint32_t parent_flags = h->flags | BV_B3_PARENT | (i == 0 ? BV_B3_ROOT : 0);
            bv_b3_compress(h->key, block, 0, BV_B3_BLOCK, parent_flags, words);
            memcpy(cv, words, sizeof cv);
        }
    }
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = (unsigned char)(words[i] >> (8 * k));
    }
}

static void bv_b3_key_words(const unsigned char *key, uint32_t words[8])
{
    for (int i = 0; i < 8; i++)
        words[i] = bv_le32(key + 4 * i);
}

void bv_blake3_context_key(const char *context, size_t len, unsigned char *key_out)
{
    struct bv_b3 h;
    bv_b3_init(&h, bv_b3_iv, BV_B3_DERIVE_KEY_CONTEXT);
    bv_b3_update(&h, (const unsigned char *)context, len);
    bv_b3_final(&h, key_out);
}

void bv_blake3_keyed(const unsigned char *key, uint32_t flags, const char *data, size_t len,
                     unsigned char *out)
{
    struct bv_b3 h;
    uint32_t words[8];
    bv_b3_key_words(key, words);
    bv_b3_init(&h, words, flags);
    bv_b3_update(&h, (const unsigned char *)data, len);
    bv_b3_final(&h, out);
}

/* ---------------------------------------------------------------------------------------
 * The ledger record (bvisor/ledger/record.py defines it): one validating pass with the
 * items' spans, the header items' types from their first bytes (the pass proved every
 * item canonical, so a head's shape is its type and its argument is the shortest form),
 * then the two digests: the event hash over the header (array head 0x87 and the record's
 * bytes up to the payload) and the payload hash over 0x82 "payload" and the payload.
 */
static const unsigned char bv_payload_prefix[9] = {0x82, 0x67, 'p', 'a', 'y', 'l', 'o', 'a', 'd'};

/* The argument of the canonical head at `p` (already validated), and its length. */
static uint64_t bv_head_arg(const unsigned char *p, size_t *head_len)
{
    unsigned int info = p[0] & 0x1F;
    if (info < 24) {
        *head_len = 1;
        return info;
    }
    size_t width = (size_t)1 << (info - 24);
    *head_len = 1 + width;
    return bv_big_endian(p + 1, width);
}

int bv_ledger_record(const char *data, size_t len, unsigned int max_depth,
                     const unsigned char *event_key, uint64_t expect_seq,
                     const unsigned char *expect_prev, struct bv_record_view *view)
{
    const unsigned char *buf = (const unsigned char *)data;
    struct bv_canon_result result;
    uint64_t spans[16];
    size_t head_len;
    uint32_t key[8];
    struct bv_b3 h;

    if (bv_canon_validate(data, len, max_depth, &result, spans, 8) != BV_CANON_OK)
        return 1;
    if (buf[0] != 0x88) /* an array of exactly eight items */
        return 2;
    memset(view, 0, sizeof *view);
    /* item 0: the version, the integer 1 */
    if (spans[1] != 1 || buf[spans[0]] != 0x01)
        return 2;
    /* items 1 and 3: unsigned integers */
    if (buf[spans[2]] >> 5 != 0 || buf[spans[6]] >> 5 != 0)
        return 2;
    view->seq = bv_head_arg(buf + spans[2], &head_len);
    view->time_ns = bv_head_arg(buf + spans[6], &head_len);
    /* items 2 and 6: byte strings of 32 */
    if (spans[5] != 34 || buf[spans[4]] != 0x58 || buf[spans[4] + 1] != 0x20)
        return 2;
    if (spans[13] != 34 || buf[spans[12]] != 0x58 || buf[spans[12] + 1] != 0x20)
        return 2;
    view->prev_offset = spans[4] + 2;
    view->hash_offset = spans[12] + 2;
    /* item 4: a text string (its grammar is the caller's) */
    if (buf[spans[8]] >> 5 != 3)
        return 2;
    view->kind_len = bv_head_arg(buf + spans[8], &head_len);
    view->kind_offset = spans[8] + head_len;
    /* item 5: null, or a byte string of 1..64 */
    if (buf[spans[10]] == 0xF6) {
        view->run_offset = spans[10] + 1;
        view->run_len = 0;
    } else {
        if (buf[spans[10]] >> 5 != 2)
            return 2;
        view->run_len = bv_head_arg(buf + spans[10], &head_len);
        view->run_offset = spans[10] + head_len;
        if (view->run_len < 1 || view->run_len > 64)
            return 2;
    }
    view->header_end = spans[14];
    if (expect_prev != NULL
        && (view->seq != expect_seq || memcmp(buf + view->prev_offset, expect_prev, 32) != 0))
        return 3;

    bv_b3_key_words(event_key, key);
    bv_b3_init(&h, key, BV_B3_DERIVE_KEY_MATERIAL);
    {
        const unsigned char head = 0x87;
        bv_b3_update(&h, &head, 1);
    }
    bv_b3_update(&h, buf + 1, (size_t)spans[14] - 1);
    bv_b3_final(&h, view->event_hash);
    bv_b3_init(&h, key, BV_B3_DERIVE_KEY_MATERIAL);
    bv_b3_update(&h, bv_payload_prefix, sizeof bv_payload_prefix);
    bv_b3_update(&h, buf + spans[14], len - (size_t)spans[14]);
    bv_b3_final(&h, view->payload_hash);
    view->payload_ok = memcmp(view->payload_hash, buf + view->hash_offset, 32) == 0;
    return 0;
}
