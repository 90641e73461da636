/* Byte-level BPE: loading, encoding, decoding. See bpe.h. */
#define _GNU_SOURCE  /* memmem */
#include "bpe.h"
#include "alloc.h"
#include "error.h"
#include "json.h"
#include "pretokenize.h"
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint32_t off, len; } span;

struct tide_bpe {
  int64_t nids;            /* largest id + 1 */
  span *tok;               /* per id: byte-mapped string in arena (len UINT32_MAX: no token) */
  span *raw;               /* per id: the bytes it decodes to, in arena */
  char *arena;
  size_t arena_len, arena_cap;
  int32_t *shash;          /* byte-mapped string -> id, open addressing, -1 empty */
  uint64_t smask;
  struct pslot { uint64_t key; int32_t rank, nid; } *pair;
                           /* (left id << 32 | right id) -> merge rank and merged id, open
                              addressing, one slot per cache line fetch; rank -1: empty */
  uint64_t pmask;
  int32_t byte_id[256];
  int32_t *mleft, *mright; /* the distinct merges in rank order, for saving */
  int64_t nmerges;
  int32_t nadded;
  int32_t *added_id;
  uint8_t *added_special;
  struct bslot { int32_t rank, nid; } *bpair;
                           /* the merge of bytes (a, b) at [a << 8 | b] (rank INT32_MAX: none):
                              a piece's first pairs are always two bytes, and this dense
                              512 KB table answers them without the hash table's misses */
  struct work *pool;       /* encode scratch and piece memos, kept between calls */
  atomic_int *pool_busy;   /* per pool entry: 1 while a call uses it */
  int64_t accounted;       /* bytes reported to the engine's memory count (tide_mem_account) */
};

/* Encoders running at once that get a memo of their own; more share none. */
#define POOL_SIZE 64

#define NO_TOKEN UINT32_MAX

static int pool_new(tide_bpe *t);
static void pool_free(tide_bpe *t);

uint32_t tide_bpe_byte_char(unsigned b) {
  /* printable Latin-1 bytes keep their code point; the other 68 are numbered
     from U+0100 in byte order */
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  uint32_t k = 0;
  for (unsigned c = 0; c < b; c++)
    if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) k++;
  return 256 + k;
}

/* The byte a code point stands for under bytes_to_unicode, -1 if none. */
static int char_byte(uint32_t cp) {
  if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
  if (cp < 256 || cp >= 256 + 68) return -1;
  uint32_t k = 0;
  for (unsigned c = 0; c < 256; c++)
    if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
      if (k++ == cp - 256) return (int)c;
  return -1;
}

static int put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k) {
  k *= 0x9E3779B97F4A7C15ull;
  return k ^ (k >> 31);
}

static int arena_add(tide_bpe *t, const char *s, size_t n, span *out) {
  if (t->arena_len + n > UINT32_MAX - 1) return tide_fail("tokenizer: vocabulary strings exceed 4 GiB");
  if (t->arena_len + n > t->arena_cap) {
    size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
    while (cap < t->arena_len + n) cap *= 2;
    char *a = realloc(t->arena, cap);
    if (!a) return tide_fail("tokenizer: out of memory");
    t->arena = a;
    t->arena_cap = cap;
  }
  if (n) memcpy(t->arena + t->arena_len, s, n);
  out->off = (uint32_t)t->arena_len;
  out->len = (uint32_t)n;
  t->arena_len += n;
  return 0;
}

int64_t tide_bpe_token_to_id(const tide_bpe *t, const char *s, int64_t len) {
  if (!t || !s || len < 0 || !t->shash) return -1;
  /* at most one pass over the table: a full table (which sizing prevents)
     must not turn a miss into an endless probe */
  uint64_t h = hash_bytes(s, (size_t)len) & t->smask;
  for (uint64_t probes = 0; probes <= t->smask; probes++, h = (h + 1) & t->smask) {
    int32_t id = t->shash[h];
    if (id < 0) return -1;
    if (t->tok[id].len == (uint64_t)len && memcmp(t->arena + t->tok[id].off, s, (size_t)len) == 0) return id;
  }
  return -1;
}

/* Registers string s (byte-mapped form) as token id; the tables are sized
   beforehand. The same string again under the same id is no change; under
   another id, or another string under a taken id, is an error. */
static int add_token(tide_bpe *t, const char *s, size_t n, int64_t id, const char *where) {
  if (id < 0 || id >= t->nids) return tide_fail("%s: token id %lld is out of range", where, (long long)id);
  if (t->tok[id].len != NO_TOKEN) {
    span o = t->tok[id];
    if (o.len == n && memcmp(t->arena + o.off, s, n) == 0) return 0;
    return tide_fail("%s: id %lld is given to two tokens ('%.*s' and '%.*s')", where, (long long)id,
                     (int)(o.len > 40 ? 40 : o.len), t->arena + o.off, (int)(n > 40 ? 40 : n), s);
  }
  int64_t had = tide_bpe_token_to_id(t, s, (int64_t)n);
  if (had >= 0)
    return tide_fail("%s: token '%.*s' is given two ids (%lld and %lld)", where, (int)(n > 40 ? 40 : n), s,
                     (long long)had, (long long)id);
  uint64_t h = hash_bytes(s, n) & t->smask, probes = 0;
  while (t->shash[h] >= 0 && probes++ <= t->smask) h = (h + 1) & t->smask;
  if (t->shash[h] >= 0) return tide_fail("%s: tokenizer string table is full (a sizing bug)", where);
  TIDE_TRY(arena_add(t, s, n, &t->tok[id]));
  t->shash[h] = (int32_t)id;
  return 0;
}

