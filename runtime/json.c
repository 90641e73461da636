/* A strict RFC 8259 parser into a flat node array (rules in json.h). One
   pass, recursive descent bounded by TIDE_JSON_MAX_DEPTH. Containers keep
   their children as a contiguous run of node indices in `kids` (objects as
   key, value pairs), written when the container closes, so child i is one
   array read and no per-node allocation happens. */
#include "json.h"
#include "error.h"
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NODE_INT = 1, NODE_DUP = 2 };
/* objects this large get a hash index; smaller ones are searched linearly */
#define HASH_MIN_MEMBERS 8

typedef struct node {
  uint8_t type;
  uint8_t flags;  /* NODE_INT for numbers, NODE_DUP for objects */
  uint8_t hbits;  /* objects: log2 of hash slots, 0 without an index */
  union {
    struct { double d; int64_t i; } num;
    struct { int64_t off, len; } str;              /* bytes in pool */
    struct { int64_t first, count, hash; } box;   /* kids[first..], count members/elements */
  } u;
} node;

struct tide_json {
  node *nodes;
  int64_t n_nodes, cap_nodes;
  int64_t *kids;   /* children of containers, in runs */
  int64_t n_kids, cap_kids;
  int64_t *hash;   /* object indexes: member index + 1, 0 = empty slot */
  int64_t n_hash, cap_hash;
  char *pool;      /* decoded strings, each followed by a NUL */
  int64_t n_pool;
};

typedef struct parser {
  const unsigned char *start, *p, *end;
  tide_json *doc;
  int64_t *stack;  /* children of the containers being parsed */
  int64_t n_stack, cap_stack;
} parser;

/* errors ------------------------------------------------------------------- */

