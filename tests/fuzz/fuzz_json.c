/* Fuzz target for the JSON parser (runtime/json.c). Any input must either
   fail with a "json: line L, column C: ..." message, or give a document
   whose every accessor behaves: children inside the node array, strings
   NUL-terminated, key lookups finding the last repeat, and a document that,
   written back out (strings through tide_json_quote, numbers as %.17g),
   parses to the same document, which also checks that numbers are correctly
   rounded (and a lone number against strtod).

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON: build/tests/fuzz_json)
   and, with TIDE_FUZZ_REPLAY_MAIN, as tests/fuzz_json_replay: run on files it
   replays them (a crash libFuzzer found); run bare it feeds seeded mutations
   of valid documents, which ctest does on every run. */
#include "json.h"
#include "error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_json: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

typedef struct { char *p; size_t len, cap; } buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 256;
    while (c < b->len + n + 1) c *= 2;
    b->p = realloc(b->p, c);
    REQUIRE(b->p);
    b->cap = c;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void quote(buf *b, const char *s, size_t n) {
  REQUIRE(tide_json_quote(&b->p, &b->len, &b->cap, s, n) == 0);
}

/* Checks node and its subtree and writes it back out as JSON. */
static void walk(const tide_json *d, int64_t node, buf *out) {
  int32_t t = tide_json_type(d, node);
  int64_t len = -1, n = tide_json_length(d, node);
  REQUIRE(t >= TIDE_JSON_NULL && t <= TIDE_JSON_OBJECT);
  if (t != TIDE_JSON_ARRAY && t != TIDE_JSON_OBJECT) REQUIRE(n == 0 && tide_json_child(d, node, 0) == -1);
  if (t != TIDE_JSON_STRING) REQUIRE(tide_json_string(d, node, &len) == NULL && len == 0);
  if (t != TIDE_JSON_NUMBER) REQUIRE(isnan(tide_json_number(d, node)));
  switch (t) {
    case TIDE_JSON_NULL: put(out, "null", 4); return;
    case TIDE_JSON_TRUE: put(out, "true", 4); return;
    case TIDE_JSON_FALSE: put(out, "false", 5); return;
    case TIDE_JSON_NUMBER: {
      double v = tide_json_number(d, node);
      REQUIRE(isfinite(v));
      int64_t i;
      if (tide_json_int64(d, node, &i)) REQUIRE((double)i == v);
      char num[40];
      int k = snprintf(num, sizeof num, "%.17g", v);
      put(out, num, (size_t)k);
      return;
    }
    case TIDE_JSON_STRING: {
      const char *s = tide_json_string(d, node, &len);
      REQUIRE(s && len >= 0 && s[len] == 0);
      quote(out, s, (size_t)len);
      return;
    }
    default: break;
  }
  int obj = t == TIDE_JSON_OBJECT;
  put(out, obj ? "{" : "[", 1);
  REQUIRE(tide_json_child(d, node, n) == -1 && tide_json_child(d, node, -1) == -1);
  for (int64_t i = 0; i < n; i++) {
    int64_t c = tide_json_child(d, node, i);
    REQUIRE(c > node);  /* nodes are numbered in document order */
    if (i) put(out, ",", 1);
    if (obj) {
      int64_t kl = -1;
      const char *k = tide_json_key(d, node, i, &kl);
      REQUIRE(k && kl >= 0 && k[kl] == 0);
      /* lookup finds this member or a later one with the same key */
      int64_t f = tide_json_find(d, node, k, (size_t)kl);
      REQUIRE(f >= c);
      if (n <= 64) {
        int64_t last = i;
        for (int64_t j = i + 1; j < n; j++) {
          int64_t jl;
          const char *kj = tide_json_key(d, node, j, &jl);
          if (jl == kl && memcmp(kj, k, (size_t)kl) == 0) last = j;
        }
        REQUIRE(f == tide_json_child(d, node, last));
      }
      quote(out, k, (size_t)kl);
      put(out, ":", 1);
    } else {
      REQUIRE(tide_json_key(d, node, i, NULL) == NULL);
    }
    walk(d, c, out);
  }
  if (obj) {
    int64_t dup = tide_json_dup_member(d, node);
    if (dup >= 0) {
      REQUIRE(dup > 0 && dup < n);
      int64_t kl, found = 0;
      const char *k = tide_json_key(d, node, dup, &kl);
      for (int64_t j = 0; j < dup && !found; j++) {
        int64_t jl;
        const char *kj = tide_json_key(d, node, j, &jl);
        found = jl == kl && memcmp(kj, k, (size_t)kl) == 0;
      }
      REQUIRE(found);
    } else if (n <= 64) {
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) {
          int64_t il, jl;
          const char *ki = tide_json_key(d, node, i, &il), *kj = tide_json_key(d, node, j, &jl);
          REQUIRE(!(il == jl && memcmp(ki, kj, (size_t)il) == 0));
        }
    }
  }
  put(out, obj ? "}" : "]", 1);
}