static int size_tables(tide_bpe *t, int64_t nids, int64_t nstrings) {
  t->nids = nids;
  t->tok = malloc((size_t)(nids ? nids : 1) * sizeof *t->tok);
  t->raw = malloc((size_t)(nids ? nids : 1) * sizeof *t->raw);
  uint64_t cap = 16;
  while (cap < (uint64_t)nstrings * 2) cap *= 2;  /* nstrings < 2^31: no overflow */
  t->shash = malloc(cap * sizeof *t->shash);
  if (!t->tok || !t->raw || !t->shash) return tide_fail("tokenizer: out of memory");
  t->smask = cap - 1;
  for (int64_t i = 0; i < nids; i++) t->tok[i].len = t->raw[i].len = NO_TOKEN;
  memset(t->shash, 0xFF, cap * sizeof *t->shash);
  return 0;
}

static int size_merges(tide_bpe *t, int64_t nmerges) {
  uint64_t cap = 16;
  while (cap < (uint64_t)nmerges * 2) cap *= 2;
  t->mleft = malloc((size_t)(nmerges ? nmerges : 1) * sizeof *t->mleft);
  t->mright = malloc((size_t)(nmerges ? nmerges : 1) * sizeof *t->mright);
  if (!t->mleft || !t->mright) return tide_fail("tokenizer: out of memory");
  /* one slot more than the mask reaches: always empty, where a probe of a
     full table (which sizing prevents) ends */
  t->pair = malloc((cap + 1) * sizeof *t->pair);
  if (!t->pair) return tide_fail("tokenizer: out of memory");
  t->pmask = cap - 1;
  for (uint64_t i = 0; i <= cap; i++) t->pair[i] = (struct pslot){ 0, -1, -1 };
  return 0;
}

/* Slot of pair (a, b): its own, or the empty one where it would go (the
   sentinel past the end when the table is full). */
static uint64_t pair_slot(const tide_bpe *t, int32_t a, int32_t b) {
  uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  uint64_t h = hash_pair(key) & t->pmask;
  for (uint64_t probes = 0; probes <= t->pmask; probes++, h = (h + 1) & t->pmask)
    if (t->pair[h].rank < 0 || t->pair[h].key == key) return h;
  return t->pmask + 1;
}

/* Adds merge "a b" with the given rank; `where` names the line or entry. */
static int add_merge(tide_bpe *t, const char *a, size_t na, const char *b, size_t nb, int32_t rank, const char *where) {
  int64_t ia = tide_bpe_token_to_id(t, a, (int64_t)na), ib = tide_bpe_token_to_id(t, b, (int64_t)nb);
  if (ia < 0 || ib < 0)
    return tide_fail("%s: merge '%.*s %.*s': '%.*s' is not in the vocabulary", where, (int)na, a, (int)nb, b,
                     ia < 0 ? (int)na : (int)nb, ia < 0 ? a : b);
  char stack[256];
  char *ab = na + nb <= sizeof stack ? stack : malloc(na + nb);
  if (!ab) return tide_fail("tokenizer: out of memory");
  memcpy(ab, a, na);
  memcpy(ab + na, b, nb);
  int64_t iab = tide_bpe_token_to_id(t, ab, (int64_t)(na + nb));
  if (ab != stack) free(ab);
  if (iab < 0)
    return tide_fail("%s: merge '%.*s %.*s': the merged token is not in the vocabulary", where, (int)na, a, (int)nb, b);
  uint64_t h = pair_slot(t, (int32_t)ia, (int32_t)ib);
  if (t->pair[h].rank >= 0) return 0;  /* a repeated merge keeps its first rank */
  if (h > t->pmask) return tide_fail("%s: tokenizer merge table is full (a sizing bug)", where);
  t->pair[h] = (struct pslot){ (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, rank, (int32_t)iab };
  t->mleft[t->nmerges] = (int32_t)ia;
  t->mright[t->nmerges++] = (int32_t)ib;
  return 0;
}

/* After the vocabulary: the raw bytes of every token and the ids of the 256 bytes. */
static int finish_vocab(tide_bpe *t, const char *where) {
  char *buf = NULL;
  size_t cap = 0;
  for (int64_t id = 0; id < t->nids; id++) {
    span s = t->tok[id];
    if (s.len == NO_TOKEN) continue;
    if (s.len > cap) {
      cap = s.len;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); return tide_fail("tokenizer: out of memory"); }
      buf = nb;
    }
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)t->arena + s.off;
    for (int64_t i = 0; i < s.len;) {
      uint32_t cp;
      int l = tide_utf8_decode(p, s.len, i, &cp);
      int b = l > 0 ? char_byte(cp) : -1;
      if (b >= 0) { buf[o++] = (char)b; i += l; continue; }
      /* not a byte-mapped character: it stands for itself */
      int k = l > 0 ? l : -l;
      memcpy(buf + o, p + i, (size_t)k);
      o += (size_t)k;
      i += k;
    }
    if (arena_add(t, buf, o, &t->raw[id])) { free(buf); return -1; }
  }
  free(buf);
  for (unsigned b = 0; b < 256; b++) {
    char c[4];
    int n = put_utf8(c, tide_bpe_byte_char(b));
    int64_t id = tide_bpe_token_to_id(t, c, n);
    if (id < 0) return tide_fail("%s: the vocabulary has no token for byte 0x%02X ('%.*s'), so it is not byte-level BPE",
                                 where, b, n, c);
    t->byte_id[b] = (int32_t)id;
  }
  return 0;
}

static int add_added(tide_bpe *t, int32_t id, int special) {
  int32_t *ids = realloc(t->added_id, (size_t)(t->nadded + 1) * sizeof *ids);
  if (!ids) return tide_fail("tokenizer: out of memory");
  t->added_id = ids;
  uint8_t *sp = realloc(t->added_special, (size_t)(t->nadded + 1));
  if (!sp) return tide_fail("tokenizer: out of memory");
  t->added_special = sp;
  t->added_id[t->nadded] = id;
  t->added_special[t->nadded] = (uint8_t)special;
  t->nadded++;
  return 0;
}

