/* Byte-level BPE training (Hugging Face BpeTrainer's algorithm). See bpe_train.h.

   The merge loop follows BpeTrainer step by step, because its output depends
   on details a cleaner algorithm would change: a max-heap of (count, pair,
   words) entries checked lazily against the live pair counts; a merge
   rewrites only the words listed in its entry; the merged pair's own count is
   left as it is; pairs a merge creates get a fresh entry listing the words
   where they appeared; and with max_token_length a created pair whose parts
   are together not shorter than the limit is not counted at all. */
#include "bpe_train.h"
#include "bpe.h"
#include "error.h"
#include "pretokenize.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable array of int32. */
typedef struct { int32_t *v; int64_t n, cap; } ivec;

static int ivec_push(ivec *a, int32_t x) {
  if (a->n == a->cap) {
    int64_t cap = a->cap ? 2 * a->cap : 4;
    int32_t *v = realloc(a->v, (size_t)cap * sizeof *v);
    if (!v) return tide_fail("bpe_trainer: out of memory");
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = x;
  return 0;
}

/* Bytes appended to one buffer; strings are (offset, length) into it. */
typedef struct { char *p; int64_t n, cap; } arena;

static int arena_put(arena *a, const char *s, int64_t len, int64_t *off) {
  if (a->n + len > a->cap) {
    int64_t cap = a->cap ? a->cap : 4096;
    while (cap < a->n + len) cap *= 2;
    char *p = realloc(a->p, (size_t)cap);
    if (!p) return tide_fail("bpe_trainer: out of memory");
    a->p = p;
    a->cap = cap;
  }
  if (len) memcpy(a->p + a->n, s, (size_t)len);
  *off = a->n;
  a->n += len;
  return 0;
}

static uint64_t hash_bytes(const char *s, int64_t n) {
  uint64_t h = 1469598103934665603ull;  /* FNV-1a */
  for (int64_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return x;
}

/* A set of strings in an arena, each with an int64 value; open addressing. */
typedef struct {
  arena bytes;
  int64_t *off, *len, *val;  /* per entry */
  int64_t n, cap;            /* entries */
  int64_t *slot;             /* entry index or -1 */
  uint64_t mask;
} strmap;

static int strmap_grow(strmap *m) {
  int64_t cap = m->cap ? 2 * m->cap : 1024;
  int64_t *off = realloc(m->off, (size_t)cap * sizeof *off);
  if (off) m->off = off;
  int64_t *len = realloc(m->len, (size_t)cap * sizeof *len);
  if (len) m->len = len;
  int64_t *val = realloc(m->val, (size_t)cap * sizeof *val);
  if (val) m->val = val;
  int64_t *slot = malloc((size_t)(2 * cap) * sizeof *slot);
  if (!off || !len || !val || !slot) { free(slot); return tide_fail("bpe_trainer: out of memory"); }
  for (int64_t i = 0; i < 2 * cap; i++) slot[i] = -1;
  uint64_t mask = (uint64_t)(2 * cap) - 1;
  for (int64_t e = 0; e < m->n; e++) {
    uint64_t h = hash_bytes(m->bytes.p + m->off[e], m->len[e]) & mask;
    while (slot[h] >= 0) h = (h + 1) & mask;
    slot[h] = e;
  }
  free(m->slot);
  m->slot = slot;
  m->mask = mask;
  m->cap = cap;
  return 0;
}

/* The entry of s, or -1; with add, a new entry (value 0) when absent. */
static int64_t strmap_find(strmap *m, const char *s, int64_t len, int add) {
  if (m->cap == 0) {
    if (!add) return -1;
    if (strmap_grow(m)) return -2;
  }
  uint64_t h = hash_bytes(s, len) & m->mask;
  /* the map grows before it is half full, so a probe meets an empty slot;
     the bound only keeps a broken invariant from becoming a hang */
  for (uint64_t probes = 0;; h = (h + 1) & m->mask) {
    int64_t e = m->slot[h];
    if (e < 0) break;
    if (m->len[e] == len && memcmp(m->bytes.p + m->off[e], s, (size_t)len) == 0) return e;
    if (++probes > m->mask) return tide_fail("bpe_trainer: string map is full (a sizing bug)"), -2;
  }
  if (!add) return -1;
  if (m->n == m->cap) {
    if (strmap_grow(m)) return -2;
    h = hash_bytes(s, len) & m->mask;
    while (m->slot[h] >= 0) h = (h + 1) & m->mask;
  }
  int64_t e = m->n;
  if (arena_put(&m->bytes, s, len, &m->off[e])) return -2;
  m->len[e] = len;
  m->val[e] = 0;
  m->slot[h] = e;
  m->n++;
  return e;
}

static void strmap_free(strmap *m) {
  free(m->bytes.p); free(m->off); free(m->len); free(m->val); free(m->slot);
  memset(m, 0, sizeof *m);
}

/* Pair (left << 32 | right) -> index into per-pair arrays; open addressing. */
typedef struct {
  uint64_t *key;   /* UINT64_MAX: empty */
  int32_t *idx;
  uint64_t mask;
  int64_t n;
} pairmap;

#define NO_PAIR UINT64_MAX

static int pairmap_grow(pairmap *m) {
  uint64_t cap = m->key ? 2 * (m->mask + 1) : 4096;
  uint64_t *key = malloc(cap * sizeof *key);
  int32_t *idx = malloc(cap * sizeof *idx);
  if (!key || !idx) { free(key); free(idx); return tide_fail("bpe_trainer: out of memory"); }
  for (uint64_t i = 0; i < cap; i++) key[i] = NO_PAIR;
  if (m->key) {
    for (uint64_t i = 0; i <= m->mask; i++) {
      if (m->key[i] == NO_PAIR) continue;
      uint64_t h = hash_u64(m->key[i]) & (cap - 1);
      while (key[h] != NO_PAIR) h = (h + 1) & (cap - 1);
      key[h] = m->key[i];
      idx[h] = m->idx[i];
    }
  }
  free(m->key); free(m->idx);
  m->key = key; m->idx = idx; m->mask = cap - 1;
  return 0;
}

/* The index of pair k, or -1 when absent; with add (next index given) it is inserted. */
static int64_t pairmap_find(pairmap *m, uint64_t k, int32_t add_as) {
  uint64_t h = hash_u64(k) & m->mask;
  for (uint64_t probes = 0;; h = (h + 1) & m->mask) {  /* bounded as in strmap_find */
    if (m->key[h] == k) return m->idx[h];
    if (m->key[h] == NO_PAIR) break;
    if (++probes > m->mask) return tide_fail("bpe_trainer: pair map is full (a sizing bug)"), -2;
  }
  if (add_as < 0) return -1;
  if ((uint64_t)(m->n + 1) * 2 > m->mask + 1) {
    if (pairmap_grow(m)) return -2;
    h = hash_u64(k) & m->mask;
    while (m->key[h] != NO_PAIR) h = (h + 1) & m->mask;
  }
  m->key[h] = k;
  m->idx[h] = add_as;
  m->n++;
  return add_as;
}

/* A heap entry: a pair, its count when pushed, and the words to rewrite. */
typedef struct {
  int64_t count;
  uint32_t left, right;
  int32_t *pos;
  int64_t npos;
} entry;

/* Whether a is popped before b: larger count, then smaller pair. */
static int before(const entry *a, const entry *b) {
  if (a->count != b->count) return a->count > b->count;
  if (a->left != b->left) return a->left < b->left;
  return a->right < b->right;
}

typedef struct { entry *e; int64_t n, cap; } heap;

static int heap_push(heap *h, entry x) {
  if (h->n == h->cap) {
    int64_t cap = h->cap ? 2 * h->cap : 1024;
    entry *e = realloc(h->e, (size_t)cap * sizeof *e);
    if (!e) { free(x.pos); return tide_fail("bpe_trainer: out of memory"); }
    h->e = e; h->cap = cap;
  }
  int64_t i = h->n++;
  while (i > 0) {
    int64_t p = (i - 1) / 2;
    if (!before(&x, &h->e[p])) break;
    h->e[i] = h->e[p];
    i = p;
  }
  h->e[i] = x;
  return 0;
}

static entry heap_pop(heap *h) {
  entry top = h->e[0], x = h->e[--h->n];
  int64_t i = 0;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && before(&h->e[c + 1], &h->e[c])) c++;
    if (!before(&h->e[c], &x)) break;
    h->e[i] = h->e[c];
    i = c;
  }
  if (h->n > 0) h->e[i] = x;
  return top;
}