static int fail_at(const parser *ps, const unsigned char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_at(const parser *ps, const unsigned char *at, const char *fmt, ...) {
  long long line = 1;
  const unsigned char *bol = ps->start;
  for (const unsigned char *q = ps->start; q < at; q++)
    if (*q == '\n') { line++; bol = q + 1; }
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tide_fail("json: line %lld, column %lld: %s", line, (long long)(at - bol) + 1, msg);
}

/* What the parser found at q, for "expected X, got Y" messages. */
static const char *got(const parser *ps, const unsigned char *q, char *buf, size_t cap) {
  if (q >= ps->end) return "end of input";
  if (*q >= 0x20 && *q < 0x7f) snprintf(buf, cap, "'%c'", *q);
  else snprintf(buf, cap, "byte 0x%02x", *q);
  return buf;
}

static int oom(void) { return tide_fail("json: out of memory"); }

/* growable arrays ------------------------------------------------------------- */

static int grow(void **arr, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 0;
  int64_t n = *cap ? *cap : 64;
  while (n < need) n *= 2;
  void *q = realloc(*arr, (size_t)n * elem);
  if (!q) return oom();
  *arr = q;
  *cap = n;
  return 0;
}

static int64_t new_node(parser *ps, int type) {
  tide_json *d = ps->doc;
  if (grow((void **)&d->nodes, &d->cap_nodes, d->n_nodes + 1, sizeof(node))) return -1;
  node *n = &d->nodes[d->n_nodes];
  memset(n, 0, sizeof *n);
  n->type = (uint8_t)type;
  return d->n_nodes++;
}

static int push(parser *ps, int64_t v) {
  if (ps->n_stack == ps->cap_stack && grow((void **)&ps->stack, &ps->cap_stack, ps->n_stack + 1, sizeof(int64_t))) return -1;
  ps->stack[ps->n_stack++] = v;
  return 0;
}

/* keys and lookups --------------------------------------------------------------- */

/* FNV-1a, seeded with the document's address so that keys crafted to
   collide in one process do not in general collide in another (lookups give
   the same answers whatever the seed). */
static uint64_t hash_bytes(const tide_json *d, const char *s, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)(uintptr_t)d * 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static const node *key_node(const tide_json *d, const node *obj, int64_t i) {
  return &d->nodes[d->kids[obj->u.box.first + 2 * i]];
}

static int key_is(const tide_json *d, const node *k, const char *key, size_t len) {
  return (size_t)k->u.str.len == len && memcmp(d->pool + k->u.str.off, key, len) == 0;
}

/* Builds the hash index of a large object (later duplicates take the slot,
   so lookups find the last) and flags objects with repeated keys. */
static int index_object(parser *ps, int64_t at) {
  tide_json *d = ps->doc;
  node *obj = &d->nodes[at];
  int64_t n = obj->u.box.count;
  if (n < HASH_MIN_MEMBERS) {
    for (int64_t i = 1; i < n && !(obj->flags & NODE_DUP); i++) {
      const node *ki = key_node(d, obj, i);
      for (int64_t j = 0; j < i; j++)
        if (key_is(d, key_node(d, obj, j), d->pool + ki->u.str.off, (size_t)ki->u.str.len)) { obj->flags |= NODE_DUP; break; }
    }
    return 0;
  }
  int bits = 4;
  while (((int64_t)1 << bits) < 2 * n) bits++;
  int64_t slots = (int64_t)1 << bits;
  if (grow((void **)&d->hash, &d->cap_hash, d->n_hash + slots, sizeof(int64_t))) return -1;
  obj = &d->nodes[at];
  int64_t *h = d->hash + d->n_hash;
  memset(h, 0, (size_t)slots * sizeof *h);
  obj->u.box.hash = d->n_hash;
  obj->hbits = (uint8_t)bits;
  d->n_hash += slots;
  for (int64_t i = 0; i < n; i++) {
    const node *k = key_node(d, obj, i);
    const char *ks = d->pool + k->u.str.off;
    uint64_t s = hash_bytes(d, ks, k->u.str.len) & (uint64_t)(slots - 1);
    for (;; s = (s + 1) & (uint64_t)(slots - 1)) {
      if (h[s] == 0) { h[s] = i + 1; break; }
      if (key_is(d, key_node(d, obj, h[s] - 1), ks, (size_t)k->u.str.len)) {
        obj->flags |= NODE_DUP;
        h[s] = i + 1;
        break;
      }
    }
  }
  return 0;
}

/* Moves the children pushed since `base` into kids as the run of node `at`. */
static int close_container(parser *ps, int64_t at, int64_t base) {
  tide_json *d = ps->doc;
  int64_t n = ps->n_stack - base;
  if (grow((void **)&d->kids, &d->cap_kids, d->n_kids + n, sizeof(int64_t))) return -1;
  if (n) memcpy(d->kids + d->n_kids, ps->stack + base, (size_t)n * sizeof(int64_t));
  node *c = &d->nodes[at];
  c->u.box.first = d->n_kids;
  c->u.box.count = c->type == TIDE_JSON_OBJECT ? n / 2 : n;
  d->n_kids += n;
  ps->n_stack = base;
  return c->type == TIDE_JSON_OBJECT ? index_object(ps, at) : 0;
}

/* scanning ------------------------------------------------------------------------- */

static void skip_ws(parser *ps) {
  const unsigned char *p = ps->p, *e = ps->end;
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  ps->p = p;
}

static int hex4(const unsigned char *p, const unsigned char *e, uint32_t *out) {
  if (e - p < 4) return -1;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  *out = v;
  return 0;
}

static char *put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xc0 | (cp >> 6));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xe0 | (cp >> 12));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  } else {
    *o++ = (char)(0xf0 | (cp >> 18));
    *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char)(0x80 | (cp & 0x3f));
  }
  return o;
}

/* Parses the string at ps->p (a '"') into the pool. A decoded string is never
   longer than its literal, so the pool (input length + 1) cannot overflow. */
