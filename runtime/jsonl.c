/* JSON Lines field extractor (tide_jsonl_*): one pass over a line holding
   one JSON object, keeping only the requested fields (or every top-level
   one). Unrequested values are validated but neither unescaped nor copied,
   so a long "content" that is not wanted costs one scan.

   A requested name with dots is a path, as datasets' flatten() names the
   fields of a nested struct: "answers.text" is the member "text" of the
   object "answers". A top-level key spelled "answers.text" (a dump of an
   already flattened dataset) is taken first; otherwise the path is followed
   through objects, each step the last member with that key (as json.c's
   lookup); a step that is absent or not an object makes the field missing.
   Below the top level only dot-free keys are steps. A name has at most
   JSONL_MAX_STEPS steps.

   The rules, where they differ from runtime/json.c's strict parser (which
   is for config files, where strictness catches mistakes; here a dump of
   millions of scraped lines must not lose a line to a harmless quirk):
   - Raw control characters (< 0x20) inside strings are accepted and kept as
     they are: many real dumps hold raw tabs and form feeds.
   - A lone surrogate escape (\uD800 without its low half, or a lone
     \uDC00) decodes to U+FFFD, the replacement character, as Python's
     errors="replace" would, rather than failing the line.
   - Numbers are checked against JSON's grammar and returned as their text;
     one beyond the double range (1e400) is not an error here.
   - Raw bytes that are not valid UTF-8 are kept as they are (as json.c).
   - A UTF-8 byte order mark at the start of the line is skipped (as json.c).
   - Repeated keys: with named fields the last occurrence wins (as json.c's
     lookup); with none named, every member is returned in order.
   - Nesting deeper than 512 levels (the object itself being level 1) is an
     error, as in json.c.
   Errors read "column C: expected X, got Y" (C in bytes, 1-based); the
   caller knows the file and line and adds them.

   Memory: every returned key and value is copied, NUL-terminated, into one
   buffer owned by the extractor, which is sized to the line's length before
   parsing: a decoded string is never longer than its literal, and each
   copied item is followed in the line by at least one byte it does not use
   (a quote, ',' or '}'), so the copies and their NULs fit in len + 1 bytes
   and pointers into the buffer stay put during a parse. With paths, values
   at one nesting depth are disjoint in the line but a requested "a" holds a
   requested "a.b", so each depth values are copied from gets its own
   len + 1 bytes: depth 0 (top-level names, and a dotted name's top-level
   spelling) and each name's number of dots. A key decoded as scratch at
   depth d lies outside every value copied at depth d or deeper, and some
   name is that deep (else the key would not be read), so it fits too. */
#include "tide.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSONL_MAX_DEPTH 512
#define JSONL_MAX_STEPS 16

typedef struct field {
  const char *key;
  int64_t key_len;
  int32_t kind;
  const char *val;
  int64_t val_len;
} field;

struct tide_jsonl {
  int32_t nreq;     /* named fields, 0 for all */
  char **req;       /* their names (copies) */
  int64_t *req_len;
  int32_t *first;   /* index of the first name equal to each (names may repeat) */
  int32_t depth;    /* the most dots in a name (0: top-level names only) */
  int32_t levels;   /* how many nesting depths values are copied from (see the top) */
  field *f;         /* results of the last parse */
  field *alt;       /* for names with dots: the value found by following the path */
  int32_t nf, capf;
  char *buf;        /* copies of keys and values */
  size_t bcap, blen;
};

typedef const unsigned char *cp;

typedef struct scan {
  cp line, end;
  tide_jsonl *x;
} scan;

/* errors ------------------------------------------------------------------- */

static int fail_col(const scan *s, cp at, const char *what) {
  char got[32];
  if (at >= s->end) snprintf(got, sizeof got, "the end of the line");
  else if (*at >= 0x20 && *at < 0x7f) snprintf(got, sizeof got, "'%c'", *at);
  else snprintf(got, sizeof got, "byte 0x%02x", *at);
  return tide_fail("column %lld: expected %s, got %s", (long long)(at - s->line) + 1, what, got);
}