typedef struct state state;

struct tide_bpe_trainer {
  strmap pieces;         /* raw piece bytes -> count */
  /* the result of the last train (the merges so far while one runs) */
  strmap tokens;         /* byte-mapped token string -> id, entries in id order */
  ivec ml, mr, mn;       /* per merge: left, right and resulting token ids */
  state *st;             /* the merge loop's state between tide_bpe_trainer_merge_some calls; NULL when none runs */
};

static void state_free(state *st);

int tide_bpe_trainer_new(tide_bpe_trainer **out) {
  if (!out) return tide_fail("bpe_trainer_new: out is NULL");
  *out = calloc(1, sizeof **out);
  if (!*out) return tide_fail("bpe_trainer_new: out of memory");
  return 0;
}

static void clear_result(tide_bpe_trainer *t) {
  strmap_free(&t->tokens);
  free(t->ml.v); free(t->mr.v); free(t->mn.v);
  memset(&t->ml, 0, sizeof t->ml); memset(&t->mr, 0, sizeof t->mr); memset(&t->mn, 0, sizeof t->mn);
  state_free(t->st);
  t->st = NULL;
}

void tide_bpe_trainer_free(tide_bpe_trainer *t) {
  if (!t) return;
  strmap_free(&t->pieces);
  clear_result(t);
  free(t);
}