void tide_bpe_free(tide_bpe *t) {
  if (!t) return;
  tide_mem_account(-t->accounted);
  free(t->tok); free(t->raw); free(t->arena); free(t->shash);
  free(t->pair);
  free(t->mleft); free(t->mright);
  free(t->added_id); free(t->added_special);
  pool_free(t);
  free(t->bpair);
  free(t);
}

static int read_file(const char *path, const char *what, char **data, int64_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return tide_fail("tokenizer: cannot open %s %s: %s", what, path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) { fclose(f); return tide_fail("tokenizer: out of memory reading %s", path); }
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    cap *= 2;
    char *nb = realloc(buf, cap);
    if (!nb) free(buf);
    buf = nb;
  }
  int err = ferror(f);
  fclose(f);
  if (err) { free(buf); return tide_fail("tokenizer: cannot read %s %s", what, path); }
  *data = buf;
  *len = (int64_t)n;
  return 0;
}

/* Parses JSON, prefixing a parse error with the file's name. */
static int parse_json(const char *text, int64_t len, const char *path, tide_json **doc) {
  if (tide_json_parse(text, len, doc) == 0) return 0;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", tide_last_error());
  return tide_fail("tokenizer: %s: %s", path, msg);
}

/* Loads the vocabulary object `vocab` of doc, sizing the tables for nextra
   more tokens (tokenizer.json's added tokens) to come. Ids must lie below
   the number of tokens (vocabulary plus added), so a file cannot make the
   tables larger than what it lists. */
static int load_vocab(tide_bpe *t, const tide_json *doc, int64_t vocab, int64_t nextra, const char *where) {
  if (tide_json_type(doc, vocab) != TIDE_JSON_OBJECT) return tide_fail("%s: the vocabulary is not a JSON object", where);
  int64_t dup = tide_json_dup_member(doc, vocab);
  if (dup >= 0) {
    int64_t kl;
    const char *k = tide_json_key(doc, vocab, dup, &kl);
    return tide_fail("%s: token '%.*s' appears twice in the vocabulary", where, (int)(kl > 40 ? 40 : kl), k);
  }
  int64_t n = tide_json_length(doc, vocab), ntok = n + nextra;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = tide_json_child(doc, vocab, i), id, kl;
    const char *k = tide_json_key(doc, vocab, i, &kl);
    if (!tide_json_int64(doc, v, &id) || id < 0 || id >= (1 << 30))
      return tide_fail("%s: the id of token '%.*s' is not an integer in [0, 2^30)", where, (int)(kl > 40 ? 40 : kl), k);
    if (id >= ntok)
      return tide_fail("%s: token '%.*s' has id %lld, beyond the %lld tokens listed (ids run from 0 without gaps)",
                       where, (int)(kl > 40 ? 40 : kl), k, (long long)id, (long long)ntok);
  }
  TIDE_TRY(size_tables(t, ntok, ntok));
  for (int64_t i = 0; i < n; i++) {
    int64_t id, kl;
    const char *k = tide_json_key(doc, vocab, i, &kl);
    tide_json_int64(doc, tide_json_child(doc, vocab, i), &id);
    TIDE_TRY(add_token(t, k, (size_t)kl, id, where));
  }
  return 0;
}

/* Every id below nids names a token: a gap would be an id that decodes to
   nothing, and nids is trimmed to the largest id used + 1. */
static int check_dense(tide_bpe *t, const char *where) {
  int64_t top = t->nids;
  while (top > 0 && t->tok[top - 1].len == NO_TOKEN) top--;
  for (int64_t id = 0; id < top; id++)
    if (t->tok[id].len == NO_TOKEN)
      return tide_fail("%s: no token has id %lld, but id %lld is used (ids must run from 0 without gaps)", where,
                       (long long)id, (long long)(top - 1));
  t->nids = top;
  return 0;
}

static tide_bpe *bpe_new(void) {
  tide_bpe *t = calloc(1, sizeof *t);
  if (t && pool_new(t) != 0) { free(t); t = NULL; }
  if (!t) tide_fail("tokenizer: out of memory");
  return t;
}

static int load_files(tide_bpe *t, const char *vocab_path, const char *merges_path) {
  char *text = NULL;
  int64_t len;
  tide_json *doc = NULL;
  char where[600];
  snprintf(where, sizeof where, "tokenizer: %s", vocab_path);
  TIDE_TRY(read_file(vocab_path, "vocab.json", &text, &len));
  int rc = parse_json(text, len, vocab_path, &doc);
  free(text);
  if (rc) return -1;
  rc = load_vocab(t, doc, 0, 0, where);
  tide_json_free(doc);
  if (rc) return -1;
  TIDE_TRY(check_dense(t, where));
  TIDE_TRY(finish_vocab(t, where));
  TIDE_TRY(read_file(merges_path, "merges.txt", &text, &len));
  int64_t lines = 1;
  for (int64_t i = 0; i < len; i++) lines += text[i] == '\n';
  if (size_merges(t, lines)) { free(text); return -1; }
  int32_t rank = 0;
  int64_t line = 0;
  for (int64_t i = 0; i < len;) {
    int64_t e = i;
    while (e < len && text[e] != '\n') e++;
    line++;
    int64_t end = e > i && text[e - 1] == '\r' ? e - 1 : e;  /* CRLF files */
    const char *s = text + i;
    int64_t n = end - i;
    i = e + 1;
    if (n >= 8 && memcmp(s, "#version", 8) == 0) continue;
    const char *sp = memchr(s, ' ', (size_t)n);
    int64_t parts = 1;
    for (int64_t k = 0; k < n; k++) parts += s[k] == ' ';
    if (!sp || parts != 2 || sp == s || sp == s + n - 1) {
      tide_fail("tokenizer: %s line %lld: expected two tokens separated by one space, got '%.*s'", merges_path,
                (long long)line, (int)(n > 60 ? 60 : n), s);
      free(text);
      return -1;
    }
    snprintf(where, sizeof where, "tokenizer: %s line %lld", merges_path, (long long)line);
    if (add_merge(t, s, (size_t)(sp - s), sp + 1, (size_t)(s + n - sp - 1), rank++, where)) { free(text); return -1; }
  }
  free(text);
  /* GPT-2's files carry <|endoftext|> in the vocabulary: it is the added (special) token */
  int64_t eot = tide_bpe_token_to_id(t, "<|endoftext|>", 13);
  if (eot >= 0) {
    TIDE_TRY(add_added(t, (int32_t)eot, 1));
    TIDE_TRY(arena_add(t, "<|endoftext|>", 13, &t->raw[eot]));
  }
  return 0;
}