/* scanning ------------------------------------------------------------------ */

static inline cp skip_ws(cp p, cp e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  return p;
}

/* The first '"' or '\\' in [p, e), or e: eight bytes at a time (the classic
   has-zero-byte test on the bytes xored with each target; the lowest flagged
   byte is always a true match, borrows only flag bytes above one). */
static inline cp find_special(cp p, cp e) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  const uint64_t quotes = ones * '"', slashes = ones * '\\';
  while (e - p >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    uint64_t a = v ^ quotes, b = v ^ slashes;
    uint64_t t = (((a - ones) & ~a) | ((b - ones) & ~b)) & highs;
    if (t) return p + (__builtin_ctzll(t) >> 3);
    p += 8;
  }
#endif
  while (p < e && *p != '"' && *p != '\\') p++;
  return p;
}

static inline int hexval(unsigned c) {
  if (c - '0' < 10) return (int)(c - '0');
  c |= 0x20;
  if (c - 'a' < 6) return (int)(c - 'a' + 10);
  return -1;
}

/* Four hex digits at p (p + 4 <= e checked by the caller) or -1. */
static inline int32_t hex4(cp p) {
  int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
  if ((a | b | c | d) < 0) return -1;
  return (a << 12) | (b << 8) | (c << 4) | d;
}

static inline char *put_utf8(char *o, uint32_t c) {
  if (c < 0x80) { *o++ = (char)c; }
  else if (c < 0x800) { *o++ = (char)(0xc0 | (c >> 6)); *o++ = (char)(0x80 | (c & 0x3f)); }
  else if (c < 0x10000) {
    *o++ = (char)(0xe0 | (c >> 12)); *o++ = (char)(0x80 | ((c >> 6) & 0x3f)); *o++ = (char)(0x80 | (c & 0x3f));
  } else {
    *o++ = (char)(0xf0 | (c >> 18)); *o++ = (char)(0x80 | ((c >> 12) & 0x3f));
    *o++ = (char)(0x80 | ((c >> 6) & 0x3f)); *o++ = (char)(0x80 | (c & 0x3f));
  }
  return o;
}

static const char escape_list[] = "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX";

/* Checks the string literal whose opening quote is at *pp and moves *pp past
   its closing quote; *plain says whether it held no escape. */