/* Counts the pieces of texts [lo, hi) into m. */
static int count_into(strmap *m, const char *const *texts, const int64_t *lens, int64_t lo, int64_t hi) {
  for (int64_t k = lo; k < hi; k++) {
    const unsigned char *s = (const unsigned char *)texts[k];
    for (int64_t i = 0, len = lens[k]; i < len;) {
      int64_t j = tide_pretok_next(s, len, i);
      int64_t e = strmap_find(m, texts[k] + i, j - i, 1);
      if (e < 0) return -1;
      m->val[e]++;
      i = j;
    }
  }
  return 0;
}

int tide_bpe_trainer_add_text(tide_bpe_trainer *t, const char *text, int64_t len) {
  if (!t) return tide_fail("bpe_trainer_add_text: trainer is NULL");
  if (len < 0 || (len > 0 && !text)) return tide_fail("bpe_trainer_add_text: bad text (length %lld)", (long long)len);
  return count_into(&t->pieces, &text, &len, 0, 1);
}

int tide_bpe_trainer_add_texts(tide_bpe_trainer *t, int64_t n, const char *const *texts, const int64_t *lens) {
  if (!t) return tide_fail("bpe_trainer_add_texts: trainer is NULL");
  if (n < 0 || (n > 0 && (!texts || !lens))) return tide_fail("bpe_trainer_add_texts: bad arguments (n = %lld)", (long long)n);
  for (int64_t k = 0; k < n; k++)
    if (lens[k] < 0 || (lens[k] > 0 && !texts[k]))
      return tide_fail("bpe_trainer_add_texts: text %lld is NULL or has length %lld", (long long)k, (long long)lens[k]);
  /* Each thread counts a contiguous share of the texts into a map of its
     own (the probes of one shared map are cache misses that would also
     need a lock); the maps are then added into the trainer's, thread by
     thread. The merges do not depend on the order pieces were first seen,
     as Hugging Face's (hash-ordered) trainer shows, so neither does this. */
  int nt = 1;
  #ifdef _OPENMP
  nt = omp_get_max_threads();
  #endif
  int64_t total = 0;
  for (int64_t k = 0; k < n; k++) total += lens[k];
  if (nt > n) nt = (int)(n ? n : 1);
  if (nt <= 1 || total < (1 << 20)) return count_into(&t->pieces, texts, lens, 0, n);
  strmap *local = calloc((size_t)nt, sizeof *local);
  if (!local) return tide_fail("bpe_trainer_add_texts: out of memory");
  int failed = 0;
  char msg[256] = "";
  #pragma omp parallel num_threads(nt)
  {
    int id = 0;
    #ifdef _OPENMP
    id = omp_get_thread_num();
    #endif
    if (count_into(&local[id], texts, lens, n * id / nt, n * (id + 1) / nt) != 0) {
      #pragma omp critical(tide_bpe_add_texts_err)
      if (!failed) { failed = 1; snprintf(msg, sizeof msg, "%s", tide_last_error()); }
    }
  }
  int rc = 0;
  for (int i = 0; i < nt; i++) {
    const strmap *m = &local[i];
    for (int64_t e = 0; !failed && rc == 0 && e < m->n; e++) {
      int64_t f = strmap_find(&t->pieces, m->bytes.p + m->off[e], m->len[e], 1);
      if (f < 0) rc = -1; else t->pieces.val[f] += m->val[e];
    }
    strmap_free(&local[i]);
  }
  free(local);
  if (failed) return tide_fail("bpe_trainer_add_texts: %s", msg);
  return rc;
}

