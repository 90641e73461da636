/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON
   header (tensor name -> {dtype, shape, data_offsets}, plus "__metadata__"),
   then the data, which the tensors' [begin, end) offsets must tile exactly.

   Reading validates the whole header at open as the reference (Rust)
   implementation does: header at most 100 MB and inside the file, valid UTF-8
   JSON object, known dtypes, integer shapes, byte lengths that match, offsets
   that cover the data from its first byte to the file's last with no gap and
   no overlap. Stricter than the reference: duplicate names, more than 8
   dimensions, NUL bytes in names and a byte order mark are errors. Dtypes the
   format has but tide lacks (I8, U32, F8_*, ...) pass validation and fail
   when that tensor is read, naming it. The file stays open and each tensor is
   read with pread into a fresh contiguous tensor, so memory use is the header
   plus the tensors the caller keeps; nothing is mapped.

   Writing gives the bytes the Python library writes for the same tensors:
   "__metadata__" first, tensors ordered by dtype (the reference's dtype
   order, reversed, which puts larger elements first so every tensor starts
   aligned to its element size) then by name, the header padded with spaces
   to a multiple of 8 bytes. */
#include "tensor.h"
#include "json.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes little-endian data in place; big-endian hosts need byte swapping"
#endif

#define ST_MAX_HEADER 100000000ull

/* The format's dtypes in the reference implementation's order, which also
   orders the tensors of a written file (largest rank first, so that every
   tensor starts aligned to its element size); code -1 marks the ones tide
   has no type for. */
static const struct { const char *name; int32_t code; int32_t bits; } st_dtypes[] = {
  {"BOOL", TIDE_BOOL, 8}, {"F4", -1, 4}, {"F6_E2M3", -1, 6}, {"F6_E3M2", -1, 6}, {"U8", TIDE_U8, 8},
  {"I8", -1, 8}, {"F8_E5M2", -1, 8}, {"F8_E4M3", -1, 8}, {"F8_E8M0", -1, 8}, {"F8_E4M3FNUZ", -1, 8},
  {"F8_E5M2FNUZ", -1, 8}, {"I16", -1, 16}, {"U16", TIDE_U16, 16}, {"F16", TIDE_F16, 16},
  {"BF16", TIDE_BF16, 16}, {"I32", TIDE_I32, 32}, {"U32", -1, 32}, {"F32", TIDE_F32, 32},
  {"C64", -1, 64}, {"F64", TIDE_F64, 64}, {"I64", TIDE_I64, 64}, {"U64", -1, 64},
};
#define ST_NUM_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))
#define ST_SUPPORTED "F32, F64, BF16, F16, I32, I64, U8, BOOL, U16"

/* The position in st_dtypes of a tide dtype code, -1 for none. */
static int st_rank(int32_t code) {
  for (int i = 0; i < ST_NUM_DTYPES; i++)
    if (st_dtypes[i].code == code) return i;
  return -1;
}

/* The format's name for a tide dtype code. */
static const char *st_name_of(int32_t code) {
  int r = st_rank(code);
  return r < 0 ? NULL : st_dtypes[r].name;
}

typedef struct st_entry {
  int64_t name;        /* offset of the NUL-terminated name in names */
  int32_t kind;        /* index in st_dtypes */
  int32_t ndim;
  int64_t shape[TIDE_MAX_DIMS];
  uint64_t begin, end; /* relative to the data section */
  int64_t order;       /* position in the header, to break ties */
} st_entry;

struct tide_st_file {
  int fd;
  char *path;
  uint64_t data_start;  /* 8 + header length */
  int64_t count;
  st_entry *e;          /* sorted by data offset */
  char *names;
  char *metadata;       /* JSON object text */
};

/* Offset of the first byte that breaks UTF-8 (no overlongs, surrogates or
   code points past U+10FFFF, as Rust's from_utf8), or -1 when valid. */
static int64_t bad_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t k;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) k = 1;
    else if (c >= 0xe0 && c <= 0xef) { k = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return (int64_t)i;
    if (n - i <= k) return (int64_t)i;
    if (s[i + 1] < lo || s[i + 1] > hi) return (int64_t)i;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xc0) != 0x80) return (int64_t)i;
    i += k + 1;
  }
  return -1;
}

