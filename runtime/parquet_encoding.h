/* Parquet's value and level encodings over one page's bytes: the
   RLE/bit-packed hybrid (levels, dictionary indices, RLE booleans) and PLAIN.
   Each function returns 0, or -1 with a message (no file name: the caller
   adds the file, column and page). */
#ifndef TIDE_PARQUET_ENCODING_H
#define TIDE_PARQUET_ENCODING_H
#include <stdint.h>

/* Decodes exactly n values of bit_width bits (0..32) from the hybrid
   encoding in [p, end) into out (uint8_t values for bit_width <= 8 with
   pq_hybrid_u8, uint32_t with pq_hybrid_u32); the input running out first
   is an error. Values past n in the last run are ignored, as the format
   pads bit-packed groups to 8. */
int pq_hybrid_u8(const uint8_t *p, const uint8_t *end, int bit_width, uint8_t *out, int64_t n);
int pq_hybrid_u32(const uint8_t *p, const uint8_t *end, int bit_width, uint32_t *out, int64_t n);

/* PLAIN BYTE_ARRAY: n values, each a 4-byte little-endian length and its
   bytes; ptrs/lens get where each lies inside [p, end). *used gets the
   bytes consumed. */
int pq_plain_byte_array(const uint8_t *p, const uint8_t *end, int64_t n, const char **ptrs, int32_t *lens, int64_t *used);

/* PLAIN BOOLEAN: n bits, least significant first, as bytes 0/1. */
int pq_plain_bool(const uint8_t *p, const uint8_t *end, int64_t n, uint8_t *out);

#endif