/* Fills the byte-pair table from the merges (after loading). */
static int finish_merges(tide_bpe *t) {
  t->bpair = malloc(65536 * sizeof *t->bpair);
  if (!t->bpair) return tide_fail("tokenizer: out of memory");
  for (int a = 0; a < 256; a++)
    for (int b = 0; b < 256; b++) {
      const struct pslot *e = &t->pair[pair_slot(t, t->byte_id[a], t->byte_id[b])];
      t->bpair[a << 8 | b] = (struct bslot){ e->rank < 0 ? INT32_MAX : e->rank, e->nid };
    }
  /* the last step of every load: count the tables, so that Lua's GC pacer sees
     a dropped tokenizer's memory as it sees a tensor's */
  t->accounted = (int64_t)(sizeof *t + (size_t)t->nids * 2 * sizeof(span) + (t->smask + 1) * sizeof *t->shash +
                           (t->pmask + 1) * sizeof *t->pair + (size_t)t->nmerges * 2 * sizeof(int32_t) + t->arena_cap +
                           (size_t)t->nadded * (sizeof(int32_t) + 1) + 65536 * sizeof *t->bpair);
  tide_mem_account(t->accounted);
  return 0;
}

int tide_bpe_load(const char *vocab_path, const char *merges_path, tide_bpe **out) {
  if (!vocab_path || !merges_path || !out) return tide_fail("tide_bpe_load: NULL argument");
  tide_bpe *t = bpe_new();
  if (!t) return -1;
  if (load_files(t, vocab_path, merges_path) || finish_merges(t)) { tide_bpe_free(t); return -1; }
  *out = t;
  return 0;
}

static int load_json(tide_bpe *t, const tide_json *doc, const char *path) {
  char where[600];
  snprintf(where, sizeof where, "tokenizer: %s", path);
  if (tide_json_type(doc, 0) != TIDE_JSON_OBJECT) return tide_fail("%s: the top level is not a JSON object", where);
  int64_t model = tide_json_get(doc, 0, "model");
  if (tide_json_type(doc, model) != TIDE_JSON_OBJECT) return tide_fail("%s: no \"model\" object", where);
  int64_t type = tide_json_get(doc, model, "type"), tl = 0;
  const char *ts = type >= 0 ? tide_json_string(doc, type, &tl) : NULL;
  if (type >= 0 && (!ts || tl != 3 || memcmp(ts, "BPE", 3) != 0))
    return tide_fail("%s: model.type is %.*s; only BPE models are supported", where, ts ? (int)tl : 9, ts ? ts : "not a string");
  TIDE_TRY(tide_bpe_check_settings(doc, where));
  int64_t added = tide_json_get(doc, 0, "added_tokens");
  int64_t nadded = added >= 0 ? tide_json_length(doc, added) : 0;
  if (added >= 0 && tide_json_type(doc, added) != TIDE_JSON_ARRAY && tide_json_type(doc, added) != TIDE_JSON_NULL)
    return tide_fail("%s: added_tokens is not an array", where);
  int64_t vocab = tide_json_get(doc, model, "vocab");
  if (tide_json_type(doc, vocab) != TIDE_JSON_OBJECT) return tide_fail("%s: model.vocab is not a JSON object", where);
  int64_t ntok = tide_json_length(doc, vocab) + nadded;
  for (int64_t i = 0; i < nadded; i++) {
    int64_t a = tide_json_child(doc, added, i), id, cl;
    int64_t idn = tide_json_get(doc, a, "id"), cn = tide_json_get(doc, a, "content");
    const char *c = tide_json_string(doc, cn, &cl);
    if (!tide_json_int64(doc, idn, &id) || id < 0 || id >= (1 << 30) || !c || cl == 0)
      return tide_fail("%s: added_tokens[%lld] needs an integer \"id\" in [0, 2^30) and a non-empty string \"content\"",
                       where, (long long)i);
    if (id >= ntok)
      return tide_fail("%s: added_tokens[%lld] '%.*s' has id %lld, beyond the %lld tokens listed (vocabulary and "
                       "added tokens; ids run from 0 without gaps)", where, (long long)i, (int)(cl > 40 ? 40 : cl), c,
                       (long long)id, (long long)ntok);
  }
  TIDE_TRY(load_vocab(t, doc, vocab, nadded, where));
  for (int64_t i = 0; i < nadded; i++) {
    int64_t a = tide_json_child(doc, added, i), id, cl;
    tide_json_int64(doc, tide_json_get(doc, a, "id"), &id);
    const char *c = tide_json_string(doc, tide_json_get(doc, a, "content"), &cl);
    TIDE_TRY(add_token(t, c, (size_t)cl, id, where));
  }
  TIDE_TRY(check_dense(t, where));
  TIDE_TRY(finish_vocab(t, where));
  uint8_t *seen = calloc((size_t)t->nids + 1, 1);
  if (!seen) return tide_fail("tokenizer: out of memory");
  for (int64_t i = 0; i < nadded; i++) {
    int64_t a = tide_json_child(doc, added, i), id, cl;
    tide_json_int64(doc, tide_json_get(doc, a, "id"), &id);
    const char *c = tide_json_string(doc, tide_json_get(doc, a, "content"), &cl);
    int rc = seen[id] ? tide_fail("%s: added_tokens[%lld] '%.*s' (id %lld) is listed twice", where, (long long)i,
                                  (int)(cl > 40 ? 40 : cl), c, (long long)id) : 0;
    seen[id] = 1;
    if (!rc) rc = add_added(t, (int32_t)id, tide_json_type(doc, tide_json_get(doc, a, "special")) == TIDE_JSON_TRUE);
    if (!rc) rc = arena_add(t, c, (size_t)cl, &t->raw[id]);  /* added tokens decode to their content */
    if (rc) { free(seen); return -1; }
  }
  free(seen);
  int64_t merges = tide_json_get(doc, model, "merges");
  int64_t nm = tide_json_length(doc, merges);
  if (merges >= 0 && tide_json_type(doc, merges) != TIDE_JSON_ARRAY) return tide_fail("%s: model.merges is not an array", where);
  TIDE_TRY(size_merges(t, nm));
  for (int64_t i = 0; i < nm; i++) {
    int64_t m = tide_json_child(doc, merges, i), la, lb;
    const char *a = NULL, *b = NULL;
    char mw[640];
    snprintf(mw, sizeof mw, "%s: model.merges[%lld]", where, (long long)i);
    if (tide_json_type(doc, m) == TIDE_JSON_STRING) {
      int64_t l;
      const char *s = tide_json_string(doc, m, &l);
      const char *sp = memchr(s, ' ', (size_t)l);
      int parts = 1;
      for (int64_t k = 0; k < l; k++) parts += s[k] == ' ';
      if (sp && parts == 2 && sp != s && sp != s + l - 1) { a = s; la = sp - s; b = sp + 1; lb = s + l - sp - 1; }
    } else if (tide_json_type(doc, m) == TIDE_JSON_ARRAY && tide_json_length(doc, m) == 2) {
      a = tide_json_string(doc, tide_json_child(doc, m, 0), &la);
      b = tide_json_string(doc, tide_json_child(doc, m, 1), &lb);
    }
    if (!a || !b) return tide_fail("%s: expected \"a b\" or [\"a\", \"b\"]", mw);
    TIDE_TRY(add_merge(t, a, (size_t)la, b, (size_t)lb, (int32_t)i, mw));
  }
  return 0;
}