static const char *type_word(int32_t t) {
  static const char *const w[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
  return t >= 0 && t <= 6 ? w[t] : "nothing";
}

static int read_at(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = pread(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) { errno = 0; return -1; }
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

static int cmp_entry(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* A non-negative integer literal into *v, or -1. */
static int get_index(const tide_json *doc, int64_t node, uint64_t *v) {
  int64_t i;
  if (!tide_json_int64(doc, node, &i) || i < 0) return -1;
  *v = (uint64_t)i;
  return 0;
}

/* Appends s (n bytes) to the growable buffer. */
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t c = *cap ? *cap : 256;
    while (c < *len + n + 1) c *= 2;
    char *q = realloc(*buf, c);
    if (!q) return tide_fail("safetensors: out of memory");
    *buf = q;
    *cap = c;
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = 0;
  return 0;
}

/* Checks that obj is null or an object of strings and writes it as JSON text
   (keys in the given order) to *out. `what` starts error messages. */
static int metadata_text(const tide_json *doc, int64_t obj, char **out, const char *what) {
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int32_t t = tide_json_type(doc, obj);
  if (t != TIDE_JSON_NULL && t != TIDE_JSON_OBJECT)
    return tide_fail("%s: __metadata__ must be an object of strings, got %s", what, type_word(t));
  int64_t dup = tide_json_dup_member(doc, obj);
  if (dup >= 0) {
    int64_t kl;
    const char *k = tide_json_key(doc, obj, dup, &kl);
    return tide_fail("%s: __metadata__ has the key \"%.*s\" twice", what, (int)(kl > 200 ? 200 : kl), k);
  }
  if (append(&buf, &len, &cap, "{", 1)) return -1;
  int64_t n = tide_json_length(doc, obj);
  for (int64_t i = 0; i < n; i++) {
    int64_t kl, vl, v = tide_json_child(doc, obj, i);
    const char *k = tide_json_key(doc, obj, i, &kl);
    const char *s = tide_json_string(doc, v, &vl);
    if (!s) {
      free(buf);
      return tide_fail("%s: __metadata__ must map strings to strings; \"%.*s\" is %s", what,
                       (int)(kl > 200 ? 200 : kl), k, type_word(tide_json_type(doc, v)));
    }
    if (bad_utf8((const unsigned char *)k, (size_t)kl) >= 0 || bad_utf8((const unsigned char *)s, (size_t)vl) >= 0) {
      free(buf);
      return tide_fail("%s: __metadata__ entry \"%.*s\" is not valid UTF-8", what, (int)(kl > 200 ? 200 : kl), k);
    }
    if ((i && append(&buf, &len, &cap, ",", 1)) || tide_json_quote(&buf, &len, &cap, k, (size_t)kl) ||
        append(&buf, &len, &cap, ":", 1) || tide_json_quote(&buf, &len, &cap, s, (size_t)vl)) {
      free(buf);
      return tide_fail("safetensors: out of memory");
    }
  }
  if (append(&buf, &len, &cap, "}", 1)) { free(buf); return -1; }
  *out = buf;
  return 0;
}

/* reading ------------------------------------------------------------------------- */

void tide_st_close(tide_st_file *f) {
  if (!f) return;
  if (f->fd >= 0) close(f->fd);
  free(f->path);
  free(f->e);
  free(f->names);
  free(f->metadata);
  free(f);
}

#define NAMEF "\"%.*s\""
#define NAMEA(s) (int)(strlen(s) > 200 ? 200 : strlen(s)), (s)

/* Validates one header member (a tensor) into *e; names go to f->names. */
static int parse_entry(tide_st_file *f, const tide_json *doc, int64_t root, int64_t i, st_entry *e, size_t *names_len, const char *P) {
  int64_t kl;
  const char *key = tide_json_key(doc, root, i, &kl);
  if (memchr(key, 0, (size_t)kl)) return tide_fail("safetensors: %s: tensor name " NAMEF " contains a NUL byte", P, NAMEA(key));
  memcpy(f->names + *names_len, key, (size_t)kl + 1);
  e->name = (int64_t)*names_len;
  *names_len += (size_t)kl + 1;
  e->order = i;
  int64_t v = tide_json_child(doc, root, i);
  if (tide_json_type(doc, v) != TIDE_JSON_OBJECT)
    return tide_fail("safetensors: %s: tensor " NAMEF ": expected an object with dtype, shape and data_offsets, got %s", P,
                     NAMEA(key), type_word(tide_json_type(doc, v)));
  int64_t dt = tide_json_get(doc, v, "dtype"), sh = tide_json_get(doc, v, "shape"), of = tide_json_get(doc, v, "data_offsets");
  const char *miss = dt < 0 ? "dtype" : sh < 0 ? "shape" : of < 0 ? "data_offsets" : NULL;
  if (miss) return tide_fail("safetensors: %s: tensor " NAMEF " has no \"%s\"", P, NAMEA(key), miss);
  int64_t dl;
  const char *ds = tide_json_string(doc, dt, &dl);
  if (!ds) return tide_fail("safetensors: %s: tensor " NAMEF ": dtype must be a string, got %s", P, NAMEA(key), type_word(tide_json_type(doc, dt)));
  e->kind = -1;
  for (int k = 0; k < ST_NUM_DTYPES; k++)
    if ((size_t)dl == strlen(st_dtypes[k].name) && memcmp(ds, st_dtypes[k].name, (size_t)dl) == 0) e->kind = k;
  if (e->kind < 0)
    return tide_fail("safetensors: %s: unknown dtype \"%.*s\" in tensor " NAMEF, P, (int)(dl > 40 ? 40 : dl), ds, NAMEA(key));
  if (tide_json_type(doc, sh) != TIDE_JSON_ARRAY)
    return tide_fail("safetensors: %s: tensor " NAMEF ": shape must be an array of integers, got %s", P, NAMEA(key), type_word(tide_json_type(doc, sh)));
  int64_t nd = tide_json_length(doc, sh);
  if (nd > TIDE_MAX_DIMS)
    return tide_fail("safetensors: %s: tensor " NAMEF " has %lld dimensions (tide supports at most %d)", P, NAMEA(key), (long long)nd, TIDE_MAX_DIMS);
  e->ndim = (int32_t)nd;
  /* the product of the nonzero sizes is bounded as tide_shape_numel bounds
     it: [0, 2^62, 7904] holds nothing but its strides overflow int64 */
  uint64_t numel = 1, span = 1;
  int overflow = 0;
  for (int64_t d = 0; d < nd; d++) {
    uint64_t s;
    if (get_index(doc, tide_json_child(doc, sh, d), &s))
      return tide_fail("safetensors: %s: tensor " NAMEF ": shape entry %lld is not a non-negative integer", P, NAMEA(key), (long long)d + 1);
    e->shape[d] = (int64_t)s;
    if (s == 0) numel = 0;
    else if (__builtin_mul_overflow(span, s, &span) || span > (uint64_t)INT64_MAX / 16) overflow = 1;
  }
  if (numel) numel = span;
  char sb[200];
  tide_shape_str(sb, sizeof sb, e->ndim, e->shape);
  if (overflow) return tide_fail("safetensors: %s: tensor " NAMEF ": shape %s is too large", P, NAMEA(key), sb);
  uint64_t bits = numel * (uint64_t)st_dtypes[e->kind].bits;
  if (bits % 8)
    return tide_fail("safetensors: %s: tensor " NAMEF ": %s %s does not fill whole bytes", P, NAMEA(key), st_dtypes[e->kind].name, sb);
  if (tide_json_type(doc, of) != TIDE_JSON_ARRAY || tide_json_length(doc, of) != 2 ||
      get_index(doc, tide_json_child(doc, of, 0), &e->begin) || get_index(doc, tide_json_child(doc, of, 1), &e->end))
    return tide_fail("safetensors: %s: tensor " NAMEF ": data_offsets must be [begin, end], two non-negative integers", P, NAMEA(key));
  if (e->end < e->begin)
    return tide_fail("safetensors: %s: tensor " NAMEF ": data_offsets [%llu, %llu] end before they begin", P, NAMEA(key),
                     (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end - e->begin != bits / 8)
    return tide_fail("safetensors: %s: tensor " NAMEF ": data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %llu", P, NAMEA(key),
                     (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                     st_dtypes[e->kind].name, sb, (unsigned long long)(bits / 8));
  return 0;
}

/* Reads and validates the header of the open file f (size bytes). */
static int parse_header(tide_st_file *f, uint64_t size, const char *P) {
  unsigned char lenbuf[8];
  if (size < 8)
    return tide_fail("safetensors: %s: file is %llu bytes, too short for the 8-byte header length (truncated?)", P, (unsigned long long)size);
  if (read_at(f->fd, lenbuf, 8, 0)) return tide_fail("safetensors: %s: cannot read: %s", P, errno ? strerror(errno) : "file ended early");
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | lenbuf[i];
  if (n > ST_MAX_HEADER)
    return tide_fail("safetensors: %s: header length %llu is over the %llu-byte limit (not a safetensors file?)", P,
                     (unsigned long long)n, ST_MAX_HEADER);
  if (n > size - 8)
    return tide_fail("safetensors: %s: header length %llu runs past the end of the file (%llu bytes; truncated?)", P,
                     (unsigned long long)n, (unsigned long long)size);
  f->data_start = 8 + n;
  uint64_t data_len = size - 8 - n;
  char *hdr = malloc(n + 1);
  if (!hdr) return tide_fail("safetensors: %s: out of memory for a %llu-byte header", P, (unsigned long long)n);
  if (read_at(f->fd, hdr, n, 8)) {
    free(hdr);
    return tide_fail("safetensors: %s: cannot read the header: %s", P, errno ? strerror(errno) : "file ended early");
  }
  int64_t bad = bad_utf8((const unsigned char *)hdr, n);
  if (bad >= 0) {
    free(hdr);
    return tide_fail("safetensors: %s: header is not valid UTF-8 (byte %lld)", P, (long long)bad);
  }
  if (n >= 3 && memcmp(hdr, "\xef\xbb\xbf", 3) == 0) {
    free(hdr);
    return tide_fail("safetensors: %s: header starts with a byte order mark; it must be plain JSON", P);
  }
  tide_json *doc = NULL;
  if (tide_json_parse(hdr, (int64_t)n, &doc)) {
    char msg[768];
    snprintf(msg, sizeof msg, "%s", tide_last_error());
    free(hdr);
    return tide_fail("safetensors: %s: header is not valid JSON: %s", P, msg);
  }
  free(hdr);
  int rc = -1;
  size_t names_len = 0;
  int64_t dup;
  if (tide_json_type(doc, 0) != TIDE_JSON_OBJECT) {
    tide_fail("safetensors: %s: header is %s, expected a JSON object", P, type_word(tide_json_type(doc, 0)));
    goto done;
  }
  if ((dup = tide_json_dup_member(doc, 0)) >= 0) {
    int64_t kl;
    const char *k = tide_json_key(doc, 0, dup, &kl);
    tide_fail("safetensors: %s: duplicate tensor name \"%.*s\" in the header", P, (int)(kl > 200 ? 200 : kl), k);
    goto done;
  }
  int64_t members = tide_json_length(doc, 0), meta = tide_json_get(doc, 0, "__metadata__");
  f->count = members - (meta >= 0);
  f->e = calloc((size_t)(f->count ? f->count : 1), sizeof *f->e);
  f->names = malloc(n + 1);  /* names are never longer than the header */
  if (!f->e || !f->names) {
    tide_fail("safetensors: out of memory");
    goto done;
  }
  char what[600];
  snprintf(what, sizeof what, "safetensors: %s", P);
  if (meta >= 0 && metadata_text(doc, meta, &f->metadata, what)) goto done;
  if (meta < 0 && !(f->metadata = strdup("{}"))) {
    tide_fail("safetensors: out of memory");
    goto done;
  }
  for (int64_t i = 0, k = 0; i < members; i++) {
    if (tide_json_child(doc, 0, i) == meta) continue;
    if (parse_entry(f, doc, 0, i, &f->e[k++], &names_len, P)) goto done;
  }
  for (int64_t i = 0; i < f->count; i++) {
    const st_entry *e = &f->e[i];
    if (e->end > data_len) {
      tide_fail("safetensors: %s: tensor " NAMEF ": data_offsets [%llu, %llu] are out of range: the data section has %llu bytes (truncated?)", P,
                NAMEA(f->names + e->name), (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
      goto done;
    }
  }
  qsort(f->e, (size_t)f->count, sizeof *f->e, cmp_entry);
  uint64_t at = 0;
  for (int64_t i = 0; i < f->count; i++) {
    const st_entry *e = &f->e[i];
    if (e->begin < at) {
      const st_entry *p = &f->e[i - 1];
      tide_fail("safetensors: %s: tensors " NAMEF " [%llu, %llu] and " NAMEF " [%llu, %llu] overlap", P,
                NAMEA(f->names + p->name), (unsigned long long)p->begin, (unsigned long long)p->end,
                NAMEA(f->names + e->name), (unsigned long long)e->begin, (unsigned long long)e->end);
      goto done;
    }
    if (e->begin > at) {
      tide_fail("safetensors: %s: bytes %llu to %llu of the data belong to no tensor (the gap before tensor " NAMEF "); tensors must cover the data contiguously", P,
                (unsigned long long)at, (unsigned long long)e->begin, NAMEA(f->names + e->name));
      goto done;
    }
    at = e->end;
  }
  if (at != data_len) {
    tide_fail("safetensors: %s: the last %llu bytes of the file belong to no tensor (tensors cover %llu of %llu data bytes)", P,
              (unsigned long long)(data_len - at), (unsigned long long)at, (unsigned long long)data_len);
    goto done;
  }
  rc = 0;
done:
  tide_json_free(doc);
  return rc;
}

int tide_st_open(const char *path, tide_st_file **out) {
  if (!out) return tide_fail("safetensors: no output pointer given");
  *out = NULL;
  if (!path || !path[0]) return tide_fail("safetensors: no file name given");
  tide_st_file *f = calloc(1, sizeof *f);
  if (!f) return tide_fail("safetensors: out of memory");
  f->fd = -1;
  f->path = strdup(path);
  if (!f->path) { tide_st_close(f); return tide_fail("safetensors: out of memory"); }
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    int err = errno;
    tide_st_close(f);
    return tide_fail("safetensors: cannot open %s: %s", path, strerror(err));
  }
  struct stat st;
  if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    tide_st_close(f);
    return tide_fail("safetensors: %s is not a regular file", path);
  }
  if (parse_header(f, (uint64_t)st.st_size, path)) {
    tide_st_close(f);
    return -1;
  }
  *out = f;
  return 0;
}

int64_t tide_st_count(const tide_st_file *f) { return f ? f->count : 0; }

const char *tide_st_name(const tide_st_file *f, int64_t i) {
  return f && i >= 0 && i < f->count ? f->names + f->e[i].name : NULL;
}

const char *tide_st_metadata(const tide_st_file *f) { return f && f->metadata ? f->metadata : "{}"; }

/* The entry i of an open file, or NULL with an error naming `what`. */
static const st_entry *entry(const tide_st_file *f, int64_t i, const char *what) {
  if (!f) { tide_fail("%s: no file (closed or never opened)", what); return NULL; }
  if (i < 0 || i >= f->count) {
    tide_fail("%s: tensor index %lld out of range for %s (%lld tensors)", what, (long long)i, f->path, (long long)f->count);
    return NULL;
  }
  const st_entry *e = &f->e[i];
  if (st_dtypes[e->kind].code < 0) {
    tide_fail("%s: unsupported dtype %s in tensor \"%s\" of %s (tide reads " ST_SUPPORTED ")", what, st_dtypes[e->kind].name,
              f->names + e->name, f->path);
    return NULL;
  }
  return e;
}

int tide_st_info(const tide_st_file *f, int64_t i, int32_t *dtype, int32_t *ndim, int64_t *shape) {
  const st_entry *e = entry(f, i, "safetensors");
  if (!e) return -1;
  if (dtype) *dtype = st_dtypes[e->kind].code;
  if (ndim) *ndim = e->ndim;
  if (shape) memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
  return 0;
}

int tide_st_load(tide_st_file *f, int64_t i, tide_tensor **out) {
  if (!out) return tide_fail("safetensors: no output pointer given");
  *out = NULL;
  const st_entry *e = entry(f, i, "safetensors");
  if (!e) return -1;
  tide_tensor *t = tide_new(st_dtypes[e->kind].code, e->ndim, e->shape);
  if (!t) return -1;
  size_t nbytes = (size_t)(e->end - e->begin);
  if (nbytes && read_at(f->fd, t->data, nbytes, f->data_start + e->begin)) {
    int err = errno;
    tide_tensor_release(t);
    return tide_fail("safetensors: %s: cannot read tensor \"%s\": %s", f->path, f->names + e->name,
                     err ? strerror(err) : "the file ended early (changed since it was opened?)");
  }
  if (t->dtype == TIDE_BOOL)  /* tide's kernels assume bools are 0 or 1 */
    for (size_t k = 0; k < nbytes; k++) t->data[k] = t->data[k] != 0;
  *out = t;
  return 0;
}

/* writing --------------------------------------------------------------------------- */

typedef struct save_item {
  const char *name;
  const tide_tensor *t;
} save_item;

static int cmp_save(const void *a, const void *b) {
  const save_item *x = a, *y = b;
  int rx = st_rank(x->t->dtype), ry = st_rank(y->t->dtype);
  if (rx != ry) return rx > ry ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const save_item *)a)->name, ((const save_item *)b)->name);
}

/* Builds the padded header for items in file order; NULL with an error set. */
static char *build_header(const save_item *it, int32_t n, const char *meta, size_t *out_len) {
  char *buf = NULL, num[64];
  size_t len = 0, cap = 0;
  if (append(&buf, &len, &cap, "{", 1)) return NULL;
  if (meta && (append(&buf, &len, &cap, "\"__metadata__\":", 15) || append(&buf, &len, &cap, meta, strlen(meta)))) goto oom;
  uint64_t off = 0;
  for (int32_t i = 0; i < n; i++) {
    const tide_tensor *t = it[i].t;
    uint64_t nbytes = (uint64_t)t->numel * (uint64_t)tide_dtype_size(t->dtype);
    if ((i || meta) && append(&buf, &len, &cap, ",", 1)) goto oom;
    if (tide_json_quote(&buf, &len, &cap, it[i].name, strlen(it[i].name))) goto oom;
    int k = snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", st_name_of(t->dtype));
    if (append(&buf, &len, &cap, num, (size_t)k)) goto oom;
    for (int32_t d = 0; d < t->ndim; d++) {
      k = snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
      if (append(&buf, &len, &cap, num, (size_t)k)) goto oom;
    }
    k = snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nbytes));
    if (append(&buf, &len, &cap, num, (size_t)k)) goto oom;
    off += nbytes;
  }
  if (append(&buf, &len, &cap, "}", 1)) goto oom;
  while (len % 8)
    if (append(&buf, &len, &cap, " ", 1)) goto oom;
  if (len > ST_MAX_HEADER) {
    free(buf);
    tide_fail("safetensors: the header would be %zu bytes, over the format's %llu-byte limit", len, ST_MAX_HEADER);
    return NULL;
  }
  *out_len = len;
  return buf;
