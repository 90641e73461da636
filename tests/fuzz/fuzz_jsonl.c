/* Fuzz target for the JSON Lines extractor (runtime/jsonl.c), and now and
   then the line reader (runtime/lines.c). Any input line must give 1, 0 or
   -1: -1 with a "column C: expected ..." message (C within the line), 0 only
   for a blank line, 1 with fields whose keys and values are NUL-terminated
   and of sane kinds. The named-fields mode must agree with the all-fields
   mode (the last repeat of a key wins), and both with runtime/json.c's
   strict parser, except where jsonl.c is documented to be lenient (raw
   control characters, lone surrogates, numbers beyond the double range).

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON: build/tests/fuzz_jsonl)
   and, with TIDE_FUZZ_REPLAY_MAIN, as tests/fuzz_jsonl_replay: run on files
   it replays them (a crash libFuzzer found); run bare it feeds seeded
   mutations of valid CodeParrot-like lines, plain and through damaged gzip
   files, which ctest does on every run. */
#include "json.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_jsonl: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

static const char *const wanted[] = {"content", "repo_name", "a", "", "b", "a\n", "license", "content",
                                     "b.c", "a.b", "b.c.d", "answers.text", "b.", ".b", "b.c"};
#define NWANTED ((int32_t)(sizeof wanted / sizeof wanted[0]))

/* json.c's error is one of the strict rules jsonl.c relaxes. */
static int lenient_reason(const char *e) {
  return strstr(e, "control character") || strstr(e, "lone ") || strstr(e, "out of the range");
}

static int blank(const uint8_t *d, size_t n) {
  size_t i = 0;
  if (n >= 3 && d[0] == 0xef && d[1] == 0xbb && d[2] == 0xbf) i = 3;
  for (; i < n; i++)
    if (d[i] != ' ' && d[i] != '\t' && d[i] != '\r' && d[i] != '\n') return 0;
  return 1;
}

/* Field i of x, checked for sanity. */
static int32_t get(const tide_jsonl *x, int32_t i, size_t size, const char **k, int64_t *kl, const char **v, int64_t *vl) {
  int32_t kind = -1;
  REQUIRE(tide_jsonl_field(x, i, k, kl, &kind, v, vl) == 0);
  REQUIRE(*k && *kl >= 0 && (*k)[*kl] == 0);
  REQUIRE(kind >= TIDE_JV_MISSING && kind <= TIDE_JV_RAW);
  if (kind == TIDE_JV_STRING || kind == TIDE_JV_NUMBER || kind == TIDE_JV_RAW) {
    REQUIRE(*v && *vl >= 0 && (size_t)*vl <= size && (*v)[*vl] == 0);
    if (kind == TIDE_JV_NUMBER) {
      char *end;
      strtod(*v, &end);
      REQUIRE(end == *v + *vl);  /* a JSON number is all a C number */
    }
    if (kind == TIDE_JV_RAW) REQUIRE(**v == '[' || **v == '{');
  } else {
    REQUIRE(*v == NULL && *vl == 0);
  }
  return kind;
}

/* The value of node c in json.c's document equals what jsonl gave. */
static void same_value(const tide_json *d, int64_t c, int32_t kind, const char *v, int64_t vl) {
  int32_t t = tide_json_type(d, c);
  switch (t) {
    case TIDE_JSON_STRING: {
      int64_t jl;
      const char *js = tide_json_string(d, c, &jl);
      REQUIRE(kind == TIDE_JV_STRING && vl == jl && memcmp(v, js, (size_t)jl) == 0);
      break;
    }
    case TIDE_JSON_NUMBER: REQUIRE(kind == TIDE_JV_NUMBER && strtod(v, NULL) == tide_json_number(d, c)); break;
    case TIDE_JSON_TRUE: REQUIRE(kind == TIDE_JV_TRUE); break;
    case TIDE_JSON_FALSE: REQUIRE(kind == TIDE_JV_FALSE); break;
    case TIDE_JSON_NULL: REQUIRE(kind == TIDE_JV_NULL); break;
    default: {
      REQUIRE(kind == TIDE_JV_RAW);
      tide_json *sub = NULL;
      REQUIRE(tide_json_parse(v, vl, &sub) == 0);
      REQUIRE(tide_json_type(sub, 0) == t && tide_json_length(sub, 0) == tide_json_length(d, c));
      tide_json_free(sub);
    }
  }
}