int tide_bpe_load_json(const char *path, tide_bpe **out) {
  if (!path || !out) return tide_fail("tide_bpe_load_json: NULL argument");
  char *text;
  int64_t len;
  TIDE_TRY(read_file(path, "tokenizer.json", &text, &len));
  tide_json *doc = NULL;
  int rc = parse_json(text, len, path, &doc);
  free(text);
  if (rc) return -1;
  tide_bpe *t = bpe_new();
  if (!t) { tide_json_free(doc); return -1; }
  rc = load_json(t, doc, path);
  tide_json_free(doc);
  if (!rc) rc = finish_merges(t);
  if (rc) { tide_bpe_free(t); return -1; }
  *out = t;
  return 0;
}

int64_t tide_bpe_vocab_size(const tide_bpe *t) { return t ? t->nids : 0; }

const char *tide_bpe_id_to_token(const tide_bpe *t, int64_t id, int64_t *len) {
  if (!t || id < 0 || id >= t->nids || t->tok[id].len == NO_TOKEN) return NULL;
  if (len) *len = t->tok[id].len;
  return t->arena + t->tok[id].off;
}

int32_t tide_bpe_added_count(const tide_bpe *t) { return t ? t->nadded : 0; }

const char *tide_bpe_added_token(const tide_bpe *t, int32_t i, int64_t *len, int32_t *id, int32_t *special) {
  if (!t || i < 0 || i >= t->nadded) return NULL;
  int32_t k = t->added_id[i];
  if (len) *len = t->raw[k].len;
  if (id) *id = k;
  if (special) *special = t->added_special[i];
  return t->arena + t->raw[k].off;
}

const char *tide_unicode_version_str(void) { return tide_unicode_version; }

/* Scratch for merging one piece, grown as pieces get longer. */
typedef struct { int32_t rank, pos, lid, rid, nid; } cand;
/* A memo of piece bytes -> ids: code repeats its identifiers and indents,
   so most pieces were merged before. Slot empty when klen is 0. */
typedef struct { uint32_t hash, koff, ioff; uint16_t klen, nids; } centry;
#define CACHE_MAX_PIECE 64             /* longer pieces are rare and not memoized */
#define CACHE_MAX_SLOTS (1u << 17)     /* bounds the memory (about 4 MB); full: start over */
#define SHORT_PIECE 64                 /* up to this many bytes: merged by scanning, no heap */
#define SCRATCH_KEEP 4096              /* longer scratch is freed after the call */
typedef struct work {
  int32_t *id, *len, *next, *prev;
  cand *heap;
  int64_t cap, hn;
  centry *slot;                        /* open addressing, power-of-two size */
  uint32_t nslot, used;
  unsigned char *keys;                 /* the pieces' bytes */
  int32_t *cids;                       /* their ids */
  uint32_t klen, kcap, ilen, icap;
} work;

static void scratch_free(work *w) {
  free(w->id); free(w->len); free(w->next); free(w->prev); free(w->heap);
  w->id = w->len = w->next = w->prev = NULL;
  w->heap = NULL;
  w->cap = 0;
}

static void work_free(work *w) {
  scratch_free(w);
  free(w->slot); free(w->keys); free(w->cids);
}


static int pool_new(tide_bpe *t) {
  t->pool = calloc(POOL_SIZE, sizeof *t->pool);  /* zeroed: empty scratch, empty memo */
  t->pool_busy = malloc(POOL_SIZE * sizeof *t->pool_busy);
  if (!t->pool || !t->pool_busy) { free(t->pool); free(t->pool_busy); return -1; }
  for (int i = 0; i < POOL_SIZE; i++) atomic_init(&t->pool_busy[i], 0);
  return 0;
}

static void pool_free(tide_bpe *t) {
  if (t->pool) for (int i = 0; i < POOL_SIZE; i++) work_free(&t->pool[i]);
  free(t->pool);
  free(t->pool_busy);
}