oom:
  free(buf);
  return NULL;  /* append set the error */
}

/* Checks the arguments of a save and returns the items in file order. */
static save_item *prepare_save(const char *path, int32_t n, const char *const *names, tide_tensor *const *tensors,
                               const char *metadata_json, char **meta) {
  *meta = NULL;
  if (!path || !path[0]) { tide_fail("safetensors save: no file name given"); return NULL; }
  if (n < 0) { tide_fail("safetensors save: negative tensor count %d", n); return NULL; }
  if (n > 0 && (!names || !tensors)) { tide_fail("safetensors save: %d tensors but no name or tensor array", n); return NULL; }
  save_item *it = malloc((size_t)(n ? n : 1) * sizeof *it);
  if (!it) { tide_fail("safetensors save: out of memory"); return NULL; }
  for (int32_t i = 0; i < n; i++) {
    char what[300];
    if (!names[i]) { tide_fail("safetensors save: tensor %d has no name", i + 1); goto fail; }
    snprintf(what, sizeof what, "safetensors save: tensor \"%.200s\"", names[i]);
    if (tide_check_tensor(tensors[i], what)) goto fail;
    if (!st_name_of(tensors[i]->dtype)) { tide_fail("%s: invalid dtype code %d", what, tensors[i]->dtype); goto fail; }
    if (strcmp(names[i], "__metadata__") == 0) { tide_fail("safetensors save: \"__metadata__\" is reserved and cannot name a tensor"); goto fail; }
    if (bad_utf8((const unsigned char *)names[i], strlen(names[i])) >= 0) {
      tide_fail("%s: the name is not valid UTF-8 (safetensors headers must be)", what);
      goto fail;
    }
    it[i].name = names[i];
    it[i].t = tensors[i];
  }
  /* names must be unique: sort by name alone first, then into file order */
  qsort(it, (size_t)n, sizeof *it, cmp_name);
  for (int32_t i = 1; i < n; i++)
    if (strcmp(it[i - 1].name, it[i].name) == 0) {
      tide_fail("safetensors save: duplicate tensor name \"%.200s\"", it[i].name);
      goto fail;
    }
  qsort(it, (size_t)n, sizeof *it, cmp_save);
  if (metadata_json) {
    tide_json *doc = NULL;
    if (tide_json_parse(metadata_json, (int64_t)strlen(metadata_json), &doc)) {
      char msg[768];
      snprintf(msg, sizeof msg, "%s", tide_last_error());
      tide_fail("safetensors save: metadata is not valid JSON: %s", msg);
      goto fail;
    }
    int rc = tide_json_type(doc, 0) == TIDE_JSON_OBJECT ? metadata_text(doc, 0, meta, "safetensors save")
                                                        : tide_fail("safetensors save: metadata must be a JSON object of strings, got %s",
                                                                    type_word(tide_json_type(doc, 0)));
    tide_json_free(doc);
    if (rc) goto fail;
  }
  return it;
fail:
  free(it);
  return NULL;
}

