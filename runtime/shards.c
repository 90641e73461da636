/* Token shards in llm.c's format: a header of 256 little-endian int32
   (magic, version, token count, the rest zero) followed by the tokens,
   uint16 for GPT-2's vocabulary (magic 20240520, version 1) or uint32 for
   larger ones (llm.c's llama-3 shards: magic 20240801, version 7). The
   header's count is an int32, so a shard holds at most INT32_MAX tokens.

   Writing goes to PATH.tmp and only a committing close renames it to PATH,
   so a crashed or interrupted tokenizer run never leaves a shard that looks
   complete. Reading trusts nothing: the header's count must account for the
   file's size to the byte, since a truncated download or a shard written by
   a killed process would otherwise feed zeros or garbage to training without
   a word. nanoGPT's .bin files are bare np.uint16 arrays and are read with
   raw_uint16.

   Reads go through pread on a descriptor kept open, not a memory mapping: a
   mapped file that shrinks under the reader (another process truncating or
   rewriting it) raises SIGBUS on the next access, which no caller can turn
   into an error, while a short pread is an ordinary error naming the file.
   One window of T + 1 tokens is one pread straight into the caller's int32
   buffer, widened in place; the loader measured the same batches per second
   either way (docs/data.md). */
#include "tide.h"
#include "error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)
#define MAGIC_U16 20240520
#define VERSION_U16 1
#define MAGIC_U32 20240801
#define VERSION_U32 7
/* Tokens converted per fwrite; the FILE buffer below batches the syscalls. */
#define CHUNK_TOKENS 8192

struct tide_shard_writer {
  FILE *f;
  char *path, *tmp;
  int32_t token_bytes;
  int64_t count;
  int broken;  /* an I/O error happened: the shard can no longer be committed */
  unsigned char chunk[CHUNK_TOKENS * 4];
};

struct tide_shard {
  int fd;
  char *path;
  uint64_t size;    /* the file's size when opened */
  uint64_t offset;  /* of the first token */
  int64_t ntok;
  int32_t token_bytes;
};

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static char *dup_str(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  char *r = malloc(a + b + 1);
  if (!r) return NULL;
  memcpy(r, s, a);
  memcpy(r + a, suffix, b + 1);
  return r;
}

static void free_writer(tide_shard_writer *w) {
  free(w->path);
  free(w->tmp);
  free(w);
}

int tide_shard_writer_open(const char *path, int32_t token_bytes, tide_shard_writer **out) {
  if (!out) return tide_fail("tide_shard_writer_open: out is NULL");
  *out = NULL;
  if (!path || !*path) return tide_fail("tide_shard_writer_open: path is NULL or empty");
  if (token_bytes != 2 && token_bytes != 4)
    return tide_fail("tide_shard_writer_open: token_bytes must be 2 (uint16) or 4 (uint32), got %d", (int)token_bytes);
  tide_shard_writer *w = calloc(1, sizeof *w);
  if (!w) return tide_fail("tide_shard_writer_open: out of memory");
  w->path = dup_str(path, "");
  w->tmp = dup_str(path, ".tmp");
  w->token_bytes = token_bytes;
  if (!w->path || !w->tmp) {
    free_writer(w);
    return tide_fail("tide_shard_writer_open: out of memory");
  }
  w->f = fopen(w->tmp, "wb");
  if (!w->f) {
    int e = errno;
    tide_fail("shard %s: cannot create %s: %s", path, w->tmp, strerror(e));
    free_writer(w);
    return -1;
  }
  /* a large stdio buffer: shards are written in one pass, often 100M tokens */
  setvbuf(w->f, NULL, _IOFBF, 1 << 20);
  unsigned char header[SHARD_HEADER_BYTES] = {0};
  put_le32(header, token_bytes == 2 ? MAGIC_U16 : MAGIC_U32);
  put_le32(header + 4, token_bytes == 2 ? VERSION_U16 : VERSION_U32);
  /* the count stays 0 until the committing close patches it */
  if (fwrite(header, 1, sizeof header, w->f) != sizeof header) {
    int e = errno;
    fclose(w->f);
    unlink(w->tmp);
    tide_fail("shard %s: writing the header of %s failed: %s", path, w->tmp, strerror(e));
    free_writer(w);
    return -1;
  }
  *out = w;
  return 0;
}