static int64_t parse_string(parser *ps) {
  const unsigned char *open = ps->p, *s = ps->p + 1, *e = ps->end;
  tide_json *d = ps->doc;
  char *o0 = d->pool + d->n_pool, *o = o0;
  for (;;) {
    const unsigned char *r = s;
    while (r < e && *r != '"' && *r != '\\' && *r >= 0x20) r++;
    memcpy(o, s, (size_t)(r - s));
    o += r - s;
    s = r;
    if (s >= e) return fail_at(ps, open, "unterminated string (expected a closing '\"')");
    if (*s == '"') break;
    if (*s < 0x20) return fail_at(ps, s, "control character 0x%02x inside a string (it must be escaped)", *s);
    const unsigned char *esc = s++;
    if (s >= e) return fail_at(ps, open, "unterminated string (expected a closing '\"')");
    switch (*s++) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        uint32_t cp, lo;
        if (hex4(s, e, &cp)) return fail_at(ps, esc, "expected 4 hex digits after \\u");
        s += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff)
          return fail_at(ps, esc, "lone low surrogate \\u%04X (surrogates must come in high, low pairs)", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (e - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, e, &lo) || lo < 0xdc00 || lo > 0xdfff)
            return fail_at(ps, esc, "lone high surrogate \\u%04X (expected a \\uDC00-\\uDFFF escape after it)", cp);
          s += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        o = put_utf8(o, cp);
        break;
      }
      default: {
        char b[16];
        return fail_at(ps, esc, "invalid escape \\%s in a string (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                       got(ps, s - 1, b, sizeof b));
      }
    }
  }
  *o = 0;
  int64_t at = new_node(ps, TIDE_JSON_STRING);
  if (at < 0) return -1;
  d->nodes[at].u.str.off = d->n_pool;
  d->nodes[at].u.str.len = o - o0;
  d->n_pool += (o - o0) + 1;
  ps->p = s + 1;
  return at;
}

static const double pow10_exact[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* strtod on a NUL-terminated copy, with '.' swapped for the locale's decimal
   point (strtod follows LC_NUMERIC; JSON does not). */
static int slow_double(parser *ps, const unsigned char *a, const unsigned char *b, double *out) {
  size_t n = (size_t)(b - a);
  const char *dp = localeconv()->decimal_point;
  if (!dp || !dp[0]) dp = ".";
  size_t dl = strlen(dp), need = n * dl + 1;
  char small[128], *buf = need <= sizeof small ? small : malloc(need);
  if (!buf) return oom();
  size_t k = 0;
  for (const unsigned char *q = a; q < b; q++) {
    if (*q == '.') { memcpy(buf + k, dp, dl); k += dl; }
    else buf[k++] = (char)*q;
  }
  buf[k] = 0;
  errno = 0;
  double v = strtod(buf, NULL);
  int range = errno == ERANGE && (v > 1.0 || v < -1.0);
  if (buf != small) free(buf);
  if (range)
    return fail_at(ps, a, "number %.*s%s is out of the range of a double (JSON has no infinity)",
                   (int)(n > 40 ? 40 : n), (const char *)a, n > 40 ? "..." : "");
  *out = v;
  return 0;
}

static int64_t parse_number(parser *ps) {
  const unsigned char *a = ps->p, *p = ps->p, *e = ps->end;
  char b[16];
  int neg = 0, is_int = 1;
  if (*p == '-') { neg = 1; p++; }
  if (p >= e || *p < '0' || *p > '9') return fail_at(ps, p, "expected a digit after '-', got %s", got(ps, p, b, sizeof b));
  uint64_t m = 0;
  int sig = 0;          /* significant digits accumulated in m */
  int64_t e10 = 0;      /* decimal exponent applied to m */
  int exact = 1;        /* m holds every significant digit */
  if (*p == '0') {
    p++;
    if (p < e && *p >= '0' && *p <= '9') return fail_at(ps, a, "leading zeros are not allowed in numbers");
  } else {
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
      if (sig < 19) { m = m * 10 + (uint64_t)(*p - '0'); sig++; }
      else { e10++; exact = 0; }
    }
  }
  if (p < e && *p == '.') {
    is_int = 0;
    p++;
    if (p >= e || *p < '0' || *p > '9') return fail_at(ps, p, "expected a digit after the decimal point, got %s", got(ps, p, b, sizeof b));
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
      if (m == 0 && *p == '0') { e10--; continue; }
      if (sig < 19) { m = m * 10 + (uint64_t)(*p - '0'); sig++; e10--; }
      else exact = 0;
    }
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    is_int = 0;
    p++;
    int eneg = 0;
    if (p < e && (*p == '+' || *p == '-')) { eneg = *p == '-'; p++; }
    if (p >= e || *p < '0' || *p > '9') return fail_at(ps, p, "expected a digit in the exponent, got %s", got(ps, p, b, sizeof b));
    int64_t x = 0;
    for (; p < e && *p >= '0' && *p <= '9'; p++)
      if (x < 100000000) x = x * 10 + (*p - '0');
    e10 += eneg ? -x : x;
  }
  int64_t at = new_node(ps, TIDE_JSON_NUMBER);
  if (at < 0) return -1;
  /* exact inputs and one IEEE operation give the correctly rounded double
     (Clinger's fast path); anything else goes to strtod */
  double v = 0;
  if (exact && (m == 0 || e10 == 0)) {
    v = (double)m;
    if (neg) v = -v;
  } else if (exact && m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
    v = e10 < 0 ? (double)m / pow10_exact[-e10] : (double)m * pow10_exact[e10];
    if (neg) v = -v;
  } else if (slow_double(ps, a, p, &v)) {
    return -1;
  }
  node *n = &ps->doc->nodes[at];
  n->u.num.d = v;
  if (is_int && exact && (m <= (uint64_t)INT64_MAX || (neg && m == (uint64_t)INT64_MAX + 1))) {
    n->flags |= NODE_INT;
    n->u.num.i = neg ? (int64_t)(0 - m) : (int64_t)m;
  }
  ps->p = p;
  return at;
}