/* A free pool entry for this call (its memo warm from earlier calls), or
   NULL when all are in use. The model is read only; the pool is the one
   thing calls share, so each entry is held by one call at a time. */
static work *work_take(const tide_bpe *t, int *slot) {
  for (int i = 0; i < POOL_SIZE; i++) {
    int idle = 0;
    if (atomic_load_explicit(&t->pool_busy[i], memory_order_relaxed) == 0 &&
        atomic_compare_exchange_strong(&t->pool_busy[i], &idle, 1)) {
      *slot = i;
      return &t->pool[i];
    }
  }
  *slot = -1;
  return NULL;
}

/* Hands back what work_take gave (or frees a call's own scratch); scratch
   grown for one huge piece (a megabyte of spaces) is not kept. */
static void work_give(const tide_bpe *t, work *w, int slot) {
  if (slot < 0) { work_free(w); return; }
  if (w->cap > SCRATCH_KEEP) scratch_free(w);
  atomic_store(&t->pool_busy[slot], 0);
}

static uint32_t hash_piece(const unsigned char *p, int64_t n) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return (uint32_t)(h ^ (h >> 32));
}

/* Whether a[0..n) == b[0..n); pieces are short, so a libc call costs more than the compare. */
static int same_bytes(const unsigned char *a, const unsigned char *b, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    if (x != y) return 0;
  }
  for (; i < n; i++) if (a[i] != b[i]) return 0;
  return 1;
}

/* The cached entry of piece p[0..n), or NULL. */
static const centry *cache_find(const work *w, const unsigned char *p, int64_t n, uint32_t h) {
  uint32_t i = h & (w->nslot - 1);
  for (uint32_t probes = 0; probes < w->nslot; probes++, i = (i + 1) & (w->nslot - 1)) {
    const centry *e = &w->slot[i];
    if (!e->klen) return NULL;
    if (e->hash == h && e->klen == n && same_bytes(w->keys + e->koff, p, n)) return e;
  }
  return NULL;
}

/* Places e in an empty slot; cache_put keeps the memo at most half full, so there is one. */
static void cache_place(work *w, centry e) {
  uint32_t i = e.hash & (w->nslot - 1), probes = 0;
  while (w->slot[i].klen && ++probes < w->nslot) i = (i + 1) & (w->nslot - 1);
  if (!w->slot[i].klen) w->slot[i] = e;
}

/* Remembers piece p[0..n) -> ids[0..m); on out of memory it just forgets. */
static void cache_put(work *w, const unsigned char *p, int64_t n, uint32_t h, const int32_t *ids, int64_t m) {
  if (n > CACHE_MAX_PIECE || m > n) return;
  if (w->used + 1 > w->nslot / 2) {
    if (w->nslot >= CACHE_MAX_SLOTS) {   /* full: drop everything */
      memset(w->slot, 0, w->nslot * sizeof *w->slot);
      w->used = w->klen = w->ilen = 0;
    } else {
      uint32_t ns = w->nslot ? w->nslot * 2 : 256;
      centry *old = w->slot, *sl = calloc(ns, sizeof *sl);
      if (!sl) return;
      uint32_t on = w->nslot;
      w->slot = sl;
      w->nslot = ns;
      for (uint32_t i = 0; i < on; i++) if (old[i].klen) cache_place(w, old[i]);
      free(old);
    }
  }
  if (w->klen + n > w->kcap) {
    uint32_t c = w->kcap ? w->kcap * 2 : 4096;
    unsigned char *k = realloc(w->keys, c);
    if (!k) return;
    w->keys = k;
    w->kcap = c;
  }
  if (w->ilen + m > w->icap) {
    uint32_t c = w->icap ? w->icap * 2 : 4096;
    int32_t *k = realloc(w->cids, c * sizeof *k);
    if (!k) return;
    w->cids = k;
    w->icap = c;
  }
  memcpy(w->keys + w->klen, p, (size_t)n);
  memcpy(w->cids + w->ilen, ids, (size_t)m * sizeof *ids);
  centry e = { h, w->klen, w->ilen, (uint16_t)n, (uint16_t)m };
  w->klen += (uint32_t)n;
  w->ilen += (uint32_t)m;
  cache_place(w, e);
  w->used++;
}

static int work_grow(work *w, int64_t n) {
  if (n <= w->cap) return 0;
  int64_t cap = w->cap ? w->cap : 64;
  while (cap < n) cap *= 2;
  free(w->id); free(w->len); free(w->next); free(w->prev); free(w->heap);
  w->id = malloc((size_t)cap * sizeof(int32_t));
  w->len = malloc((size_t)cap * sizeof(int32_t));
  w->next = malloc((size_t)cap * sizeof(int32_t));
  w->prev = malloc((size_t)cap * sizeof(int32_t));
  w->heap = malloc((size_t)cap * 3 * sizeof(cand));  /* n - 1 pairs, then at most 2 per merge */
  w->cap = cap;
  if (!w->id || !w->len || !w->next || !w->prev || !w->heap) { w->cap = 0; return tide_fail("tide_bpe_encode: out of memory"); }
  return 0;
}

static int cand_less(const cand *a, const cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(work *w, const tide_bpe *t, int32_t l, int32_t r) {
  uint64_t h = pair_slot(t, w->id[l], w->id[r]);
  if (t->pair[h].rank < 0) return;
  cand c = { t->pair[h].rank, l, w->id[l], w->id[r], t->pair[h].nid };
  int64_t i = w->hn++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!cand_less(&c, &w->heap[p])) break;
    w->heap[i] = w->heap[p];
    i = p;
  }
  w->heap[i] = c;
}

static cand heap_pop(work *w) {
  cand top = w->heap[0], last = w->heap[--w->hn];
  int64_t i = 0, n = w->hn;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c])) c++;
    if (!cand_less(&w->heap[c], &last)) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (n > 0) w->heap[i] = last;
  return top;
}