int tide_shard_writer_write(tide_shard_writer *w, const int32_t *tokens, int64_t n) {
  if (!w) return tide_fail("tide_shard_writer_write: writer is NULL");
  if (n < 0) return tide_fail("shard %s: token count %lld is negative", w->path, (long long)n);
  if (n == 0) return 0;
  if (!tokens) return tide_fail("shard %s: tokens is NULL", w->path);
  if (w->broken) return tide_fail("shard %s: an earlier write failed; the shard cannot be continued", w->path);
  if (n > INT32_MAX - w->count)
    return tide_fail("shard %s: %lld + %lld tokens exceed the format's limit of %d per shard", w->path,
                     (long long)w->count, (long long)n, INT32_MAX);
  /* validate everything first so that a bad token writes nothing of this call */
  int64_t limit = w->token_bytes == 2 ? 65535 : INT32_MAX;
  for (int64_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] > limit)
      return tide_fail("shard %s: token %d at index %lld does not fit %s (0..%lld)", w->path, (int)tokens[i],
                       (long long)i, w->token_bytes == 2 ? "uint16" : "uint32", (long long)limit);
  for (int64_t i = 0; i < n;) {
    int64_t k = n - i < CHUNK_TOKENS ? n - i : CHUNK_TOKENS;
    unsigned char *p = w->chunk;
    if (w->token_bytes == 2) {
      for (int64_t j = 0; j < k; j++, p += 2) {
        uint32_t v = (uint32_t)tokens[i + j];
        p[0] = (unsigned char)v;
        p[1] = (unsigned char)(v >> 8);
      }
    } else {
      for (int64_t j = 0; j < k; j++, p += 4) put_le32(p, (uint32_t)tokens[i + j]);
    }
    size_t bytes = (size_t)k * (size_t)w->token_bytes;
    if (fwrite(w->chunk, 1, bytes, w->f) != bytes) {
      int e = errno;
      w->broken = 1;
      return tide_fail("shard %s: writing %s failed: %s", w->path, w->tmp, strerror(e));
    }
    i += k;
    w->count += k;
  }
  return 0;
}

int64_t tide_shard_writer_count(const tide_shard_writer *w) { return w ? w->count : 0; }

int tide_shard_writer_close(tide_shard_writer *w, int32_t commit) {
  if (!w) return 0;
  int rc = 0;
  if (commit && w->broken) {
    rc = tide_fail("shard %s: an earlier write failed; %s is removed, not committed", w->path, w->tmp);
    commit = 0;
  }
  if (commit) {
    unsigned char count[4];
    put_le32(count, (uint32_t)w->count);
    const char *what = NULL;
    if (fseek(w->f, 8, SEEK_SET) != 0) what = "seeking to the header";
    else if (fwrite(count, 1, 4, w->f) != 4) what = "patching the token count";
    else if (fflush(w->f) != 0) what = "flushing";
    else if (fsync(fileno(w->f)) != 0) what = "fsync";
    int e = errno;
    if (fclose(w->f) != 0 && !what) {
      what = "closing";
      e = errno;
    }
    w->f = NULL;
    if (!what && rename(w->tmp, w->path) != 0) {
      what = "renaming";
      e = errno;
    }
    if (what) {
      unlink(w->tmp);
      rc = tide_fail("shard %s: %s %s failed: %s", w->path, what, w->tmp, strerror(e));
    }
  } else {
    if (w->f) fclose(w->f);
    unlink(w->tmp);
  }
  free_writer(w);
  return rc;
}