int64_t tide_bpe_trainer_piece_count(const tide_bpe_trainer *t) { return t ? t->pieces.n : 0; }

/* Adds token s as the next id unless present; its id in *id. */
static int add_token(strmap *tok, const char *s, int64_t len, int32_t *id) {
  int64_t n0 = tok->n, e = strmap_find(tok, s, len, 1);
  if (e < 0) return -1;
  if (e == n0) tok->val[e] = e;
  *id = (int32_t)tok->val[e];
  return 0;
}

/* Number of UTF-8 characters in s (the unit of max_token_length). */
static int64_t char_count(const char *s, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

static int put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F));
  return 2;  /* byte-level chars are all below U+0800 */
}

struct state {
  int32_t *sym;      /* all words' symbols */
  int64_t *start;    /* per word: first symbol */
  int32_t *len;      /* per word: current length */
  int64_t *count;    /* per word */
  int64_t nwords;
  int64_t *tchars;   /* per token id: length in characters */
  int64_t ntchars;
  pairmap pm;
  int64_t *pcount;   /* per pair index */
  uint64_t *pkey;
  int64_t npairs, pcap;
  heap q;
  ivec *wtu;         /* per pair index: words where it was created this step */
  ivec touched;      /* pair indexes with a non-empty wtu */
  int64_t vocab_size, min_frequency, max_len;
  int64_t wanted;    /* merges wanted when the merge loop began */
};

static void state_free(state *st) {
  if (!st) return;
  for (int64_t i = 0; i < st->q.n; i++) free(st->q.e[i].pos);
  for (int64_t i = 0; i < st->npairs; i++) free(st->wtu[i].v);
  free(st->q.e); free(st->wtu); free(st->touched.v); free(st->pcount); free(st->pkey);
  free(st->pm.key); free(st->pm.idx);
  free(st->sym); free(st->start); free(st->len); free(st->count); free(st->tchars);
  free(st);
}

/* The index of pair (l, r), created with count 0 when absent. */
static int64_t pair_index(state *st, uint32_t l, uint32_t r) {
  uint64_t k = (uint64_t)l << 32 | r;
  int64_t i = pairmap_find(&st->pm, k, -1);
  if (i != -1) return i;
  if (st->npairs == st->pcap) {
    int64_t cap = st->pcap ? 2 * st->pcap : 4096;
    int64_t *pc = realloc(st->pcount, (size_t)cap * sizeof *pc);
    if (pc) st->pcount = pc;
    uint64_t *pk = realloc(st->pkey, (size_t)cap * sizeof *pk);
    if (pk) st->pkey = pk;
    ivec *w = realloc(st->wtu, (size_t)cap * sizeof *w);
    if (w) st->wtu = w;
    if (!pc || !pk || !w) { tide_fail("bpe_trainer: out of memory"); return -2; }
    st->pcap = cap;
  }
  i = st->npairs;
  if (pairmap_find(&st->pm, k, (int32_t)i) < 0) return -2;
  st->pcount[i] = 0;
  st->pkey[i] = k;
  memset(&st->wtu[i], 0, sizeof st->wtu[i]);
  st->npairs++;
  return i;
}

/* Records a change of a pair's occurrences in word w (HF's Word::merge changes). */
static int change(state *st, uint32_t l, uint32_t r, int32_t delta, int32_t w) {
  int64_t p = pair_index(st, l, r);
  if (p < 0) return -1;
  st->pcount[p] += delta * st->count[w];
  if (delta > 0) {
    ivec *v = &st->wtu[p];
    if (v->n == 0) TIDE_TRY(ivec_push(&st->touched, (int32_t)p));
    if (v->n == 0 || v->v[v->n - 1] != w) TIDE_TRY(ivec_push(v, w));
  }
  return 0;
}

