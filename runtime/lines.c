/* Line reader over a plain or gzip file (tide_lines_*), the first stage of
   the streaming data pipeline.

   Memory stays constant whatever the file's size: a fixed input buffer for
   compressed bytes, and one text buffer holding the unread decoded text,
   which grows only when a single line does not fit (so to about twice the
   longest line). Lines are found with memchr over the text buffer, so the
   cost per byte is that of inflate (or read) plus one vectorised scan.

   Gzip is recognised by its magic bytes, not the file's name, and may hold
   any number of members (pigz, `cat a.gz b.gz`): at the end of one member
   the inflater is reset and decoding goes on while input remains.

   On damage (a corrupt stream, or a file that ends inside a member) the
   text decoded before it is still served line by line; the partial line at
   the point of damage is dropped, since its end is unknown, and from then on
   every call fails with the message naming the file and the compressed byte
   offset.

   A line longer than the maximum (256 MiB unless set) is never held whole:
   once the unread text passes the maximum without a '\n', the reader drops
   it and discards text until the line ends, then reports the line as
   skipped (2) with a message naming the file and line. So a gzip bomb of one
   2 GB line costs about 1.5 times the maximum, not the line (the text buffer
   never grows past it), and the caller chooses to stop or go on. */
#include "tide.h"
#include "error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IN_CAP (256 * 1024)
#define TEXT_CAP0 (256 * 1024)
#define MAX_LINE_DEFAULT ((int64_t)256 << 20)

struct tide_lines {
  char *path;
  int fd;
  int gz;             /* gzip input, inflated through zs */
  int zinit;          /* zs needs inflateEnd */
  int member_open;    /* inside a gzip member (started, not at its end) */
  int in_eof;         /* read() returned 0 */
  int finished;       /* no more text will come (end of input or damage) */
  int damaged;        /* finished because of an error, message in err */
  int skipping;       /* discarding the rest of a line longer than max_line */
  int64_t max_line;   /* longest line returned, in bytes without '\n' */
  int64_t skip_from;  /* bytes of the skipped line dropped so far */
  z_stream zs;
  unsigned char *in;  /* compressed input (gzip only) */
  char *text;         /* decoded text: unread lines in [start, end) */
  size_t cap, start, end;
  size_t scanned;     /* [start, scanned) holds no '\n' */
  int64_t lineno, file_bytes, text_bytes, file_size;
  char err[512];
};

static int fail_lines(tide_lines *r) {
  return tide_fail("%s", r->err);
}

/* Marks the reader damaged with a message kept for every later call. */
static void damage(tide_lines *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void damage(tide_lines *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, sizeof r->err, fmt, ap);
  va_end(ap);
  r->damaged = 1;
  r->finished = 1;
}

/* read() retrying on EINTR; -1 leaves errno set. */
static ssize_t read_some(int fd, void *buf, size_t n) {
  for (;;) {
    ssize_t k = read(fd, buf, n);
    if (k >= 0 || errno != EINTR) return k;
  }
}

void tide_lines_close(tide_lines *r) {
  if (!r) return;
  if (r->zinit) inflateEnd(&r->zs);
  if (r->fd >= 0) close(r->fd);
  free(r->in);
  free(r->text);
  free(r->path);
  free(r);
}

