/* Parquet's encodings (see parquet_encoding.h). The hybrid, from the format's
   Encodings document: a run starts with a varint header h; h & 1 = 1 is a
   bit-packed run of (h >> 1) groups of 8 values, packed least significant
   bit first, (h >> 1) * bit_width bytes; h & 1 = 0 is an RLE run of h >> 1
   copies of one value stored in ceil(bit_width / 8) little-endian bytes. */
#include "parquet_encoding.h"
#include "error.h"
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the decoders read little-endian words");

static int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
  const uint8_t *p = *pp;
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) return tide_fail("the encoded data ends inside a run header");
    uint8_t b = *p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *pp = p; *v = x; return 0; }
  }
  return tide_fail("a run header longer than 64 bits");
}

/* Bit-packed values: count values starting at bit 0 of p (which holds at
   least ceil(count * w / 8) bytes), read 8 bytes at a time where there is
   room and bytewise near the end. */
#define UNPACK(T, NAME)                                                                   \
  static void NAME(const uint8_t *p, const uint8_t *end, int w, T *out, int64_t count) { \
    uint64_t mask = w == 64 ? ~0ull : ((1ull << w) - 1);                                  \
    uint64_t bit = 0;                                                                     \
    for (int64_t i = 0; i < count; i++, bit += (uint64_t)w) {                             \
      const uint8_t *q = p + (bit >> 3);                                                  \
      unsigned sh = (unsigned)(bit & 7);                                                  \
      uint64_t v;                                                                         \
      if (end - q >= 8) {                                                                 \
        memcpy(&v, q, 8);                                                                 \
      } else {                                                                            \
        v = 0;                                                                            \
        for (int k = 0; k < 8 && q + k < end; k++) v |= (uint64_t)q[k] << (8 * k);        \
      }                                                                                   \
      /* w <= 32 and sh <= 7, so the value lies in the 64 bits read */                   \
      out[i] = (T)((v >> sh) & mask);                                                     \
    }                                                                                     \
  }
UNPACK(uint8_t, unpack_u8)
UNPACK(uint32_t, unpack_u32)

#define HYBRID(T, NAME, UNPACKER, MAXW)                                                    \
  int NAME(const uint8_t *p, const uint8_t *end, int w, T *out, int64_t n) {               \
    if (w < 0 || w > MAXW) return tide_fail("bit width %d out of range 0..%d", w, MAXW);   \
    int64_t got = 0;                                                                       \
    int vbytes = (w + 7) / 8;                                                              \
    while (got < n) {                                                                      \
      uint64_t h = 0;                                                                      \
      if (read_varint(&p, end, &h)) return -1;                                             \
      uint64_t runs = h >> 1;                                                              \
      if (h & 1) {                                                                         \
        if (runs == 0) return tide_fail("an empty bit-packed run");                        \
        if (runs > (uint64_t)(end - p) || runs * (uint64_t)w > (uint64_t)(end - p))        \
          return tide_fail("a bit-packed run of %llu groups past the end of the data",     \
                           (unsigned long long)runs);                                      \
        int64_t count = (int64_t)runs * 8;                                                 \
        if (count > n - got) count = n - got;                                              \
        UNPACKER(p, p + runs * (uint64_t)w, w, out + got, count);                          \
        p += runs * (uint64_t)w;                                                           \
        got += count;                                                                      \
      } else {                                                                             \
        if (runs == 0) return tide_fail("an empty RLE run");                               \
        if (end - p < vbytes) return tide_fail("the encoded data ends inside an RLE run"); \
        uint64_t v = 0;                                                                    \
        for (int k = 0; k < vbytes; k++) v |= (uint64_t)p[k] << (8 * k);                   \
        p += vbytes;                                                                       \
        if (w < 64 && (v >> w)) return tide_fail("an RLE value wider than %d bits", w);    \
        int64_t count = runs > (uint64_t)(n - got) ? n - got : (int64_t)runs;              \
        for (int64_t i = 0; i < count; i++) out[got + i] = (T)v;                           \
        got += count;                                                                      \
      }                                                                                    \
    }                                                                                      \
    return 0;                                                                              \
  }
HYBRID(uint8_t, pq_hybrid_u8, unpack_u8, 8)
HYBRID(uint32_t, pq_hybrid_u32, unpack_u32, 32)

int pq_plain_byte_array(const uint8_t *p, const uint8_t *end, int64_t n, const char **ptrs, int32_t *lens, int64_t *used) {
  const uint8_t *start = p;
  for (int64_t i = 0; i < n; i++) {
    if (end - p < 4) return tide_fail("value %lld of %lld: the data ends inside a length", (long long)i, (long long)n);
    uint32_t len;
    memcpy(&len, p, 4);
    p += 4;
    if (len > (uint64_t)(end - p))
      return tide_fail("value %lld of %lld: a length of %u bytes past the end of the data", (long long)i, (long long)n, len);
    if (len > INT32_MAX) return tide_fail("value %lld: a length of %u bytes", (long long)i, len);
    ptrs[i] = (const char *)p;
    lens[i] = (int32_t)len;
    p += len;
  }
  *used = p - start;
  return 0;
}

int pq_plain_bool(const uint8_t *p, const uint8_t *end, int64_t n, uint8_t *out) {
  if ((uint64_t)(end - p) < ((uint64_t)n + 7) / 8) return tide_fail("%lld booleans need more bytes than the data holds", (long long)n);
  for (int64_t i = 0; i < n; i++) out[i] = (p[i >> 3] >> (i & 7)) & 1;
  return 0;
}