/* Rewrites word w, pair (c1, c2) -> rep, scanning left to right as HF does. */
static int merge_word(state *st, int32_t w, int32_t c1, int32_t c2, int32_t rep, int64_t max_len) {
  int32_t *s = st->sym + st->start[w];
  int32_t n = st->len[w];
  int64_t rl = st->tchars[rep];
  for (int32_t i = 0; i < n; i++) {
    if (s[i] != c1 || i + 1 >= n || s[i + 1] != c2) continue;
    if (i > 0) {
      TIDE_TRY(change(st, (uint32_t)s[i - 1], (uint32_t)c1, -1, w));
      if (st->tchars[s[i - 1]] + rl < max_len) TIDE_TRY(change(st, (uint32_t)s[i - 1], (uint32_t)rep, 1, w));
    }
    s[i] = rep;
    memmove(s + i + 1, s + i + 2, (size_t)(n - i - 2) * sizeof *s);
    n--;
    if (i < n - 1) {
      TIDE_TRY(change(st, (uint32_t)c2, (uint32_t)s[i + 1], -1, w));
      if (st->tchars[s[i + 1]] + rl < max_len) TIDE_TRY(change(st, (uint32_t)rep, (uint32_t)s[i + 1], 1, w));
    }
  }
  st->len[w] = n;
  return 0;
}

static int tchars_set(state *st, int32_t id, int64_t chars) {
  if (id >= st->ntchars) {
    int64_t cap = st->ntchars ? 2 * st->ntchars : 1024;
    while (cap <= id) cap *= 2;
    int64_t *p = realloc(st->tchars, (size_t)cap * sizeof *p);
    if (!p) return tide_fail("bpe_trainer: out of memory");
    st->tchars = p;
    st->ntchars = cap;
  }
  st->tchars[id] = chars;
  return 0;
}

/* Everything before the first merge: specials, alphabet, words, pair counts and the heap. */
static int setup(tide_bpe_trainer *t, state *st, const char *const *specials, const int64_t *special_lens,
                 int32_t nspecial, int32_t full_alphabet) {
  strmap *tok = &t->tokens;
  int32_t id;
  for (int32_t i = 0; i < nspecial; i++) {
    TIDE_TRY(add_token(tok, specials[i], special_lens[i], &id));
    TIDE_TRY(tchars_set(st, id, char_count(specials[i], special_lens[i])));
  }
  /* The alphabet: the bytes seen (or all 256), by their characters' code points. */
  int seen[256] = {0};
  const strmap *pc = &t->pieces;
  for (int64_t e = 0; e < pc->n; e++)
    for (int64_t k = 0; k < pc->len[e]; k++) seen[(unsigned char)pc->bytes.p[pc->off[e] + k]] = 1;
  uint32_t cps[256];
  int ncp = 0;
  for (int b = 0; b < 256; b++)
    if (full_alphabet || seen[b]) cps[ncp++] = tide_bpe_byte_char((unsigned)b);
  for (int i = 1; i < ncp; i++)
    for (int j = i; j > 0 && cps[j - 1] > cps[j]; j--) { uint32_t x = cps[j]; cps[j] = cps[j - 1]; cps[j - 1] = x; }
  int32_t byte_id[256];
  for (int i = 0; i < ncp; i++) {
    char u[4];
    int ul = put_utf8(u, cps[i]);
    TIDE_TRY(add_token(tok, u, ul, &id));
    TIDE_TRY(tchars_set(st, id, 1));
  }
  for (int b = 0; b < 256; b++) {
    char u[4];
    int ul = put_utf8(u, tide_bpe_byte_char((unsigned)b));
    int64_t e = strmap_find(tok, u, ul, 0);
    byte_id[b] = e < 0 ? -1 : (int32_t)tok->val[e];
  }
  /* The words as symbol arrays. */
  st->nwords = pc->n;
  int64_t nsym = pc->bytes.n;
  st->sym = malloc((size_t)(nsym + 1) * sizeof *st->sym);
  st->start = malloc((size_t)(st->nwords + 1) * sizeof *st->start);
  st->len = malloc((size_t)(st->nwords + 1) * sizeof *st->len);
  st->count = malloc((size_t)(st->nwords + 1) * sizeof *st->count);
  if (!st->sym || !st->start || !st->len || !st->count) return tide_fail("bpe_trainer_train: out of memory");
  int64_t at = 0;
  for (int64_t w = 0; w < st->nwords; w++) {
    if (pc->len[w] > INT32_MAX) return tide_fail("bpe_trainer_train: a piece of %lld bytes is too long", (long long)pc->len[w]);
    st->start[w] = at;
    st->count[w] = pc->val[w];
    for (int64_t k = 0; k < pc->len[w]; k++) {
      int32_t b = byte_id[(unsigned char)pc->bytes.p[pc->off[w] + k]];
      if (b >= 0) st->sym[at++] = b;
    }
    st->len[w] = (int32_t)(at - st->start[w]);
  }
  /* Pair counts and where each pair occurs. */
  TIDE_TRY(pairmap_grow(&st->pm));
  for (int64_t w = 0; w < st->nwords; w++) {
    const int32_t *s = st->sym + st->start[w];
    for (int32_t i = 0; i + 1 < st->len[w]; i++) TIDE_TRY(change(st, (uint32_t)s[i], (uint32_t)s[i + 1], 1, (int32_t)w));
  }
  for (int64_t k = 0; k < st->touched.n; k++) {
    int32_t p = st->touched.v[k];
    ivec *v = &st->wtu[p];
    entry x = { st->pcount[p], (uint32_t)(st->pkey[p] >> 32), (uint32_t)st->pkey[p], v->v, v->n };
    memset(v, 0, sizeof *v);
    if (x.count > 0) TIDE_TRY(heap_push(&st->q, x)); else free(x.pos);
  }
  st->touched.n = 0;
  st->wanted = st->vocab_size - tok->n;
  return 0;
}

