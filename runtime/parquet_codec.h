/* Parquet's page compression codecs: UNCOMPRESSED, SNAPPY (raw, libsnappy),
   GZIP (zlib) and ZSTD (libzstd). */
#ifndef TIDE_PARQUET_CODEC_H
#define TIDE_PARQUET_CODEC_H
#include <stdint.h>

/* Parquet's CompressionCodec values. */
enum { PQ_UNCOMPRESSED = 0, PQ_SNAPPY = 1, PQ_GZIP = 2, PQ_LZO = 3, PQ_BROTLI = 4, PQ_LZ4 = 5, PQ_ZSTD = 6, PQ_LZ4_RAW = 7 };

/* The codec's name ("SNAPPY"; "codec 42" for an unknown value, in buf). */
const char *pq_codec_name(int32_t codec, char *buf, int buflen);
/* 1 when the codec can be read. */
int pq_codec_supported(int32_t codec);
/* The most bytes n compressed bytes can expand to with this codec (the
   format's own limit), so a page header claiming more is refused before
   anything is allocated. */
int64_t pq_codec_max_expansion(int32_t codec, int64_t n);
/* Decompresses src[0..n) into exactly dst_len bytes at dst; any other
   length, or corrupt data, is an error (message without the file). */
int pq_decompress(int32_t codec, const uint8_t *src, int64_t n, uint8_t *dst, int64_t dst_len);

#endif