/* Two documents hold the same values (numbers bit for bit). */
static int same(const tide_json *a, int64_t x, const tide_json *b, int64_t y) {
  int32_t t = tide_json_type(a, x);
  if (t != tide_json_type(b, y)) return 0;
  if (t == TIDE_JSON_NUMBER) {
    double u = tide_json_number(a, x), v = tide_json_number(b, y);
    return memcmp(&u, &v, sizeof u) == 0;
  }
  if (t == TIDE_JSON_STRING) {
    int64_t la, lb;
    const char *sa = tide_json_string(a, x, &la), *sb = tide_json_string(b, y, &lb);
    return la == lb && memcmp(sa, sb, (size_t)la) == 0;
  }
  int64_t n = tide_json_length(a, x);
  if (n != tide_json_length(b, y)) return 0;
  for (int64_t i = 0; i < n; i++) {
    if (t == TIDE_JSON_OBJECT) {
      int64_t la, lb;
      const char *ka = tide_json_key(a, x, i, &la), *kb = tide_json_key(b, y, i, &lb);
      if (la != lb || memcmp(ka, kb, (size_t)la) != 0) return 0;
    }
    if (!same(a, tide_json_child(a, x, i), b, tide_json_child(b, y, i))) return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tide_json *d = (tide_json *)&size;  /* must be reset to NULL on failure */
  if (tide_json_parse((const char *)data, (int64_t)size, &d) != 0) {
    REQUIRE(d == NULL);
    REQUIRE(strncmp(tide_last_error(), "json: line ", 11) == 0 || strcmp(tide_last_error(), "json: out of memory") == 0);
    return 0;
  }
  REQUIRE(d != NULL);
  REQUIRE(tide_json_type(d, -1) == -1);
  buf out = {0};
  walk(d, 0, &out);
  tide_json *again = NULL;
  if (tide_json_parse(out.p, (int64_t)out.len, &again) != 0) {
    fprintf(stderr, "fuzz_json: the written-out document does not parse: %s\n%s\n", tide_last_error(), out.p);
    abort();
  }
  REQUIRE(same(d, 0, again, 0));
  /* a lone number: the parser's double is strtod's (the C locale's '.') */
  if (tide_json_type(d, 0) == TIDE_JSON_NUMBER && size < 400) {
    char text[512];
    size_t k = 0;
    for (size_t i = 0; i < size; i++)
      if (data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t' && data[i] != 0xef && data[i] != 0xbb && data[i] != 0xbf)
        text[k++] = (char)data[i];
    text[k] = 0;
    double want = strtod(text, NULL), got = tide_json_number(d, 0);
    if (memcmp(&want, &got, sizeof want) != 0) {
      fprintf(stderr, "fuzz_json: %s parsed to %.17g, strtod says %.17g\n", text, got, want);
      abort();
    }
  }
  tide_json_free(again);
  tide_json_free(d);
  free(out.p);
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
/* Valid documents to mutate: every construct the grammar has. */
static const char *const seeds[] = {
  "{\"a\": [1, -2.5e-3, 0, -0, 1E+2, true, false, null], \"b\": {\"c\": \"d\\n\\u00e9\\uD83D\\uDE00\"}, \"\": {}}",
  "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\xc3\xa9\xff\", 123456789012345678901234, 0.1, 9007199254740993, -9223372036854775808]",
  ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"e\": 4, \"f\": 5, \"g\": 6, \"h\": 7, \"a\": 8, \"ab\": 9},"
   " \"merges\": [\"a b\", \"\\u0120 t\"]}, \"added_tokens\": [{\"id\": 50256, \"special\": true}]}"),
  "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]",
  "  1.7976931348623157e308  ",
  "4.9406564584124654e-324",
  "\xef\xbb\xbf{\"bom\": 1}",
  "\"\\u0000\"",
};

#include "fuzz_driver.h"
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) { return fuzz_next(&rng); }

static const char alphabet[] = "{}[]\",:0123456789-+.eE\\u tfnrlasDdCc8\n\x01\xc3\xa9\xff";

int main(int argc, char **argv) {
  static uint8_t data[1 << 20];
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(20000), ok = 0;
  size_t nseeds = sizeof seeds / sizeof seeds[0];
  for (long r = 0; r < runs; r++) {
    const char *s = seeds[next() % nseeds];
    size_t n = strlen(s);
    memcpy(data, s, n);
    n = fuzz_mutate(data, n, 4000, alphabet, sizeof alphabet - 1, &rng);
    /* the check inside depends on whether the input parses; count those */
    tide_json *d = NULL;
    if (tide_json_parse((const char *)data, (int64_t)n, &d) == 0) ok++;
    tide_json_free(d);
    LLVMFuzzerTestOneInput(data, n);
  }
  /* deep nesting at and past the limit */
  for (int depth = TIDE_JSON_MAX_DEPTH - 1; depth <= TIDE_JSON_MAX_DEPTH + 1; depth++) {
    memset(data, '[', (size_t)depth);
    memset(data + depth, ']', (size_t)depth);
    LLVMFuzzerTestOneInput(data, 2 * (size_t)depth);
  }
  printf("%ld mutated documents ran without a crash (%ld parsed, %ld were errors)\n", runs, ok, runs - ok);
  return 0;
}
#endif