/* Up to max_merges merges; *finished when the loop has ended (vocab_size
   reached, the heap empty or the best count too low). */
static int merge_some(tide_bpe_trainer *t, state *st, int64_t max_merges, int *finished) {
  strmap *tok = &t->tokens;
  int32_t id;
  ivec *ml = &t->ml, *mr = &t->mr, *mn = &t->mn;
  int64_t vocab_size = st->vocab_size, min_frequency = st->min_frequency, max_len = st->max_len;
  int64_t merged = 0;
  int rc = 0;
  *finished = 0;
  while (tok->n < vocab_size && st->q.n > 0) {
    if (merged >= max_merges) return 0;
    entry top = heap_pop(&st->q);
    int64_t p = pairmap_find(&st->pm, (uint64_t)top.left << 32 | top.right, -1);
    int64_t cur = st->pcount[p];
    if (top.count != cur) {
      top.count = cur;
      if ((rc = heap_push(&st->q, top))) break;
      continue;
    }
    if (top.count < 1 || top.count < min_frequency) { free(top.pos); *finished = 1; return 0; }
    int64_t lo = tok->off[top.left], ll = tok->len[top.left], ro = tok->off[top.right], rl = tok->len[top.right];
    char *buf = malloc((size_t)(ll + rl + 1));
    if (!buf) { free(top.pos); rc = tide_fail("bpe_trainer_train: out of memory"); break; }
    memcpy(buf, tok->bytes.p + lo, (size_t)ll);   /* before add_token: it may move the arena */
    memcpy(buf + ll, tok->bytes.p + ro, (size_t)rl);
    rc = add_token(tok, buf, ll + rl, &id);
    free(buf);
    if (!rc) rc = tchars_set(st, id, st->tchars[top.left] + st->tchars[top.right]);
    if (!rc) rc = ivec_push(ml, (int32_t)top.left);
    if (!rc) rc = ivec_push(mr, (int32_t)top.right);
    if (!rc) rc = ivec_push(mn, id);
    merged++;
    for (int64_t k = 0; !rc && k < top.npos; k++)
      rc = merge_word(st, top.pos[k], (int32_t)top.left, (int32_t)top.right, id, max_len);
    free(top.pos);
    if (rc) break;
    for (int64_t k = 0; k < st->touched.n; k++) {
      int32_t q = st->touched.v[k];
      ivec *v = &st->wtu[q];
      entry x = { st->pcount[q], (uint32_t)(st->pkey[q] >> 32), (uint32_t)st->pkey[q], v->v, v->n };
      memset(v, 0, sizeof *v);
      if (x.count > 0) { if (!rc) rc = heap_push(&st->q, x); else free(x.pos); }
      else free(x.pos);
    }
    st->touched.n = 0;
    if (rc) break;
  }
  if (!rc) *finished = 1;
  return rc ? -1 : 0;  /* on failure the caller clears the result */
}