static int skip_string(const scan *s, cp *pp, int *plain) {
  cp p = *pp + 1, e = s->end;
  int esc = 0;
  for (;;) {
    p = find_special(p, e);
    if (p >= e) return fail_col(s, p, "a closing '\"' of the string");
    if (*p == '"') break;
    esc = 1;
    if (p + 1 >= e) return fail_col(s, p + 1, escape_list);
    switch (p[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': p += 2; break;
      case 'u':
        if (e - p < 6 || hex4(p + 2) < 0) return fail_col(s, p, "4 hex digits after \\u");
        p += 6;
        break;
      default: return fail_col(s, p + 1, escape_list);
    }
  }
  *pp = p + 1;
  if (plain) *plain = !esc;
  return 0;
}

/* Decodes the string literal at *pp into o (which has room: see the top),
   setting *olen and moving *pp past the closing quote; o gets a NUL. */
static int read_string(const scan *s, cp *pp, char *o, int64_t *olen) {
  cp p = *pp + 1, e = s->end;
  char *o0 = o;
  for (;;) {
    cp q = find_special(p, e);
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    p = q;
    if (p >= e) return fail_col(s, p, "a closing '\"' of the string");
    if (*p == '"') break;
    if (p + 1 >= e) return fail_col(s, p + 1, escape_list);
    switch (p[1]) {
      case '"': *o++ = '"'; p += 2; break;
      case '\\': *o++ = '\\'; p += 2; break;
      case '/': *o++ = '/'; p += 2; break;
      case 'b': *o++ = '\b'; p += 2; break;
      case 'f': *o++ = '\f'; p += 2; break;
      case 'n': *o++ = '\n'; p += 2; break;
      case 'r': *o++ = '\r'; p += 2; break;
      case 't': *o++ = '\t'; p += 2; break;
      case 'u': {
        int32_t c = e - p >= 6 ? hex4(p + 2) : -1;
        if (c < 0) return fail_col(s, p, "4 hex digits after \\u");
        p += 6;
        if (c >= 0xd800 && c <= 0xdbff) {
          int32_t lo = e - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
          if (lo >= 0xdc00 && lo <= 0xdfff) {
            p += 6;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
          } else {
            c = 0xfffd;  /* a lone high surrogate (what follows is read on its own) */
          }
        } else if (c >= 0xdc00 && c <= 0xdfff) {
          c = 0xfffd;    /* a lone low surrogate */
        }
        o = put_utf8(o, (uint32_t)c);
        break;
      }
      default: return fail_col(s, p + 1, escape_list);
    }
  }
  *o = 0;
  *olen = o - o0;
  *pp = p + 1;
  return 0;
}

static int skip_number(const scan *s, cp *pp) {
  cp p = *pp, e = s->end;
  if (p < e && *p == '-') p++;
  if (p >= e || *p < '0' || *p > '9') return fail_col(s, p, "a digit");
  if (*p == '0') {
    p++;
  } else {
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || *p < '0' || *p > '9') return fail_col(s, p, "a digit after the decimal point");
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || *p < '0' || *p > '9') return fail_col(s, p, "a digit in the exponent");
    while (p < e && *p >= '0' && *p <= '9') p++;
  }
  /* "01" and "1x": the number must end where a delimiter can follow */
  if (p < e && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' || *p == '+'))
    return fail_col(s, p, "',', '}' or ']' after a number (no leading zeros or stray signs)");
  *pp = p;
  return 0;
}

static int skip_literal(const scan *s, cp *pp, const char *word, size_t n, int32_t *kind, int32_t k) {
  cp p = *pp;
  if ((size_t)(s->end - p) < n || memcmp(p, word, n) != 0) {
    size_t i = 0;
    while (i < n && p + i < s->end && p[i] == (unsigned char)word[i]) i++;
    char what[16];
    snprintf(what, sizeof what, "'%c' of %s", word[i], word);
    return fail_col(s, p + i, what);
  }
  *pp = p + n;
  *kind = k;
  return 0;
}

static int skip_value(const scan *s, cp *pp, int depth, int32_t *kind);

/* An array or object at *pp (its opening bracket), nested depth deep. */
static int skip_container(const scan *s, cp *pp, int depth) {
  cp p = *pp, e = s->end;
  if (depth >= JSONL_MAX_DEPTH) return fail_col(s, p, "at most 512 levels of nesting");
  int obj = *p == '{';
  char close = obj ? '}' : ']';
  int32_t kind;
  p = skip_ws(p + 1, e);
  if (p < e && *p == close) { *pp = p + 1; return 0; }
  for (;;) {
    if (obj) {
      if (p >= e || *p != '"') return fail_col(s, p, "a string key");
      TIDE_TRY(skip_string(s, &p, NULL));
      p = skip_ws(p, e);
      if (p >= e || *p != ':') return fail_col(s, p, "':' after an object key");
      p = skip_ws(p + 1, e);
    }
    TIDE_TRY(skip_value(s, &p, depth + 1, &kind));
    p = skip_ws(p, e);
    if (p < e && *p == ',') {
      p = skip_ws(p + 1, e);
      if (p < e && *p == close) return fail_col(s, p, obj ? "a string key after ',' (no trailing comma)" : "a value after ',' (no trailing comma)");
      continue;
    }
    if (p < e && *p == close) { *pp = p + 1; return 0; }
    return fail_col(s, p, obj ? "',' or '}' after an object member" : "',' or ']' after an array element");
  }
}