/* A dotted name with no top-level key of its spelling: the value at its path
   (each step the last member with that key, through objects only) in
   json.c's document, when json.c accepts the line. */
static void path_value(const char *line, size_t size, int rc, const char *name, int32_t kind, const char *v, int64_t vl) {
  tide_json *d = NULL;
  if (rc != 1 || tide_json_parse(line, (int64_t)size, &d) != 0) {
    tide_json_free(d);
    return;  /* an error, or one of jsonl.c's leniencies: checked by get() */
  }
  int64_t node = 0;
  const char *p = name;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    node = tide_json_type(d, node) == TIDE_JSON_OBJECT ? tide_json_find(d, node, p, n) : -1;
    if (node < 0 || !dot) break;
    p = dot + 1;
  }
  if (node < 0) REQUIRE(kind == TIDE_JV_MISSING && v == NULL);
  else same_value(d, node, kind, v, vl);
  tide_json_free(d);
}

/* The input as a file through tide_lines: the lines put back together with
   '\n' are the input (a gzip magic aside, which makes it a damaged gzip). */
static void through_lines(const uint8_t *data, size_t size) {
  char path[] = "/tmp/tide_fuzz_jsonl_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return;
  REQUIRE(write(fd, data, size) == (ssize_t)size);
  close(fd);
  tide_lines *r = NULL;
  REQUIRE(tide_lines_open(path, &r) == 0);
  int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  /* half the inputs with a small maximum line length: longer lines are
     skipped (2), each one a whole line over the maximum */
  int64_t max = size > 0 && (data[size - 1] & 1) ? 1 + data[0] % 48 : (int64_t)256 << 20;
  REQUIRE(tide_lines_set_max_line(r, max) == 0);
  size_t at = 0;
  const char *l;
  int64_t len;
  int rc;
  while ((rc = tide_lines_next(r, &l, &len)) == 1 || rc == 2) {
    if (rc == 2) {
      REQUIRE(strstr(tide_last_error(), path) && strstr(tide_last_error(), "longer than the maximum"));
      if (!gz) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - (data + at)) : size - at;
        REQUIRE((int64_t)n > max);
        at += n + (nl != NULL);
      }
      continue;
    }
    REQUIRE(len >= 0 && len <= max);
    if (!gz) {
      REQUIRE(at + (size_t)len <= size && memcmp(l, data + at, (size_t)len) == 0);
      at += (size_t)len;
      REQUIRE(at == size || data[at] == '\n');
      at += at < size;
    }
  }
  REQUIRE(rc == 0 || (rc == -1 && gz && strstr(tide_last_error(), path)));
  if (!gz) REQUIRE(at == size);
  int64_t fb, tb, fs;
  tide_lines_counts(r, &fb, &tb, &fs);
  REQUIRE(fs == (int64_t)size && fb <= fs);
  if (!gz) REQUIRE(tb == (int64_t)size && fb == fs);
  tide_lines_close(r);
  unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tide_jsonl *all = NULL, *some = NULL;
  int64_t lens[NWANTED];
  for (int32_t i = 0; i < NWANTED; i++) lens[i] = (int64_t)strlen(wanted[i]);
  REQUIRE(tide_jsonl_new(NULL, NULL, 0, &all) == 0);
  REQUIRE(tide_jsonl_new(wanted, lens, NWANTED, &some) == 0);
  const char *line = (const char *)data;
  int rc = tide_jsonl_parse(all, line, (int64_t)size);
  REQUIRE(rc == -1 || rc == 0 || rc == 1);
  char err[256] = "";
  if (rc == -1) snprintf(err, sizeof err, "%s", tide_last_error());
  REQUIRE(tide_jsonl_parse(some, line, (int64_t)size) == rc);
  REQUIRE(tide_jsonl_count(some) == NWANTED);
  if (rc == -1) {
    const char *e = err;
    REQUIRE(strcmp(e, tide_last_error()) == 0);  /* both modes fail the same way */
    long long col = 0;
    REQUIRE(sscanf(e, "column %lld: expected", &col) == 1 && strstr(e, ": expected "));
    REQUIRE(col >= 1 && col <= (long long)size + 1);
    REQUIRE(tide_jsonl_count(all) == 0);
  }
  REQUIRE((rc == 0) == blank(data, size));
  if (rc != 1) REQUIRE(tide_jsonl_count(all) == 0);
  const char *k, *v, *sk, *sv;
  int64_t kl, vl, skl, svl;
  int32_t n = tide_jsonl_count(all);
  /* each named field is the last member with its key, or missing */
  for (int32_t j = 0; j < NWANTED; j++) {
    int32_t sk_kind = get(some, j, size, &sk, &skl, &sv, &svl);
    REQUIRE(skl == lens[j] && memcmp(sk, wanted[j], (size_t)skl) == 0);
    int32_t last = -1;
    for (int32_t i = 0; i < n; i++) {
      get(all, i, size, &k, &kl, &v, &vl);
      if (kl == skl && memcmp(k, sk, (size_t)kl) == 0) last = i;
    }
    if (last < 0 && strchr(wanted[j], '.')) {
      path_value(line, size, rc, wanted[j], sk_kind, sv, svl);
    } else if (last < 0) {
      REQUIRE(sk_kind == TIDE_JV_MISSING && sv == NULL);
    } else {
      int32_t kind = get(all, last, size, &k, &kl, &v, &vl);
      REQUIRE(kind == sk_kind && vl == svl && (vl == 0 || memcmp(v, sv, (size_t)vl) == 0));
    }
  }
  /* against the strict parser */
  tide_json *d = NULL;
  if (tide_json_parse(line, (int64_t)size, &d) == 0) {
    if (tide_json_type(d, 0) == TIDE_JSON_OBJECT) {
      REQUIRE(rc == 1 && n == tide_json_length(d, 0));
      for (int32_t i = 0; i < n; i++) {
        int32_t kind = get(all, i, size, &k, &kl, &v, &vl);
        int64_t jkl;
        const char *jk = tide_json_key(d, 0, i, &jkl);
        REQUIRE(kl == jkl && memcmp(k, jk, (size_t)kl) == 0);
        same_value(d, tide_json_child(d, 0, i), kind, v, vl);
      }
    } else {
      REQUIRE(rc == -1 && strstr(err, "an object"));
    }
    tide_json_free(d);
  } else if (rc == 1) {
    /* json.c refused the line: only for a documented leniency */
    const char *e = tide_last_error();
    if (!lenient_reason(e)) {
      fprintf(stderr, "fuzz_jsonl: jsonl accepts a line json.c refuses: %s\n%.*s\n", e, (int)(size > 300 ? 300 : size), line);
      abort();
    }
  }
  /* now and then, the bytes as a file through the line reader */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
  if (h % 16 == 0) through_lines(data, size);
  tide_jsonl_free(all);
  tide_jsonl_free(some);
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
/* Valid lines to mutate: the CodeParrot schema and every construct. */
static const char *const seeds[] = {
  ("{\"repo_name\":\"org/repo\",\"path\":\"src/a.py\",\"copies\":\"3\",\"size\":\"96\",\"content\":\"import os\\n\\n"
   "def f(x):\\n\\treturn \\\"\\\\n\\\" + x  # caf\\u00e9 \\ud83d\\ude00\\n\",\"license\":\"mit\"}"),
  "{\"a\": [1, -2.5e-3, 0, -0, 1E+2, true, false, null], \"b\": {\"c\": \"d\\n\\u00e9\"}, \"\": {}, \"a\": \"again\"}",
  "{\"content\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\xc3\xa9\xff\", \"license\":null, \"a\\n\":[[[[]]]], \"b\":123456789012345678901234}",
  "\xef\xbb\xbf {\"repo_name\" : \"x\" , \"content\" : \"\" } \r",
  "{\"content\":\"raw\ttab \x01 and \\ud800 lone\",\"b\":1e400}",
  "{}",
  "   ",
  ("{\"q_id\":\"7\",\"answers\":{\"a_id\":[\"x\",\"y\"],\"text\":[\"One.\",\"Two \\u00e9\"],\"score\":[1,2]},"
   "\"b\":{\"c\":{\"d\":true,\"e\":[{}]},\"c\":{\"d\":null}},\"a\":{\"b\":1},\"a.b\":\"literal\",\"a\":{}}"),
  "{\"b\":{\"c\\u0041\":1,\"\\u0063\":{\"d\":\"esc\"},\"\":2},\"\":{\"b\":3}}",
};