int tide_lines_open(const char *path, tide_lines **out) {
  if (!out) return tide_fail("tide_lines_open: out is NULL");
  *out = NULL;
  if (!path) return tide_fail("tide_lines_open: path is NULL");
  tide_lines *r = calloc(1, sizeof *r);
  if (!r) return tide_fail("%s: out of memory", path);
  r->fd = -1;
  r->path = strdup(path);
  r->text = malloc(TEXT_CAP0);
  if (!r->path || !r->text) {
    tide_lines_close(r);
    return tide_fail("%s: out of memory", path);
  }
  r->cap = TEXT_CAP0;
  r->max_line = MAX_LINE_DEFAULT;
  r->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (r->fd < 0) {
    int e = errno;
    tide_lines_close(r);
    return tide_fail("%s: cannot open: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode)) r->file_size = (int64_t)st.st_size;
  /* the first two bytes decide gzip or text (a pipe may give them one at a time) */
  unsigned char head[2];
  size_t got = 0;
  while (got < 2) {
    ssize_t k = read_some(r->fd, head + got, 2 - got);
    if (k < 0) {
      int e = errno;
      tide_lines_close(r);
      return tide_fail("%s: cannot read: %s", path, strerror(e));
    }
    if (k == 0) { r->in_eof = 1; break; }
    got += (size_t)k;
  }
  r->file_bytes = (int64_t)got;
  if (got == 2 && head[0] == 0x1f && head[1] == 0x8b) {
    r->gz = 1;
    r->in = malloc(IN_CAP);
    if (!r->in) {
      tide_lines_close(r);
      return tide_fail("%s: out of memory", path);
    }
    /* 16 + MAX_WBITS: gzip wrapper only, checked CRC and length */
    if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
      tide_lines_close(r);
      return tide_fail("%s: cannot start zlib's inflate", path);
    }
    r->zinit = 1;
    memcpy(r->in, head, 2);
    r->zs.next_in = r->in;
    r->zs.avail_in = 2;
  } else {
    memcpy(r->text, head, got);
    r->end = got;
  }
  *out = r;
  return 0;
}

/* Reads or inflates more text into [end, cap), at least one byte unless it
   sets finished (the end of the input, or damage with its message kept). */
static void fill(tide_lines *r) {
  if (!r->gz) {
    ssize_t k = read_some(r->fd, r->text + r->end, r->cap - r->end);
    if (k < 0) {
      damage(r, "%s: read error at byte %lld: %s", r->path, (long long)r->file_bytes, strerror(errno));
      return;
    }
    if (k == 0) { r->in_eof = 1; r->finished = 1; return; }
    r->file_bytes += k;
    r->end += (size_t)k;
    return;
  }
  z_stream *zs = &r->zs;
  size_t before = r->end;
  while (r->end == before && !r->finished) {
    if (zs->avail_in == 0) {
      if (!r->in_eof) {
        ssize_t k = read_some(r->fd, r->in, IN_CAP);
        if (k < 0) {
          damage(r, "%s: read error at compressed byte %lld: %s", r->path, (long long)r->file_bytes, strerror(errno));
          return;
        }
        if (k == 0) r->in_eof = 1;
        r->file_bytes += k;
        zs->next_in = r->in;
        zs->avail_in = (uInt)k;
      }
      if (zs->avail_in == 0) {
        if (r->member_open)
          damage(r, "%s: truncated gzip at compressed byte %lld (the file ends inside a gzip member)", r->path,
                 (long long)r->file_bytes);
        else
          r->finished = 1;
        return;
      }
    }
    r->member_open = 1;
    zs->next_out = (Bytef *)(r->text + r->end);
    size_t room = r->cap - r->end;
    zs->avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
    uInt avail = zs->avail_out;
    int rc = inflate(zs, Z_NO_FLUSH);
    r->end += avail - zs->avail_out;
    if (rc == Z_STREAM_END) {
      /* another member may follow: reset and go on while input remains */
      r->member_open = 0;
      if (inflateReset(zs) != Z_OK) {
        damage(r, "%s: zlib could not reset after a gzip member", r->path);
        return;
      }
    } else if (rc == Z_BUF_ERROR) {
      /* no progress: more input is needed (the loop reads it) */
      if (zs->avail_in != 0 && zs->avail_out != 0) {
        damage(r, "%s: corrupt gzip data at compressed byte %lld (zlib: no progress)", r->path,
               (long long)(r->file_bytes - zs->avail_in));
        return;
      }
    } else if (rc != Z_OK) {
      damage(r, "%s: corrupt gzip data at compressed byte %lld (zlib: %s)", r->path,
             (long long)(r->file_bytes - zs->avail_in), zs->msg ? zs->msg : zError(rc));
      return;
    }
  }
}

int tide_lines_set_max_line(tide_lines *r, int64_t max_bytes) {
  if (!r) return tide_fail("tide_lines_set_max_line: reader is NULL");
  /* a bound that keeps 1.5 * max + TEXT_CAP0 inside size_t and an int64_t */
  if (max_bytes < 1 || max_bytes > ((int64_t)1 << 50))
    return tide_fail("%s: the maximum line length must be in 1..2^50 bytes, got %lld", r->path, (long long)max_bytes);
  r->max_line = max_bytes;
  return 0;
}

int64_t tide_lines_max_line(const tide_lines *r) { return r ? r->max_line : 0; }

/* The text buffer's largest size: room for a whole line of max_line bytes
   plus read-ahead; the buffer starts small and doubles up to this. */
static size_t cap_limit(const tide_lines *r) {
  return (size_t)r->max_line + (size_t)r->max_line / 2 + TEXT_CAP0;
}

/* Reports the line being skipped as ended: counted, and the message kept. */
static int skipped(tide_lines *r, int64_t dropped) {
  r->skipping = 0;
  r->lineno++;
  r->text_bytes += dropped;
  tide_fail("%s: line %lld is longer than the maximum of %lld bytes (%lld bytes or more); skipped", r->path,
            (long long)r->lineno, (long long)r->max_line, (long long)dropped);
  return 2;
}

int tide_lines_next(tide_lines *r, const char **line, int64_t *len) {
  if (line) *line = NULL;
  if (len) *len = 0;
  if (!r || !line || !len) return tide_fail("tide_lines_next: NULL argument");
  for (;;) {
    char *from = r->text + r->scanned;
    char *nl = r->scanned < r->end ? memchr(from, '\n', r->end - r->scanned) : NULL;
    if (nl) {
      size_t n = (size_t)(nl - (r->text + r->start));
      r->start += n + 1;
      r->scanned = r->start;
      if (r->skipping) return skipped(r, r->skip_from + (int64_t)n + 1);
      if ((int64_t)n > r->max_line) {  /* a long line that arrived whole in one fill */
        r->skip_from = 0;
        return skipped(r, (int64_t)n + 1);
      }
      *line = r->text + r->start - n - 1;
      *len = (int64_t)n;
      r->text_bytes += (int64_t)n + 1;
      r->lineno++;
      return 1;
    }
    r->scanned = r->end;
    size_t keep = r->end - r->start;
    if (!r->skipping && (int64_t)keep > r->max_line) {
      /* too long already: drop it and discard text up to its '\n' */
      r->skipping = 1;
      r->skip_from = 0;
    }
    if (r->skipping) {
      r->skip_from += (int64_t)keep;
      r->start = r->end = r->scanned = 0;
      keep = 0;
    }
    if (r->finished) {
      if (r->damaged) return fail_lines(r);
      if (r->skipping) return skipped(r, r->skip_from);
      if (keep > 0) {  /* a last line without '\n' */
        *line = r->text + r->start;
        *len = (int64_t)keep;
        r->start = r->scanned = r->end;
        r->text_bytes += (int64_t)keep;
        r->lineno++;
        return 1;
      }
      return 0;
    }
    /* make room: move the partial line to the front, grow if it fills most of the buffer */
    if (r->start > 0) {
      memmove(r->text, r->text + r->start, keep);
      r->start = 0;
      r->end = r->scanned = keep;
    }
    size_t limit = cap_limit(r);
    if (r->cap - r->end < r->cap / 4 && r->cap < limit) {
      size_t ncap = r->cap * 2 < limit ? r->cap * 2 : limit;
      char *t = realloc(r->text, ncap);
      if (!t) return tide_fail("%s: out of memory for a line of %zu bytes or more", r->path, keep);
      r->text = t;
      r->cap = ncap;
    }
    fill(r);
  }
}

int64_t tide_lines_lineno(const tide_lines *r) {
  return r ? r->lineno : 0;
}

void tide_lines_counts(const tide_lines *r, int64_t *file_bytes, int64_t *text_bytes, int64_t *file_size) {
  if (file_bytes) *file_bytes = r ? r->file_bytes : 0;
  if (text_bytes) *text_bytes = r ? r->text_bytes : 0;
  if (file_size) *file_size = r ? r->file_size : 0;
}
