/* Page decompression for the Parquet reader (see parquet_codec.h). */
#include "parquet_codec.h"
#include "error.h"
#include <snappy-c.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static const char *const names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};

const char *pq_codec_name(int32_t codec, char *buf, int buflen) {
  if (codec >= 0 && codec < (int32_t)(sizeof names / sizeof names[0])) return names[codec];
  snprintf(buf, (size_t)buflen, "codec %d", codec);
  return buf;
}

int pq_codec_supported(int32_t codec) {
  return codec == PQ_UNCOMPRESSED || codec == PQ_SNAPPY || codec == PQ_GZIP || codec == PQ_ZSTD;
}

int64_t pq_codec_max_expansion(int32_t codec, int64_t n) {
  switch (codec) {
    case PQ_UNCOMPRESSED: return n;
    /* a Snappy copy element of 2 bytes writes at most 64 (the tag's 6 length bits + 1, 2-byte offset: 3 bytes) */
    case PQ_SNAPPY: return n * 32 + 64;
    /* deflate's best case is 258 bytes from about 2 bits: 1032 to 1, plus headers */
    case PQ_GZIP: return n * 1040 + 1024;
    /* a Zstandard RLE block: a 3-byte header and 1 byte for up to 128 KiB */
    case PQ_ZSTD: return n * 32768 + (1 << 17);
    default: return 0;
  }
}

static int inflate_gzip(const uint8_t *src, int64_t n, uint8_t *dst, int64_t dst_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  /* 32 + 15: gzip or zlib headers, found by their magic (writers differ) */
  if (inflateInit2(&zs, 32 + MAX_WBITS) != Z_OK) return tide_fail("GZIP: zlib could not start");
  int64_t in_at = 0, out_at = 0;
  int rc = Z_OK;
  for (;;) {
    zs.next_in = (Bytef *)(src + in_at);
    zs.avail_in = (uInt)((n - in_at) > (1 << 30) ? (1 << 30) : (n - in_at));
    zs.next_out = dst + out_at;
    zs.avail_out = (uInt)((dst_len - out_at) > (1 << 30) ? (1 << 30) : (dst_len - out_at));
    uInt ai = zs.avail_in, ao = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    in_at += ai - zs.avail_in;
    out_at += ao - zs.avail_out;
    if (rc == Z_STREAM_END) {
      /* concatenated members, as gzip allows */
      if (in_at < n && out_at < dst_len && inflateReset(&zs) == Z_OK) continue;
      break;
    }
    if (rc != Z_OK) break;
    if (ai == zs.avail_in && ao == zs.avail_out) { rc = Z_BUF_ERROR; break; }  /* no progress: truncated */
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    if (out_at == dst_len && rc == Z_OK) return tide_fail("GZIP: the data inflates to more than the %lld bytes the page header gives", (long long)dst_len);
    return tide_fail("GZIP: corrupt or truncated data (zlib: %s, after %lld of %lld compressed bytes)",
                     zs.msg ? zs.msg : rc == Z_BUF_ERROR ? "unexpected end" : "error", (long long)in_at, (long long)n);
  }
  if (out_at != dst_len) return tide_fail("GZIP: the data inflates to %lld bytes, not the %lld the page header gives", (long long)out_at, (long long)dst_len);
  return 0;
}

int pq_decompress(int32_t codec, const uint8_t *src, int64_t n, uint8_t *dst, int64_t dst_len) {
  switch (codec) {
    case PQ_UNCOMPRESSED:
      if (n != dst_len) return tide_fail("an uncompressed page of %lld bytes whose header gives %lld", (long long)n, (long long)dst_len);
      if (n) memcpy(dst, src, (size_t)n);
      return 0;
    case PQ_SNAPPY: {
      size_t len = 0;
      if (snappy_uncompressed_length((const char *)src, (size_t)n, &len) != SNAPPY_OK)
        return tide_fail("SNAPPY: corrupt data (no valid length at its start)");
      if ((int64_t)len != dst_len)
        return tide_fail("SNAPPY: the data holds %lld bytes, not the %lld the page header gives", (long long)len, (long long)dst_len);
      /* snappy_uncompress checks every copy and literal against both buffers */
      len = (size_t)dst_len;
      if (snappy_uncompress((const char *)src, (size_t)n, (char *)dst, &len) != SNAPPY_OK || (int64_t)len != dst_len)
        return tide_fail("SNAPPY: corrupt data");
      return 0;
    }
    case PQ_GZIP: return inflate_gzip(src, n, dst, dst_len);
    case PQ_ZSTD: {
      size_t got = ZSTD_decompress(dst, (size_t)dst_len, src, (size_t)n);
      if (ZSTD_isError(got)) return tide_fail("ZSTD: corrupt data (%s)", ZSTD_getErrorName(got));
      if ((int64_t)got != dst_len) return tide_fail("ZSTD: the data holds %lld bytes, not the %lld the page header gives", (long long)got, (long long)dst_len);
      return 0;
    }
    default: {
      char buf[32];
      return tide_fail("the %s codec is not supported (tide reads UNCOMPRESSED, SNAPPY, GZIP and ZSTD)", pq_codec_name(codec, buf, sizeof buf));
    }
  }
}