#include "fuzz_driver.h"
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) { return fuzz_next(&rng); }

static const char alphabet[] = "{}[]\",:0123456789-+.eE\\u tfnrlasDdCc8x\n\r\t\x01\xc3\xa9\xff";

/* n bytes of text gzipped (one or two members), as zlib's deflate writes them. */
static size_t gzip_bytes(const uint8_t *text, size_t n, uint8_t *out, size_t cap) {
  size_t total = 0, half = n / 2;
  int members = next() % 2 ? 2 : 1;
  for (int m = 0; m < members; m++) {
    const uint8_t *src = members == 1 ? text : m == 0 ? text : text + half;
    size_t len = members == 1 ? n : m == 0 ? half : n - half;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = out + total;
    zs.avail_out = (uInt)(cap - total);
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    total += zs.total_out;
    deflateEnd(&zs);
  }
  return total;
}

/* A gzip of text, whole or damaged: whole lines are text's, and a damaged
   one ends in an error naming the file (lines before it may be garbled only
   past the damage, so only the first is compared when there is damage). */
static void gzip_run(const uint8_t *text, size_t n) {
  static uint8_t z[1 << 16];
  size_t zn = gzip_bytes(text, n, z, sizeof z);
  int damage = (int)(next() % 3);
  if (damage == 1) zn = next() % zn;  /* truncated */
  if (damage == 2) for (int i = 0; i < 3; i++) z[next() % zn] ^= (uint8_t)(1 + next() % 255);
  char path[] = "/tmp/tide_fuzz_jsonl_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0 && write(fd, z, zn) == (ssize_t)zn);
  close(fd);
  tide_lines *r = NULL;
  REQUIRE(tide_lines_open(path, &r) == 0);
  size_t at = 0;
  const char *l;
  int64_t len;
  int rc;
  while ((rc = tide_lines_next(r, &l, &len)) == 1) {
    if (damage == 0 || (damage == 1 && zn > 20)) {
      REQUIRE(at + (size_t)len <= n && memcmp(l, text + at, (size_t)len) == 0);
      at += (size_t)len + 1;
    }
  }
  if (damage == 0) REQUIRE(rc == 0 && at >= n);
  else REQUIRE(rc == 0 || (rc == -1 && strstr(tide_last_error(), path) && strstr(tide_last_error(), "compressed byte")));
  if (damage == 1 && zn < 18) REQUIRE(rc == -1 || zn < 2);  /* no whole member fits in under 18 bytes */
  tide_lines_close(r);
  unlink(path);
}