int tide_bpe_trainer_begin(tide_bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, int64_t max_token_length,
                           const char *const *specials, const int64_t *special_lens, int32_t nspecial, int32_t full_alphabet) {
  if (!t) return tide_fail("bpe_trainer_train: trainer is NULL");
  if (vocab_size < 0 || vocab_size > INT32_MAX) return tide_fail("bpe_trainer_train: vocab_size must be in [0, 2^31), got %lld", (long long)vocab_size);
  if (min_frequency < 0) return tide_fail("bpe_trainer_train: min_frequency must be >= 0, got %lld", (long long)min_frequency);
  if (nspecial < 0 || (nspecial > 0 && (!specials || !special_lens))) return tide_fail("bpe_trainer_train: bad special tokens (%d)", (int)nspecial);
  for (int32_t i = 0; i < nspecial; i++)
    if (special_lens[i] <= 0 || !specials[i]) return tide_fail("bpe_trainer_train: special token %d is empty", (int)i + 1);
  clear_result(t);
  t->st = calloc(1, sizeof *t->st);
  if (!t->st) return tide_fail("bpe_trainer_train: out of memory");
  t->st->vocab_size = vocab_size;
  t->st->min_frequency = min_frequency;
  t->st->max_len = max_token_length > 0 ? max_token_length : INT64_MAX;
  if (setup(t, t->st, specials, special_lens, nspecial, full_alphabet)) { clear_result(t); return -1; }
  return 0;
}

int tide_bpe_trainer_merge_some(tide_bpe_trainer *t, int64_t max_merges, int32_t *done) {
  if (!t) return tide_fail("bpe_trainer_merge_some: trainer is NULL");
  if (!done) return tide_fail("bpe_trainer_merge_some: done is NULL");
  if (!t->st) { *done = 1; return 0; }
  int finished = 0;
  if (merge_some(t, t->st, max_merges < 0 ? INT64_MAX : max_merges, &finished)) { clear_result(t); return -1; }
  if (finished) { state_free(t->st); t->st = NULL; }
  *done = finished;
  return 0;
}

int64_t tide_bpe_trainer_merges_wanted(const tide_bpe_trainer *t) { return t && t->st ? t->st->wanted : 0; }

int tide_bpe_trainer_train(tide_bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, int64_t max_token_length,
                           const char *const *specials, const int64_t *special_lens, int32_t nspecial, int32_t full_alphabet) {
  if (tide_bpe_trainer_begin(t, vocab_size, min_frequency, max_token_length, specials, special_lens, nspecial, full_alphabet))
    return -1;
  int32_t done = 0;
  return tide_bpe_trainer_merge_some(t, -1, &done);
}

int64_t tide_bpe_trainer_vocab_size(const tide_bpe_trainer *t) { return t ? t->tokens.n : 0; }

const char *tide_bpe_trainer_token(const tide_bpe_trainer *t, int64_t id, int64_t *len) {
  if (!t || id < 0 || id >= t->tokens.n) return NULL;
  if (len) *len = t->tokens.len[id];
  return t->tokens.bytes.p + t->tokens.off[id];
}

int64_t tide_bpe_trainer_merge_count(const tide_bpe_trainer *t) { return t ? t->ml.n : 0; }

int tide_bpe_trainer_merge(const tide_bpe_trainer *t, int64_t i, int32_t *left, int32_t *right, int32_t *result) {
  if (!t || i < 0 || i >= t->ml.n) return -1;
  if (left) *left = t->ml.v[i];
  if (right) *right = t->mr.v[i];
  if (result) *result = t->mn.v[i];
  return 0;
}