static int64_t parse_value(parser *ps, int depth);

static int64_t parse_container(parser *ps, int depth, int type) {
  const unsigned char *open = ps->p;
  char b[16];
  if (depth >= TIDE_JSON_MAX_DEPTH) return fail_at(ps, open, "nesting deeper than %d levels", TIDE_JSON_MAX_DEPTH);
  int64_t at = new_node(ps, type), base = ps->n_stack;
  if (at < 0) return -1;
  char close = type == TIDE_JSON_OBJECT ? '}' : ']';
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return close_container(ps, at, base) ? -1 : at;
  }
  for (;;) {
    if (type == TIDE_JSON_OBJECT) {
      if (ps->p >= ps->end || *ps->p != '"') {
        if (ps->n_stack == base)
          return fail_at(ps, ps->p, "expected a string key or '}' in an object, got %s", got(ps, ps->p, b, sizeof b));
        return fail_at(ps, ps->p, "expected a string key after ',' in an object, got %s", got(ps, ps->p, b, sizeof b));
      }
      int64_t k = parse_string(ps);
      if (k < 0 || push(ps, k)) return -1;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':')
        return fail_at(ps, ps->p, "expected ':' after an object key, got %s", got(ps, ps->p, b, sizeof b));
      ps->p++;
      skip_ws(ps);
    }
    int64_t v = parse_value(ps, depth + 1);
    if (v < 0 || push(ps, v)) return -1;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == close)
        return fail_at(ps, ps->p, "trailing comma before '%c' (JSON does not allow one)", close);
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      return close_container(ps, at, base) ? -1 : at;
    }
    return fail_at(ps, ps->p, "expected ',' or '%c' after %s, got %s", close,
                   type == TIDE_JSON_OBJECT ? "an object member" : "an array element", got(ps, ps->p, b, sizeof b));
  }
}

static int64_t parse_literal(parser *ps, const char *word, int type) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return fail_at(ps, ps->p, "invalid literal (expected %s)", word);
  ps->p += n;
  return new_node(ps, type);
}