/* Merge rank and merged id of pair (a, b); rank INT32_MAX when there is no such merge. */
static inline int32_t pair_rank(const tide_bpe *t, int32_t a, int32_t b, int32_t *nid) {
  const struct pslot *e = &t->pair[pair_slot(t, a, b)];
  *nid = e->nid;
  return e->rank < 0 ? INT32_MAX : e->rank;
}

/* encode_piece's merging for short pieces: the lowest rank found by a scan
   over the pairs (leftmost on ties, as the heap orders them); for the
   pieces most text is made of this beats a heap's bookkeeping. */
static int64_t merge_short(const tide_bpe *t, const unsigned char *p, int32_t m, int32_t *out) {
  int32_t id[SHORT_PIECE], rank[SHORT_PIECE], nid[SHORT_PIECE];
  for (int32_t i = 0; i < m; i++) id[i] = t->byte_id[p[i]];
  for (int32_t i = 0; i + 1 < m; i++) {
    struct bslot e = t->bpair[p[i] << 8 | p[i + 1]];
    rank[i] = e.rank;
    nid[i] = e.nid;
  }
  while (m > 1) {
    int32_t best = 0;
    for (int32_t i = 1; i + 1 < m; i++) if (rank[i] < rank[best]) best = i;
    if (rank[best] == INT32_MAX) break;
    id[best] = nid[best];
    /* drop symbol best + 1 and pair best + 1 */
    for (int32_t i = best + 1; i + 1 < m; i++) { id[i] = id[i + 1]; rank[i] = rank[i + 1]; nid[i] = nid[i + 1]; }
    m--;
    if (best > 0) rank[best - 1] = pair_rank(t, id[best - 1], id[best], &nid[best - 1]);
    if (best + 1 < m) rank[best] = pair_rank(t, id[best], id[best + 1], &nid[best]);
  }
  memcpy(out, id, (size_t)m * sizeof *id);
  return m;
}

/* Merges the bytes p[0..n) and appends their ids to ids[*k...]. */
static int encode_piece(const tide_bpe *t, work *w, const unsigned char *p, int64_t n, int32_t *ids, int64_t *k) {
  if (n == 1) { ids[(*k)++] = t->byte_id[p[0]]; return 0; }
  if (n > INT32_MAX / 4) return tide_fail("tide_bpe_encode: a piece of %lld bytes is too long", (long long)n);
  uint32_t h = 0;
  if (n <= CACHE_MAX_PIECE) {
    h = hash_piece(p, n);
    const centry *e = cache_find(w, p, n, h);
    if (e) {
      memcpy(ids + *k, w->cids + e->ioff, (size_t)e->nids * sizeof *ids);
      *k += e->nids;
      return 0;
    }
  }
  int64_t k0 = *k;
  if (n <= SHORT_PIECE) {
    *k += merge_short(t, p, (int32_t)n, ids + k0);
    cache_put(w, p, n, h, ids + k0, *k - k0);
    return 0;
  }
  TIDE_TRY(work_grow(w, n));
  int32_t m = (int32_t)n;
  for (int32_t i = 0; i < m; i++) {
    w->id[i] = t->byte_id[p[i]];
    w->len[i] = 1;
    w->next[i] = i + 1;
    w->prev[i] = i - 1;
  }
  w->hn = 0;
  for (int32_t i = 0; i + 1 < m; i++) heap_push(w, t, i, i + 1);
  while (w->hn > 0) {
    cand c = heap_pop(w);
    int32_t l = c.pos, r = w->next[l];
    /* stale entries: a side has merged since the pair was queued */
    if (w->len[l] == 0 || w->id[l] != c.lid || r >= m || w->id[r] != c.rid) continue;
    w->id[l] = c.nid;
    w->len[l] += w->len[r];
    w->len[r] = 0;
    w->next[l] = w->next[r];
    if (w->next[r] < m) w->prev[w->next[r]] = l;
    if (w->prev[l] >= 0) heap_push(w, t, w->prev[l], l);
    if (w->next[l] < m) heap_push(w, t, l, w->next[l]);
  }
  for (int32_t i = 0; i < m; i = w->next[i]) ids[(*k)++] = w->id[i];
  if (n <= CACHE_MAX_PIECE) cache_put(w, p, n, h, ids + k0, *k - k0);
  return 0;
}

static int encode_plain(const tide_bpe *t, work *w, const unsigned char *s, int64_t n, int32_t *ids, int64_t *k) {
  for (int64_t i = 0; i < n;) {
    int64_t e = tide_pretok_next(s, n, i);
    TIDE_TRY(encode_piece(t, w, s + i, e - i, ids, k));
    i = e;
  }
  return 0;
}

/* tide_bpe_encode with the caller's scratch (and memo), reused across texts. */
static int encode_text(const tide_bpe *t, work *wp, const char *text, int64_t len, const int32_t *allowed,
                       int32_t nallowed, int32_t *ids, int64_t *nids);

int tide_bpe_encode(const tide_bpe *t, const char *text, int64_t len, const int32_t *allowed, int32_t nallowed,
                    int32_t *ids, int64_t *nids) {
  if (!t) return tide_fail("tide_bpe_encode: NULL argument or negative length");
  work own = { 0 };
  int slot;
  work *w = work_take(t, &slot);
  if (!w) w = &own;
  int rc = encode_text(t, w, text, len, allowed, nallowed, ids, nids);
  work_give(t, w, slot);
  return rc;
}