/* Reads n bytes at off, retrying on EINTR and short reads; the bytes read. */
static int64_t pread_full(int fd, void *buf, size_t n, uint64_t off, int *err) {
  size_t got = 0;
  *err = 0;
  while (got < n) {
    ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (k < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      break;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  return (int64_t)got;
}

static void free_shard(tide_shard *s) {
  if (s->fd >= 0) close(s->fd);
  free(s->path);
  free(s);
}

int tide_shard_open(const char *path, int32_t raw_uint16, tide_shard **out) {
  if (!out) return tide_fail("tide_shard_open: out is NULL");
  *out = NULL;
  if (!path) return tide_fail("tide_shard_open: path is NULL");
  tide_shard *s = calloc(1, sizeof *s);
  char *p = dup_str(path, "");
  if (!s || !p) {
    free(s);
    free(p);
    return tide_fail("tide_shard_open: out of memory");
  }
  s->path = p;
  s->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) {
    int e = errno;
    free_shard(s);
    return tide_fail("shard %s: cannot open: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(s->fd, &st) != 0) {
    int e = errno;
    free_shard(s);
    return tide_fail("shard %s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    free_shard(s);
    return tide_fail("shard %s: not a regular file", path);
  }
  uint64_t size = (uint64_t)st.st_size;
  s->size = size;
  if (raw_uint16) {
    if (size % 2 != 0) {
      free_shard(s);
      return tide_fail("shard %s: a raw uint16 file must have an even size, this one holds %llu bytes", path,
                       (unsigned long long)size);
    }
    s->offset = 0;
    s->ntok = (int64_t)(size / 2);
    s->token_bytes = 2;
    *out = s;
    return 0;
  }
  if (size < SHARD_HEADER_BYTES) {
    free_shard(s);
    return tide_fail("shard %s: the file holds %llu bytes, less than llm.c's %d-byte header", path,
                     (unsigned long long)size, SHARD_HEADER_BYTES);
  }
  unsigned char header[12];
  int e;
  if (pread_full(s->fd, header, sizeof header, 0, &e) != (int64_t)sizeof header) {
    free_shard(s);
    return tide_fail("shard %s: cannot read the header: %s", path, e ? strerror(e) : "the file shrank while opening");
  }
  int32_t magic = (int32_t)get_le32(header), version = (int32_t)get_le32(header + 4), n = (int32_t)get_le32(header + 8);
  int bad = 0;
  if (magic == MAGIC_U16) {
    s->token_bytes = 2;
    if (version != VERSION_U16)
      bad = tide_fail("shard %s: uint16 shard (magic %d) has version %d, expected %d", path, magic, version,
                      VERSION_U16);
  } else if (magic == MAGIC_U32) {
    s->token_bytes = 4;
    if (version != VERSION_U32)
      bad = tide_fail("shard %s: uint32 shard (magic %d) has version %d, expected %d", path, magic, version,
                      VERSION_U32);
  } else {
    bad = tide_fail("shard %s: bad magic %d: not an llm.c shard (expected %d for uint16 or %d for uint32; "
                    "a header-less nanoGPT .bin needs raw_uint16)", path, magic, MAGIC_U16, MAGIC_U32);
  }
  if (!bad && n < 0) bad = tide_fail("shard %s: header says %d tokens, a negative count", path, n);
  if (!bad) {
    uint64_t want = (uint64_t)SHARD_HEADER_BYTES + (uint64_t)n * (uint64_t)s->token_bytes;
    if (want != size)
      bad = tide_fail("shard %s: header says %d tokens (%llu bytes) but the file holds %llu bytes", path, n,
                      (unsigned long long)want, (unsigned long long)size);
  }
  if (bad) {
    free_shard(s);
    return -1;
  }
  s->offset = SHARD_HEADER_BYTES;
  s->ntok = n;
  *out = s;
  return 0;
}

int64_t tide_shard_ntokens(const tide_shard *s) { return s ? s->ntok : 0; }

int32_t tide_shard_token_bytes(const tide_shard *s) { return s ? s->token_bytes : 0; }

int tide_shard_read(const tide_shard *s, int64_t start, int64_t n, int32_t *out) {
  if (!s) return tide_fail("tide_shard_read: shard is NULL");
  if (start < 0 || n < 0 || start > s->ntok || n > s->ntok - start)
    return tide_fail("tide_shard_read: %lld tokens from %lld are outside the shard's %lld", (long long)n,
                     (long long)start, (long long)s->ntok);
  if (n == 0) return 0;
  if (!out) return tide_fail("tide_shard_read: out is NULL");
  /* the tokens land in the last token_bytes * n bytes of out and are widened
     front to back: out[i] is written only after token i (at or above it) and
     every token below i were read */
  size_t tb = (size_t)s->token_bytes, bytes = (size_t)n * tb;
  unsigned char *raw = (unsigned char *)out + (size_t)n * 4 - bytes;
  uint64_t off = s->offset + (uint64_t)start * tb;
  int e;
  int64_t got = pread_full(s->fd, raw, bytes, off, &e);
  if (got != (int64_t)bytes) {
    if (e)
      return tide_fail("shard %s: reading %zu bytes at offset %llu failed: %s", s->path, bytes,
                       (unsigned long long)off, strerror(e));
    struct stat st;
    long long now = fstat(s->fd, &st) == 0 ? (long long)st.st_size : -1;
    return tide_fail("shard %s: the file changed while open: it held %llu bytes, now %lld, and %zu bytes at "
                     "offset %llu cannot be read", s->path, (unsigned long long)s->size, now, bytes,
                     (unsigned long long)off);
  }
  if (tb == 2) {
    for (int64_t i = 0; i < n; i++) {
      const unsigned char *p = raw + 2 * i;
      out[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8);
    }
  } else {
    /* uint32 tokens above INT32_MAX cannot be widened to int32 losslessly; no vocabulary is that large */
    for (int64_t i = 0; i < n; i++) {
      uint32_t v = get_le32(raw + 4 * i);
      if (v > (uint32_t)INT32_MAX)
        return tide_fail("shard %s: token %u at index %lld does not fit int32", s->path, v, (long long)(start + i));
      out[i] = (int32_t)v;
    }
  }
  return 0;
}

void tide_shard_close(tide_shard *s) {
  if (!s) return;
  free_shard(s);
}