static int64_t parse_value(parser *ps, int depth) {
  char b[16];
  if (ps->p >= ps->end) return fail_at(ps, ps->p, "expected a JSON value, got end of input");
  switch (*ps->p) {
    case '{': return parse_container(ps, depth, TIDE_JSON_OBJECT);
    case '[': return parse_container(ps, depth, TIDE_JSON_ARRAY);
    case '"': return parse_string(ps);
    case 't': return parse_literal(ps, "true", TIDE_JSON_TRUE);
    case 'f': return parse_literal(ps, "false", TIDE_JSON_FALSE);
    case 'n': return parse_literal(ps, "null", TIDE_JSON_NULL);
    default:
      if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps);
      return fail_at(ps, ps->p, "expected a JSON value, got %s", got(ps, ps->p, b, sizeof b));
  }
}

/* public ------------------------------------------------------------------------------ */

void tide_json_free(tide_json *doc) {
  if (!doc) return;
  free(doc->nodes);
  free(doc->kids);
  free(doc->hash);
  free(doc->pool);
  free(doc);
}

int tide_json_parse(const char *text, int64_t len, tide_json **out) {
  if (!out) return tide_fail("json: no output pointer given");
  *out = NULL;
  if (len < 0) return tide_fail("json: negative length %lld", (long long)len);
  if (!text && len > 0) return tide_fail("json: no text given (NULL with length %lld)", (long long)len);
  if ((uint64_t)len >= SIZE_MAX / 2) return tide_fail("json: input of %lld bytes is too large", (long long)len);
  tide_json *d = calloc(1, sizeof *d);
  if (!d) return oom();
  d->pool = malloc((size_t)len + 1);
  if (!d->pool) { free(d); return oom(); }
  const unsigned char *s = (const unsigned char *)(text ? text : "");
  parser ps = {s, s, s + len, d, NULL, 0, 0};
  if (len >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) ps.p += 3;  /* UTF-8 BOM */
  skip_ws(&ps);
  int64_t root = parse_value(&ps, 0);
  if (root >= 0) {
    skip_ws(&ps);
    if (ps.p < ps.end) {
      char b[16];
      root = fail_at(&ps, ps.p, "unexpected %s after the JSON value (expected end of input)", got(&ps, ps.p, b, sizeof b));
    }
  }
  free(ps.stack);
  if (root < 0) {
    tide_json_free(d);
    return -1;
  }
  *out = d;
  return 0;
}

static const node *get(const tide_json *doc, int64_t i) {
  return doc && i >= 0 && i < doc->n_nodes ? &doc->nodes[i] : NULL;
}

int32_t tide_json_type(const tide_json *doc, int64_t i) {
  const node *n = get(doc, i);
  return n ? n->type : -1;
}

double tide_json_number(const tide_json *doc, int64_t i) {
  const node *n = get(doc, i);
  return n && n->type == TIDE_JSON_NUMBER ? n->u.num.d : NAN;
}

int tide_json_int64(const tide_json *doc, int64_t i, int64_t *out) {
  const node *n = get(doc, i);
  if (!n || n->type != TIDE_JSON_NUMBER || !(n->flags & NODE_INT)) return 0;
  *out = n->u.num.i;
  return 1;
}

const char *tide_json_string(const tide_json *doc, int64_t i, int64_t *len) {
  const node *n = get(doc, i);
  if (!n || n->type != TIDE_JSON_STRING) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = n->u.str.len;
  return doc->pool + n->u.str.off;
}

int64_t tide_json_length(const tide_json *doc, int64_t i) {
  const node *n = get(doc, i);
  return n && (n->type == TIDE_JSON_ARRAY || n->type == TIDE_JSON_OBJECT) ? n->u.box.count : 0;
}

int64_t tide_json_child(const tide_json *doc, int64_t i, int64_t k) {
  const node *n = get(doc, i);
  if (!n || k < 0 || (n->type != TIDE_JSON_ARRAY && n->type != TIDE_JSON_OBJECT) || k >= n->u.box.count) return -1;
  return n->type == TIDE_JSON_ARRAY ? doc->kids[n->u.box.first + k] : doc->kids[n->u.box.first + 2 * k + 1];
}