int main(int argc, char **argv) {
  static uint8_t data[1 << 20];
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(20000), ok = 0, blanks = 0, gz = 0;
  size_t nseeds = sizeof seeds / sizeof seeds[0];
  for (long r = 0; r < runs; r++) {
    const char *s = seeds[next() % nseeds];
    size_t n = strlen(s);
    memcpy(data, s, n);
    n = fuzz_mutate(data, n, 4000, alphabet, sizeof alphabet - 1, &rng);
    /* the checks inside depend on whether the line parses; count those */
    tide_jsonl *x = NULL;
    REQUIRE(tide_jsonl_new(NULL, NULL, 0, &x) == 0);
    int rc = tide_jsonl_parse(x, (const char *)data, (int64_t)n);
    ok += rc == 1;
    blanks += rc == 0;
    tide_jsonl_free(x);
    LLVMFuzzerTestOneInput(data, n);
    if (r % 50 == 0) {
      /* several lines through a gzip file, whole or damaged */
      size_t m = n;
      for (int i = 0; i < 3 && m + n + 1 < sizeof data / 2; i++) {
        data[m++] = '\n';
        memcpy(data + m, data, n);
        m += n;
      }
      gzip_run(data, m);
      gz++;
    }
  }
  /* nesting at and past the limit */
  for (int depth = 510; depth <= 513; depth++) {
    memcpy(data, "{\"a\":", 5);
    memset(data + 5, '[', (size_t)depth);
    memset(data + 5 + depth, ']', (size_t)depth);
    data[5 + 2 * depth] = '}';
    LLVMFuzzerTestOneInput(data, 6 + 2 * (size_t)depth);
  }
  /* nesting at and past the limit under a followed path */
  for (int depth = 509; depth <= 513; depth++) {
    memcpy(data, "{\"b\":{\"c\":", 11);
    memset(data + 11, '[', (size_t)depth);
    memset(data + 11 + depth, ']', (size_t)depth);
    memcpy(data + 11 + 2 * depth, "}}", 2);
    LLVMFuzzerTestOneInput(data, 13 + 2 * (size_t)depth);
  }
  printf("%ld mutated lines ran without a crash (%ld objects, %ld blank, %ld errors; %ld gzip files)\n", runs, ok, blanks,
         runs - ok - blanks, gz);
  return 0;
}
#endif