/* Checks any value at *pp and moves past it, setting its kind. */
static int skip_value(const scan *s, cp *pp, int depth, int32_t *kind) {
  cp p = *pp;
  if (p >= s->end) return fail_col(s, p, "a value");
  switch (*p) {
    case '"': *kind = TIDE_JV_STRING; return skip_string(s, pp, NULL);
    case '{': case '[': *kind = TIDE_JV_RAW; return skip_container(s, pp, depth);
    case 't': return skip_literal(s, pp, "true", 4, kind, TIDE_JV_TRUE);
    case 'f': return skip_literal(s, pp, "false", 5, kind, TIDE_JV_FALSE);
    case 'n': return skip_literal(s, pp, "null", 4, kind, TIDE_JV_NULL);
    default:
      if (*p == '-' || (*p >= '0' && *p <= '9')) { *kind = TIDE_JV_NUMBER; return skip_number(s, pp); }
      return fail_col(s, p, "a value (a string, number, object, array, true, false or null)");
  }
}

/* Reads the value at *pp (a member of an object depth levels down, the line's
   object being 0) into f, copying its text into the buffer. */
static int read_value(const scan *s, cp *pp, int depth, field *f) {
  tide_jsonl *x = s->x;
  char *o = x->buf + x->blen;
  if (*pp < s->end && **pp == '"') {
    int64_t n;
    TIDE_TRY(read_string(s, pp, o, &n));
    f->kind = TIDE_JV_STRING;
    f->val = o;
    f->val_len = n;
    x->blen += (size_t)n + 1;
    return 0;
  }
  cp a = *pp;
  TIDE_TRY(skip_value(s, pp, depth + 1, &f->kind));
  if (f->kind == TIDE_JV_NUMBER || f->kind == TIDE_JV_RAW) {
    size_t n = (size_t)(*pp - a);
    memcpy(o, a, n);
    o[n] = 0;
    f->val = o;
    f->val_len = (int64_t)n;
    x->blen += n + 1;
  } else {
    f->val = NULL;
    f->val_len = 0;
  }
  return 0;
}

/* the extractor -------------------------------------------------------------- */

void tide_jsonl_free(tide_jsonl *x) {
  if (!x) return;
  for (int32_t i = 0; i < x->nreq; i++) free(x->req[i]);
  free(x->req);
  free(x->req_len);
  free(x->first);
  free(x->f);
  free(x->alt);
  free(x->buf);
  free(x);
}

int tide_jsonl_new(const char *const *fields, const int64_t *field_lens, int32_t nfields, tide_jsonl **out) {
  if (!out) return tide_fail("tide_jsonl_new: out is NULL");
  *out = NULL;
  if (nfields < 0) return tide_fail("tide_jsonl_new: nfields is %d (expected 0 or more)", (int)nfields);
  if (nfields > 0 && (!fields || !field_lens)) return tide_fail("tide_jsonl_new: fields or field_lens is NULL");
  tide_jsonl *x = calloc(1, sizeof *x);
  if (!x) return tide_fail("tide_jsonl_new: out of memory");
  uint32_t used = 0;  /* the depths named fields are copied from: bit d for d dots */
  if (nfields > 0) {
    x->req = calloc((size_t)nfields, sizeof *x->req);
    x->req_len = calloc((size_t)nfields, sizeof *x->req_len);
    x->first = calloc((size_t)nfields, sizeof *x->first);
    x->f = calloc((size_t)nfields, sizeof *x->f);
    x->alt = calloc((size_t)nfields, sizeof *x->alt);
    x->capf = nfields;
    if (!x->req || !x->req_len || !x->first || !x->f || !x->alt) { tide_jsonl_free(x); return tide_fail("tide_jsonl_new: out of memory"); }
    for (int32_t i = 0; i < nfields; i++) {
      if (!fields[i] || field_lens[i] < 0) {
        tide_jsonl_free(x);
        return tide_fail("tide_jsonl_new: field %d is NULL or has a negative length", (int)i);
      }
      x->req[i] = malloc((size_t)field_lens[i] + 1);
      if (!x->req[i]) { x->nreq = i; tide_jsonl_free(x); return tide_fail("tide_jsonl_new: out of memory"); }
      memcpy(x->req[i], fields[i], (size_t)field_lens[i]);
      x->req[i][field_lens[i]] = 0;
      x->req_len[i] = field_lens[i];
      x->nreq = i + 1;
      x->first[i] = i;
      for (int32_t j = 0; j < i; j++)
        if (x->req_len[j] == x->req_len[i] && memcmp(x->req[j], x->req[i], (size_t)x->req_len[i]) == 0) { x->first[i] = j; break; }
      x->f[i] = (field){x->req[i], x->req_len[i], TIDE_JV_MISSING, NULL, 0};
      int32_t dots = 0;
      for (int64_t j = 0; j < field_lens[i]; j++) dots += fields[i][j] == '.';
      if (dots >= JSONL_MAX_STEPS) {
        tide_jsonl_free(x);
        return tide_fail("tide_jsonl_new: field %d has %d dots; a path has at most %d steps", (int)i, (int)dots,
                         JSONL_MAX_STEPS);
      }
      if (dots > x->depth) x->depth = dots;
      used |= 1u << dots;
    }
  }
  x->levels = 0;
  for (uint32_t u = used | 1u; u; u &= u - 1) x->levels++;
  *out = x;
  return 0;
}