const char *tide_json_key(const tide_json *doc, int64_t i, int64_t k, int64_t *len) {
  const node *n = get(doc, i);
  if (!n || n->type != TIDE_JSON_OBJECT || k < 0 || k >= n->u.box.count) {
    if (len) *len = 0;
    return NULL;
  }
  const node *key = key_node(doc, n, k);
  if (len) *len = key->u.str.len;
  return doc->pool + key->u.str.off;
}

size_t tide_json_strlen(const char *key) { return key ? strlen(key) : 0; }

int64_t tide_json_find(const tide_json *doc, int64_t obj, const char *key, size_t keylen) {
  const node *n = get(doc, obj);
  if (!n || n->type != TIDE_JSON_OBJECT || (!key && keylen)) return -1;
  if (!key) key = "";
  if (n->hbits) {
    const int64_t *h = doc->hash + n->u.box.hash;
    uint64_t mask = ((uint64_t)1 << n->hbits) - 1;
    for (uint64_t s = hash_bytes(doc, key, (int64_t)keylen) & mask; h[s]; s = (s + 1) & mask)
      if (key_is(doc, key_node(doc, n, h[s] - 1), key, keylen)) return doc->kids[n->u.box.first + 2 * (h[s] - 1) + 1];
    return -1;
  }
  for (int64_t k = n->u.box.count - 1; k >= 0; k--)
    if (key_is(doc, key_node(doc, n, k), key, keylen)) return doc->kids[n->u.box.first + 2 * k + 1];
  return -1;
}

int64_t tide_json_get(const tide_json *doc, int64_t obj, const char *key) {
  return tide_json_find(doc, obj, key, tide_json_strlen(key));
}

int64_t tide_json_dup_member(const tide_json *doc, int64_t obj) {
  const node *n = get(doc, obj);
  if (!n || n->type != TIDE_JSON_OBJECT || !(n->flags & NODE_DUP)) return -1;
  int64_t count = n->u.box.count;
  if (!n->hbits) {
    for (int64_t i = 1; i < count; i++) {
      const node *ki = key_node(doc, n, i);
      for (int64_t j = 0; j < i; j++)
        if (key_is(doc, key_node(doc, n, j), doc->pool + ki->u.str.off, (size_t)ki->u.str.len)) return i;
    }
    return -1;
  }
  /* a scratch index where the first occurrence wins keeps this O(n) */
  uint64_t mask = ((uint64_t)1 << n->hbits) - 1;
  int64_t *h = calloc(mask + 1, sizeof *h);
  if (!h) return count - 1;  /* out of memory: still report a repeat */
  int64_t found = -1;
  for (int64_t i = 0; i < count && found < 0; i++) {
    const node *ki = key_node(doc, n, i);
    const char *ks = doc->pool + ki->u.str.off;
    for (uint64_t s = hash_bytes(doc, ks, ki->u.str.len) & mask;; s = (s + 1) & mask) {
      if (h[s] == 0) { h[s] = i + 1; break; }
      if (key_is(doc, key_node(doc, n, h[s] - 1), ks, (size_t)ki->u.str.len)) { found = i; break; }
    }
  }
  free(h);
  return found;
}

int tide_json_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  size_t need = *len + 6 * n + 3;
  if (need > *cap) {
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*buf, c);
    if (!q) return oom();
    *buf = q;
    *cap = c;
  }
  char *o = *buf + *len;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
    else if (c >= 0x20) *o++ = (char)c;
    else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
    else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
    else if (c == '\r') { *o++ = '\\'; *o++ = 'r'; }
    else if (c == '\b') { *o++ = '\\'; *o++ = 'b'; }
    else if (c == '\f') { *o++ = '\\'; *o++ = 'f'; }
    else { o += sprintf(o, "\\u%04x", c); }
  }
  *o++ = '"';
  *o = 0;
  *len = (size_t)(o - *buf);
  return 0;
}