static int encode_text(const tide_bpe *t, work *wp, const char *text, int64_t len, const int32_t *allowed,
                       int32_t nallowed, int32_t *ids, int64_t *nids) {
  if (!t || (!text && len > 0) || len < 0 || !ids || !nids) return tide_fail("tide_bpe_encode: NULL argument or negative length");
  if (nallowed > 0 && !allowed) return tide_fail("tide_bpe_encode: allowed is NULL with nallowed = %d", nallowed);
  for (int32_t i = 0; i < nallowed; i++) {
    int32_t j = 0;
    while (j < t->nadded && t->added_id[j] != allowed[i]) j++;
    if (j == t->nadded) return tide_fail("tide_bpe_encode: allowed id %d is not an added token", allowed[i]);
  }
  const unsigned char *s = (const unsigned char *)text;
  int64_t k = 0, i = 0;
  int rc = 0;
  int32_t nspecial = nallowed < 0 ? t->nadded : nallowed;
  if (nspecial == 0) {  /* the common case: no added token to look for */
    rc = encode_plain(t, wp, s, len, ids, &k);
    *nids = k;
    return rc;
  }
  /* where each allowed token next occurs (len: none left), searched again
     only once passed, so many tokens cost no rescans of the text */
  int64_t *next_at = malloc((size_t)nspecial * sizeof *next_at);
  if (!next_at) return tide_fail("tide_bpe_encode: out of memory");
  for (int32_t j = 0; j < nspecial; j++) next_at[j] = -1;
  while (i < len && rc == 0) {
    /* the leftmost allowed added token, the longest where two start together */
    int64_t at = len, best = -1;
    for (int32_t j = 0; j < nspecial; j++) {
      int32_t id = nallowed < 0 ? t->added_id[j] : allowed[j];
      span r = t->raw[id];
      if (next_at[j] < i) {
        const char *f = r.len == 0 || r.len > (uint64_t)(len - i) ? NULL
                        : memmem(text + i, (size_t)(len - i), t->arena + r.off, r.len);
        next_at[j] = f ? f - text : len;
      }
      int64_t pos = next_at[j];
      if (pos < len && (pos < at || (pos == at && r.len > t->raw[best].len))) { at = pos; best = id; }
    }
    rc = encode_plain(t, wp, s + i, at - i, ids, &k);
    if (best < 0) break;
    ids[k++] = (int32_t)best;
    i = at + t->raw[best].len;
  }
  free(next_at);
  *nids = k;
  return rc;
}

int64_t tide_bpe_merge_count(const tide_bpe *t) { return t ? t->nmerges : 0; }

int tide_bpe_merge(const tide_bpe *t, int64_t i, int32_t *left, int32_t *right) {
  if (!t || !left || !right) return tide_fail("tide_bpe_merge: NULL argument");
  if (i < 0 || i >= t->nmerges)
    return tide_fail("tide_bpe_merge: merge %lld is out of range [0, %lld)", (long long)i, (long long)t->nmerges);
  *left = t->mleft[i];
  *right = t->mright[i];
  return 0;
}

int tide_bpe_encode_batch(const tide_bpe *t, int64_t n, const char *const *texts, const int64_t *lens,
                          const int32_t *allowed, int32_t nallowed, int32_t *ids, int64_t *nids) {
  if (!t || n < 0 || (n > 0 && (!texts || !lens || !ids || !nids)))
    return tide_fail("tide_bpe_encode_batch: NULL argument or negative count");
  for (int64_t i = 0; i < n; i++)
    if (lens[i] < 0 || (!texts[i] && lens[i] > 0))
      return tide_fail("tide_bpe_encode_batch: text %lld is NULL or has negative length %lld", (long long)i,
                       (long long)lens[i]);
  /* text i's ids start at the sum of (len + 1) over the texts before it */
  int64_t *off = malloc((size_t)(n ? n : 1) * sizeof *off);
  if (!off) return tide_fail("tide_bpe_encode_batch: out of memory");
  int64_t o = 0;
  for (int64_t i = 0; i < n; i++) { off[i] = o; o += lens[i] + 1; }
  /* the model is only read, so texts encode independently; the first failing
     text's message is re-raised on the calling thread (errors are per thread) */
  int64_t bad = -1;
  char msg[512] = "";
  #pragma omp parallel
  {
    /* per thread: scratch and memo carry over between its texts (and calls) */
    work own = { 0 };
    int slot;
    work *w = work_take(t, &slot);
    if (!w) w = &own;
    #pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
      if (encode_text(t, w, texts[i], lens[i], allowed, nallowed, ids + off[i], &nids[i]) != 0) {
        #pragma omp critical(tide_bpe_batch_err)
        if (bad < 0 || i < bad) { bad = i; snprintf(msg, sizeof msg, "%s", tide_last_error()); }
      }
    }
    work_give(t, w, slot);
  }
  free(off);
  if (bad >= 0) return tide_fail("tide_bpe_encode_batch: text %lld: %s", (long long)bad, msg);
  return 0;
}

int tide_bpe_decode(const tide_bpe *t, const int32_t *ids, int64_t n, char *out, int64_t cap, int64_t *len) {
  if (!t || (!ids && n > 0) || n < 0 || !len) return tide_fail("tide_bpe_decode: NULL argument or negative count");
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->nids || t->raw[ids[i]].len == NO_TOKEN)
      return tide_fail("tide_bpe_decode: id %d at position %lld is not a token (vocabulary size %lld)", ids[i],
                       (long long)i + 1, (long long)t->nids);
    total += t->raw[ids[i]].len;
  }
  *len = total;
  if (!out || cap < total) return 0;
  char *o = out;
  for (int64_t i = 0; i < n; i++) {
    span r = t->raw[ids[i]];
    memcpy(o, t->arena + r.off, r.len);
    o += r.len;
  }
  return 0;
}

int64_t tide_utf8_replace_invalid(const char *in, int64_t n, char *out) {
  const unsigned char *s = (const unsigned char *)in;
  int64_t o = 0;
  for (int64_t i = 0; i < n;) {
    uint32_t cp;
    int l = tide_utf8_decode(s, n, i, &cp);
    if (l > 0) {
      memcpy(out + o, in + i, (size_t)l);
      o += l;
      i += l;
    } else {
      o += put_utf8(out + o, 0xFFFD);
      i += -l;
    }
  }
  return o;
}