/* Which named field the key is (the first of equal names), or -1. */
static int32_t match(const tide_jsonl *x, const char *k, int64_t n) {
  for (int32_t i = 0; i < x->nreq; i++)
    if (x->req_len[i] == n && (n == 0 || (x->req[i][0] == k[0] && memcmp(x->req[i], k, (size_t)n) == 0))) return i;
  return -1;
}

/* Whether name i lies under the path that is the first plen bytes of name r
   (plen 0: the top level). */
static inline int under(const tide_jsonl *x, int32_t i, int32_t r, int64_t plen) {
  return x->req_len[i] >= plen && memcmp(x->req[i], x->req[r], (size_t)plen) == 0;
}

/* The step key (n bytes, no dot) at the path req[r][0..plen): *exact is the
   first name equal to path + key (-1 if none; only below the top level, the
   top level's exact names being match()'s), *deeper a name under path + key
   + '.' (-1 if none), whose path-found values are forgotten: this member is
   now the last with its key. */
static void route(tide_jsonl *x, int32_t r, int64_t plen, const char *k, int64_t n, int32_t *exact, int32_t *deeper) {
  *exact = *deeper = -1;
  if (memchr(k, '.', (size_t)n)) return;
  for (int32_t i = 0; i < x->nreq; i++) {
    if (!under(x, i, r, plen) || x->req_len[i] < plen + n || memcmp(x->req[i] + plen, k, (size_t)n) != 0) continue;
    if (x->req_len[i] == plen + n) {
      if (plen > 0 && *exact < 0) *exact = i;
    } else if (x->req[i][plen + n] == '.') {
      if (*deeper < 0) *deeper = i;
      x->alt[i] = (field){x->req[i], x->req_len[i], TIDE_JV_MISSING, NULL, 0};
    }
  }
}

static int parse_members(scan *s, cp *pp, int depth, int32_t r, int64_t plen);

/* The value at *pp of a member found by route(): read into its path slot
   (exact >= 0), followed into (deeper >= 0, when it is an object), or
   skipped; depth as read_value's. */
static int member_value(scan *s, cp *pp, int depth, int32_t exact, int32_t deeper, int64_t next_plen) {
  cp a = *pp;
  if (exact >= 0) TIDE_TRY(read_value(s, pp, depth, &s->x->alt[exact]));
  if (deeper >= 0 && a < s->end && *a == '{') {
    cp q = a;
    TIDE_TRY(parse_members(s, &q, depth + 1, deeper, next_plen));
    *pp = q;
    return 0;
  }
  if (exact < 0) {
    int32_t kind;
    TIDE_TRY(skip_value(s, pp, depth + 1, &kind));
  }
  return 0;
}