int tide_st_save(const char *path, int32_t n, const char *const *names, tide_tensor *const *tensors, const char *metadata_json) {
  char *meta = NULL;
  save_item *it = prepare_save(path, n, names, tensors, metadata_json, &meta);
  if (!it) return -1;
  size_t hlen = 0;
  char *hdr = build_header(it, n, meta, &hlen);
  free(meta);
  if (!hdr) { free(it); return -1; }

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp) { free(hdr); free(it); return tide_fail("safetensors save: out of memory"); }
  snprintf(tmp, plen + 32, "%s.tmp-%ld", path, (long)getpid());
  int rc = -1, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!fp) {
    tide_fail("safetensors save: cannot create %s: %s", tmp, strerror(errno));
    if (fd >= 0) { close(fd); unlink(tmp); }
    goto out;
  }
  setvbuf(fp, NULL, _IOFBF, 1 << 20);
  unsigned char lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  if (fwrite(lenbuf, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen) goto io_error;
  for (int32_t i = 0; i < n; i++) {
    tide_tensor *c = tide_contiguous_as(it[i].t, it[i].t->dtype);
    if (!c) goto cleanup;
    size_t nbytes = (size_t)c->numel * (size_t)tide_dtype_size(c->dtype);
    size_t w = nbytes ? fwrite(c->data, 1, nbytes, fp) : 0;
    tide_tensor_release(c);
    if (w != nbytes) goto io_error;
  }
  if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) goto io_error;
  fd = -1;
  if (fclose(fp) != 0) { fp = NULL; goto io_error; }
  fp = NULL;
  if (rename(tmp, path) != 0) {
    tide_fail("safetensors save: cannot rename %s to %s: %s", tmp, path, strerror(errno));
    goto cleanup;
  }
  {
    /* make the rename itself durable; best effort, the file is already in place */
    char *dir = strdup(path);
    if (dir) {
      char *slash = strrchr(dir, '/');
      const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
      int dfd = open(d, O_RDONLY | O_CLOEXEC);
      if (dfd >= 0) { fsync(dfd); close(dfd); }
      free(dir);
    }
  }
  rc = 0;
  goto out;
io_error:
  tide_fail("safetensors save: writing %s failed: %s", tmp, errno ? strerror(errno) : "short write");
cleanup:
  if (fp) fclose(fp);
  unlink(tmp);
out:
  free(tmp);
  free(hdr);
  free(it);
  return rc;
}