/* The key at *pp, moved past: decoded into the scratch space past the
   copies when it holds an escape (valid until the next copy). */
static int read_key(scan *s, cp *pp, const char **k, int64_t *n) {
  cp a = *pp;
  int plain;
  TIDE_TRY(skip_string(s, pp, &plain));
  if (plain) {
    *k = (const char *)a + 1;
    *n = (int64_t)(*pp - a) - 2;
    return 0;
  }
  char *o = s->x->buf + s->x->blen;
  TIDE_TRY(read_string(s, &a, o, n));
  *k = o;
  return 0;
}

/* The members of an object depth levels down (its '{' at *pp) on the path
   req[r][0..plen) + '.', whose named members go to the path slots; moves
   *pp past its '}'. */
static int parse_members(scan *s, cp *pp, int depth, int32_t r, int64_t plen) {
  tide_jsonl *x = s->x;
  cp p = *pp, e = s->end;
  if (depth >= JSONL_MAX_DEPTH) return fail_col(s, p, "at most 512 levels of nesting");
  p = skip_ws(p + 1, e);
  if (p < e && *p == '}') { *pp = p + 1; return 0; }
  for (;;) {
    if (p >= e || *p != '"') return fail_col(s, p, "a string key");
    const char *k;
    int64_t kn;
    TIDE_TRY(read_key(s, &p, &k, &kn));
    int32_t exact, deeper;
    route(x, r, plen, k, kn, &exact, &deeper);
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return fail_col(s, p, "':' after an object key");
    p = skip_ws(p + 1, e);
    TIDE_TRY(member_value(s, &p, depth, exact, deeper, plen + kn + 1));
    p = skip_ws(p, e);
    if (p < e && *p == ',') {
      p = skip_ws(p + 1, e);
      if (p < e && *p == '}') return fail_col(s, p, "a string key after ',' (no trailing comma)");
      continue;
    }
    if (p < e && *p == '}') { *pp = p + 1; return 0; }
    return fail_col(s, p, "',' or '}' after an object member");
  }
}

static int add_field(tide_jsonl *x) {
  if (x->nf < x->capf) return 0;
  int32_t c = x->capf ? x->capf * 2 : 16;
  field *f = realloc(x->f, (size_t)c * sizeof *f);
  if (!f) return tide_fail("tide_jsonl_parse: out of memory");
  x->f = f;
  x->capf = c;
  return 0;
}

/* The members of the line's object, whose '{' is at p. */
static int parse_object(scan *s, cp p) {
  tide_jsonl *x = s->x;
  cp e = s->end;
  p = skip_ws(p + 1, e);
  if (p < e && *p == '}') return skip_ws(p + 1, e) < e ? fail_col(s, skip_ws(p + 1, e), "the end of the line after the object") : 0;
  for (;;) {
    if (p >= e || *p != '"') return fail_col(s, p, "a string key");
    field *f = NULL;
    int32_t deeper = -1, exact;
    int64_t kn = 0;
    if (x->nreq == 0) {
      TIDE_TRY(add_field(x));
      f = &x->f[x->nf++];
      char *o = x->buf + x->blen;
      TIDE_TRY(read_string(s, &p, o, &f->key_len));
      f->key = o;
      x->blen += (size_t)f->key_len + 1;
    } else {
      const char *k;
      TIDE_TRY(read_key(s, &p, &k, &kn));
      int32_t i = match(x, k, kn);
      if (i >= 0) f = &x->f[i];
      if (x->depth > 0) route(x, 0, 0, k, kn, &exact, &deeper);
    }
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return fail_col(s, p, "':' after an object key");
    p = skip_ws(p + 1, e);
    if (f) {
      cp a = p;
      TIDE_TRY(read_value(s, &p, 0, f));
      if (deeper >= 0 && *a == '{') TIDE_TRY(parse_members(s, &a, 1, deeper, kn + 1));
    } else if (deeper >= 0) {
      TIDE_TRY(member_value(s, &p, 0, -1, deeper, kn + 1));
    } else {
      int32_t kind;
      TIDE_TRY(skip_value(s, &p, 1, &kind));
    }
    p = skip_ws(p, e);
    if (p < e && *p == ',') {
      p = skip_ws(p + 1, e);
      if (p < e && *p == '}') return fail_col(s, p, "a string key after ',' (no trailing comma)");
      continue;
    }
    if (p < e && *p == '}') break;
    return fail_col(s, p, "',' or '}' after an object member");
  }
  p = skip_ws(p + 1, e);
  if (p < e) return fail_col(s, p, "the end of the line after the object");
  return 0;
}

static void reset_fields(tide_jsonl *x) {
  x->nf = 0;
  for (int32_t i = 0; i < x->nreq; i++) {
    x->f[i] = (field){x->req[i], x->req_len[i], TIDE_JV_MISSING, NULL, 0};
    x->alt[i] = x->f[i];
  }
}

int tide_jsonl_parse(tide_jsonl *x, const char *line, int64_t len) {
  if (!x) return tide_fail("tide_jsonl_parse: extractor is NULL");
  x->blen = 0;
  reset_fields(x);
  if (len < 0 || (!line && len > 0)) return tide_fail("tide_jsonl_parse: bad line (NULL or negative length)");
  /* len + 1 per depth copied from (see the top) */
  uint64_t need = ((uint64_t)len + 1) * (uint64_t)x->levels + 16;
  if ((uint64_t)len > ((uint64_t)1 << 56) || need > SIZE_MAX / 2)
    return tide_fail("tide_jsonl_parse: a line of %lld bytes is too long", (long long)len);
  if (need > x->bcap) {
    size_t c = x->bcap ? x->bcap : 4096;
    while (c < need) c *= 2;
    char *b = realloc(x->buf, c);
    if (!b) return tide_fail("tide_jsonl_parse: out of memory for a line of %lld bytes", (long long)len);
    x->buf = b;
    x->bcap = c;
  }
  scan s = {(cp)line, (cp)line + len, x};
  cp p = s.line;
  if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) p += 3;
  p = skip_ws(p, s.end);
  if (p >= s.end) return 0;
  if (*p != '{') return fail_col(&s, p, "an object ('{')");
  if (parse_object(&s, p)) {
    reset_fields(x);  /* nothing half-parsed is visible after an error */
    return -1;
  }
  for (int32_t i = 0; i < x->nreq; i++)
    if (x->first[i] == i && x->f[i].kind == TIDE_JV_MISSING && x->alt[i].kind != TIDE_JV_MISSING) x->f[i] = x->alt[i];
  for (int32_t i = 0; i < x->nreq; i++)
    if (x->first[i] != i) {
      field f = x->f[x->first[i]];
      f.key = x->req[i];
      x->f[i] = f;
    }
  if (x->nreq > 0) x->nf = x->nreq;
  return 1;
}

int32_t tide_jsonl_count(const tide_jsonl *x) {
  if (!x) return 0;
  return x->nreq > 0 ? x->nreq : x->nf;
}

int tide_jsonl_field(const tide_jsonl *x, int32_t i, const char **key, int64_t *key_len, int32_t *kind, const char **val,
                     int64_t *val_len) {
  if (key) *key = NULL;
  if (key_len) *key_len = 0;
  if (kind) *kind = TIDE_JV_MISSING;
  if (val) *val = NULL;
  if (val_len) *val_len = 0;
  if (!x) return tide_fail("tide_jsonl_field: extractor is NULL");
  int32_t n = tide_jsonl_count(x);
  if (i < 0 || i >= n) return tide_fail("tide_jsonl_field: field %d is out of range (the line has %d)", (int)i, (int)n);
  const field *f = &x->f[i];
  if (key) *key = f->key;
  if (key_len) *key_len = f->key_len;
  if (kind) *kind = f->kind;
  if (val) *val = f->val;
  if (val_len) *val_len = f->val_len;
  return 0;
}
