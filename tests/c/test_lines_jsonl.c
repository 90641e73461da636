/* The streaming readers: tide_lines over plain and gzip files (members
   concatenated, CRLF, no final newline, empty, a 5 MB line, buffer refills,
   truncated and corrupt gzip delivering every whole line before the damage,
   missing files), and tide_jsonl over JSON Lines (every escape, surrogates,
   invalid UTF-8 kept, missing and repeated keys, nested values as raw text,
   numbers and literals, every malformed case with its column), checked
   against runtime/json.c's parser on valid lines. */
#include "json.h"
#include "error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

/* temp files ------------------------------------------------------------------ */

static char *paths[64];
static int npaths;

static const char *tmp_path(void) {
  char tmpl[] = "/tmp/tide_test_lines_XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) { perror("mkstemp"); exit(1); }
  close(fd);
  paths[npaths] = strdup(tmpl);
  return paths[npaths++];
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) { perror(path); exit(1); }
}

static const char *plain_file(const void *data, size_t n) {
  const char *p = tmp_path();
  write_file(p, data, n);
  return p;
}

static const char *gzip_file(const void *data, size_t n, int level) {
  const char *p = tmp_path();
  char mode[8];
  snprintf(mode, sizeof mode, "wb%d", level);
  gzFile g = gzopen(p, mode);
  if (!g) { perror(p); exit(1); }
  size_t done = 0;
  while (done < n) {
    unsigned k = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
    if (gzwrite(g, (const char *)data + done, k) != (int)k) { printf("gzwrite failed\n"); exit(1); }
    done += k;
  }
  gzclose(g);
  return p;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(1); }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)sz + 1);
  if (sz && fread(b, 1, (size_t)sz, f) != (size_t)sz) { perror(path); exit(1); }
  fclose(f);
  *n = (size_t)sz;
  return b;
}

/* line reading ---------------------------------------------------------------- */

/* Reads every line of path; they must be the expected ones (split of text on
   '\n', a final empty piece dropped), and the end a clean 0. */
static void expect_lines(const char *path, const char *text, size_t n, int line) {
  tide_lines *r = NULL;
  if (tide_lines_open(path, &r) != 0) { printf("FAIL line %d: open: %s\n", line, tide_last_error()); failures++; return; }
  size_t at = 0;
  int64_t count = 0;
  for (;;) {
    const char *l;
    int64_t len;
    int rc = tide_lines_next(r, &l, &len);
    if (rc != 1) {
      if (rc != 0) { printf("FAIL line %d: error %s\n", line, tide_last_error()); failures++; }
      break;
    }
    count++;
    const char *nl = memchr(text + at, '\n', n - at);
    size_t want = nl ? (size_t)(nl - (text + at)) : n - at;
    if (at >= n || (size_t)len != want || memcmp(l, text + at, want) != 0) {
      printf("FAIL line %d: line %lld is %lld bytes, expected %zu\n", line, (long long)count, (long long)len, want);
      failures++;
      break;
    }
    CHECK(tide_lines_lineno(r) == count);
    at += want + (nl ? 1 : 0);
  }
  if (at != n) { printf("FAIL line %d: stopped at byte %zu of %zu\n", line, at, n); failures++; }
  const char *l;
  int64_t len, fb, tb, fs;
  CHECK(tide_lines_next(r, &l, &len) == 0);  /* the end stays the end */
  tide_lines_counts(r, &fb, &tb, &fs);
  CHECK(tb == (int64_t)n);
  CHECK(fb == fs);
  tide_lines_close(r);
}
#define EXPECT_LINES(path, text, n) expect_lines(path, text, n, __LINE__)

static void test_plain(void) {
  const char *t = "a\nbb\n\nccc";
  EXPECT_LINES(plain_file(t, strlen(t)), t, strlen(t));
  t = "x\ny\n";
  const char *p = plain_file(t, strlen(t));
  EXPECT_LINES(p, t, strlen(t));
  tide_lines *r;
  const char *l;
  int64_t len, fb, tb, fs;
  CHECK(tide_lines_open(p, &r) == 0);
  CHECK(tide_lines_lineno(r) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 1 && len == 1 && l[0] == 'x');
  CHECK(tide_lines_next(r, &l, &len) == 1 && len == 1 && l[0] == 'y');
  CHECK(tide_lines_next(r, &l, &len) == 0 && tide_lines_lineno(r) == 2);
  tide_lines_counts(r, &fb, &tb, &fs);
  CHECK(fb == 4 && tb == 4 && fs == 4);
  tide_lines_close(r);
  /* CRLF: the '\r' stays */
  t = "a\r\nb\r\n";
  p = plain_file(t, strlen(t));
  CHECK(tide_lines_open(p, &r) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 1 && len == 2 && memcmp(l, "a\r", 2) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 1 && len == 2 && memcmp(l, "b\r", 2) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 0);
  tide_lines_close(r);
  /* empty file, a lone newline, one byte, a file starting with 0x1f only */
  EXPECT_LINES(plain_file("", 0), "", 0);
  CHECK(tide_lines_open(paths[npaths - 1], &r) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 0 && tide_lines_lineno(r) == 0);
  tide_lines_close(r);
  EXPECT_LINES(plain_file("\n", 1), "\n", 1);
  EXPECT_LINES(plain_file("z", 1), "z", 1);
  EXPECT_LINES(plain_file("\x1f" "abc\n", 5), "\x1f" "abc\n", 5);
  /* bytes of every value, NUL included */
  char all[512];
  for (int i = 0; i < 512; i++) all[i] = (char)(i * 7 + 3);
  EXPECT_LINES(plain_file(all, sizeof all), all, sizeof all);
}

/* Text of many lines of varied lengths (some long), poorly compressible. */
static char *make_text(size_t n, uint64_t seed) {
  char *t = malloc(n);
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    unsigned v = (unsigned)(s >> 33);
    t[i] = (v % 61 == 0) ? '\n' : (char)('!' + v % 90);
    if (v % 100003 == 0) t[i] = '\r';
  }
  return t;
}

static void test_gzip(void) {
  const char *t = "a\nbb\n\nccc";
  EXPECT_LINES(gzip_file(t, strlen(t), 6), t, strlen(t));
  EXPECT_LINES(gzip_file("", 0, 6), "", 0);
  t = "a\r\nb\r\n";
  EXPECT_LINES(gzip_file(t, strlen(t), 6), t, strlen(t));
  /* two members, one ending mid-line; and a .txt name means nothing */
  size_t n1, n2, n3;
  unsigned char *a = slurp(gzip_file("one\ntwo\npar", 11, 9), &n1);
  unsigned char *b = slurp(gzip_file("tial\nthree\n", 11, 1), &n2);
  unsigned char *c = slurp(gzip_file("", 0, 1), &n3);
  unsigned char *cat = malloc(n1 + n2 + n3 + n1);
  memcpy(cat, a, n1);
  memcpy(cat + n1, c, n3);  /* an empty member between */
  memcpy(cat + n1 + n3, b, n2);
  memcpy(cat + n1 + n3 + n2, a, n1);
  const char *want = "one\ntwo\npartial\nthree\none\ntwo\npar";
  EXPECT_LINES(plain_file(cat, n1 + n2 + n3 + n1), want, strlen(want));
  free(a); free(b); free(c); free(cat);
  /* many refills: 6 MB of lines, plain and gzip (fast and best) */
  size_t n = 6u << 20;
  char *big = make_text(n, 1);
  EXPECT_LINES(plain_file(big, n), big, n);
  EXPECT_LINES(gzip_file(big, n, 1), big, n);
  EXPECT_LINES(gzip_file(big, n, 9), big, n);
  /* two big members, the boundary deep inside a read and inside a line */
  size_t k = n / 3 + 17, za, zb;
  a = slurp(gzip_file(big, k, 1), &za);
  b = slurp(gzip_file(big + k, n - k, 1), &zb);
  cat = malloc(za + zb);
  memcpy(cat, a, za);
  memcpy(cat + za, b, zb);
  EXPECT_LINES(plain_file(cat, za + zb), big, n);
  free(a); free(b); free(cat);
  free(big);
  /* a 5 MB line between short ones */
  n = 5u << 20;
  char *line = malloc(n + 20);
  memcpy(line, "first\n", 6);
  for (size_t i = 6; i < n + 6; i++) line[i] = (char)('a' + (i * 2654435761u >> 7) % 26);
  memcpy(line + n + 6, "\nlast\n", 6);
  EXPECT_LINES(plain_file(line, n + 12), line, n + 12);
  EXPECT_LINES(gzip_file(line, n + 12, 6), line, n + 12);
  free(line);
}

/* The number of whole lines zlib itself decodes from a damaged gzip. */
static int64_t lines_zlib_decodes(const unsigned char *z, size_t n) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return -1;
  static char out[1 << 16];
  int64_t lines = 0;
  zs.next_in = (Bytef *)z;
  zs.avail_in = (uInt)n;
  for (;;) {
    zs.next_out = (Bytef *)out;
    zs.avail_out = sizeof out;
    int rc = inflate(&zs, Z_NO_FLUSH);
    for (char *p = out; p < (char *)zs.next_out; p++) lines += *p == '\n';
    if (rc != Z_OK) break;
  }
  inflateEnd(&zs);
  return lines;
}

/* Reads a damaged file: whole lines equal to text's, then -1 with the texts. */
static int64_t expect_damage(const char *path, const char *text, size_t n, const char *msg, const char *msg2, int line) {
  tide_lines *r = NULL;
  CHECK(tide_lines_open(path, &r) == 0);
  size_t at = 0;
  int64_t count = 0, wrong = 0;
  const char *l;
  int64_t len;
  int rc;
  while ((rc = tide_lines_next(r, &l, &len)) == 1) {
    count++;
    const char *nl = at < n ? memchr(text + at, '\n', n - at) : NULL;
    size_t want = nl ? (size_t)(nl - (text + at)) : n - at;
    if (!wrong && (!nl || (size_t)len != want || memcmp(l, text + at, want) != 0)) wrong = count;
    at += want + 1;
  }
  if (rc != -1) { printf("FAIL line %d: damaged file read to the end (%d)\n", line, rc); failures++; }
  const char *e = tide_last_error();
  if (!strstr(e, path) || !strstr(e, msg) || (msg2 && !strstr(e, msg2)) || !strstr(e, "compressed byte")) {
    printf("FAIL line %d: message \"%s\"\n", line, e);
    failures++;
  }
  CHECK(tide_lines_next(r, &l, &len) == -1);  /* and stays failed */
  CHECK(strstr(tide_last_error(), path) != NULL);
  tide_lines_close(r);
  return wrong ? -wrong : count;
}

static void test_damaged(void) {
  size_t n = 3u << 20, zn;
  char *text = make_text(n, 7);
  unsigned char *z = slurp(gzip_file(text, n, 6), &zn);
  /* truncated at several points: exactly the lines zlib decodes come out */
  size_t cuts[] = {2, 10, 11, 100, zn / 3, zn / 2, zn - 9, zn - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    const char *p = plain_file(z, cuts[i]);
    char off[32];
    snprintf(off, sizeof off, "byte %zu", cuts[i]);
    int64_t got = expect_damage(p, text, n, "truncated gzip", off, __LINE__);
    int64_t want = lines_zlib_decodes(z, cuts[i]);
    if (got != want) { printf("FAIL: cut at %zu gave %lld lines, zlib decodes %lld\n", cuts[i], (long long)got, (long long)want); failures++; }
    if (cuts[i] == zn / 2) CHECK(got > 1000);
  }
  /* corrupt in the middle: lines come out, then a zlib error with an offset */
  unsigned char *bad = malloc(zn);
  memcpy(bad, z, zn);
  for (size_t i = zn / 2; i < zn / 2 + 64; i++) bad[i] ^= 0x5a;
  int64_t got = expect_damage(plain_file(bad, zn), text, n, "corrupt gzip data", "zlib:", __LINE__);
  CHECK(got != 0);
  if (got < 0) got = -got;  /* lines decoded just before detection may be garbled */
  CHECK(got > 1000);
  /* a wrong CRC in the trailer: every line, then the error */
  memcpy(bad, z, zn);
  bad[zn - 6] ^= 1;
  got = expect_damage(plain_file(bad, zn), text, n, "corrupt gzip data", "check", __LINE__);
  CHECK(got == lines_zlib_decodes(z, zn));
  /* garbage after a whole member */
  unsigned char *g = malloc(zn + 8);
  memcpy(g, z, zn);
  memcpy(g + zn, "garbage!", 8);
  expect_damage(plain_file(g, zn + 8), text, n, "corrupt gzip data", "header", __LINE__);
  /* only the magic */
  expect_damage(plain_file("\x1f\x8b", 2), "", 0, "truncated gzip", "byte 2", __LINE__);
  free(g);
  free(bad);
  free(z);
  free(text);
}

static void test_open_errors(void) {
  tide_lines *r = (tide_lines *)&r;
  CHECK(tide_lines_open("/tmp/tide_no_such_dir/file.jsonl.gz", &r) == -1 && r == NULL);
  CHECK(strstr(tide_last_error(), "/tmp/tide_no_such_dir/file.jsonl.gz") && strstr(tide_last_error(), "No such file"));
  CHECK(tide_lines_open("/tmp", &r) == -1 && r == NULL);
  CHECK(strstr(tide_last_error(), "/tmp") != NULL);
  CHECK(tide_lines_open(NULL, &r) == -1);
  CHECK(tide_lines_open("/tmp/x", NULL) == -1);
  const char *l;
  int64_t len, fb = 5, tb = 5, fs = 5;
  CHECK(tide_lines_next(NULL, &l, &len) == -1);
  CHECK(tide_lines_lineno(NULL) == 0);
  tide_lines_counts(NULL, &fb, &tb, &fs);
  CHECK(fb == 0 && tb == 0 && fs == 0);
  tide_lines_close(NULL);
}

/* JSON Lines ---------------------------------------------------------------------- */

static tide_jsonl *extractor(int n, ...) {
  const char *names[16];
  int64_t lens[16];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    names[i] = va_arg(ap, const char *);
    lens[i] = (int64_t)strlen(names[i]);
  }
  va_end(ap);
  tide_jsonl *x = NULL;
  if (tide_jsonl_new(names, lens, n, &x) != 0) { printf("FAIL: jsonl_new: %s\n", tide_last_error()); exit(1); }
  return x;
}

static int parse(tide_jsonl *x, const char *line) {
  return tide_jsonl_parse(x, line, (int64_t)strlen(line));
}

/* Field i has the key, kind and value (value bytes n, or strlen when n < 0). */
static void field_is(tide_jsonl *x, int i, const char *key, int kind, const char *val, int64_t n, int line) {
  const char *k, *v;
  int64_t kl, vl;
  int32_t kd;
  if (n < 0 && val) n = (int64_t)strlen(val);
  if (tide_jsonl_field(x, i, &k, &kl, &kd, &v, &vl) != 0) {
    printf("FAIL line %d: field %d: %s\n", line, i, tide_last_error());
    failures++;
    return;
  }
  int ok = kl == (int64_t)strlen(key) && memcmp(k, key, (size_t)kl) == 0 && kd == kind;
  if (val) ok = ok && v && vl == n && memcmp(v, val, (size_t)n) == 0 && v[n] == 0;
  else ok = ok && vl == 0;
  if (!ok) {
    printf("FAIL line %d: field %d is %.*s kind %d value %.*s (%lld bytes)\n", line, i, (int)kl, k, kd, v ? (int)vl : 0,
           v ? v : "", (long long)vl);
    failures++;
  }
}
#define FIELD(x, i, key, kind, val) field_is(x, i, key, kind, val, -1, __LINE__)
#define FIELDN(x, i, key, kind, val, n) field_is(x, i, key, kind, val, n, __LINE__)

/* All-fields parse of a valid line agrees with json.c member by member. */
static void agrees_with_json(const char *line, size_t n, int at) {
  tide_json *d = NULL;
  if (tide_json_parse(line, (int64_t)n, &d) != 0) { printf("FAIL line %d: json.c: %s\n", at, tide_last_error()); failures++; return; }
  tide_jsonl *x = extractor(0);
  int rc = tide_jsonl_parse(x, line, (int64_t)n);
  if (rc != 1) { printf("FAIL line %d: jsonl: %d %s\n", at, rc, tide_last_error()); failures++; }
  else {
    CHECK(tide_json_type(d, 0) == TIDE_JSON_OBJECT);
    CHECK(tide_jsonl_count(x) == tide_json_length(d, 0));
    for (int32_t i = 0; i < tide_jsonl_count(x) && i < tide_json_length(d, 0); i++) {
      const char *k, *v, *jk;
      int64_t kl, vl, jkl, jl;
      int32_t kind;
      tide_jsonl_field(x, i, &k, &kl, &kind, &v, &vl);
      jk = tide_json_key(d, 0, i, &jkl);
      CHECK(kl == jkl && memcmp(k, jk, (size_t)kl) == 0);
      int64_t c = tide_json_child(d, 0, i);
      int32_t t = tide_json_type(d, c);
      if (t == TIDE_JSON_STRING) {
        const char *js = tide_json_string(d, c, &jl);
        CHECK(kind == TIDE_JV_STRING && vl == jl && memcmp(v, js, (size_t)vl) == 0);
      } else if (t == TIDE_JSON_NUMBER) {
        CHECK(kind == TIDE_JV_NUMBER && strtod(v, NULL) == tide_json_number(d, c));
      } else if (t == TIDE_JSON_ARRAY || t == TIDE_JSON_OBJECT) {
        tide_json *sub = NULL;
        CHECK(kind == TIDE_JV_RAW && tide_json_parse(v, vl, &sub) == 0 && tide_json_type(sub, 0) == t &&
              tide_json_length(sub, 0) == tide_json_length(d, c));
        tide_json_free(sub);
      } else {
        CHECK(kind == (t == TIDE_JSON_TRUE ? TIDE_JV_TRUE : t == TIDE_JSON_FALSE ? TIDE_JV_FALSE : TIDE_JV_NULL));
      }
    }
  }
  tide_jsonl_free(x);
  tide_json_free(d);
}
#define AGREES(line) agrees_with_json(line, strlen(line), __LINE__)

static void test_jsonl_values(void) {
  tide_jsonl *x = extractor(3, "s", "n", "missing");
  CHECK(tide_jsonl_count(x) == 3);  /* before any parse: all missing */
  FIELD(x, 2, "missing", TIDE_JV_MISSING, NULL);
  /* every escape */
  CHECK(parse(x, "{\"s\": \"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\tA\\u0041e\\u00e9E\\u20ACg\\ud83d\\ude00z\\u0000.\", \"n\": -12.5e+3}") == 1);
  FIELDN(x, 0, "s", TIDE_JV_STRING, "q\"b\\s/b\bf\fn\nr\rt\tAAe\xc3\xa9" "E\xe2\x82\xac" "g\xf0\x9f\x98\x80z\0.", 33);
  FIELD(x, 1, "n", TIDE_JV_NUMBER, "-12.5e+3");
  FIELD(x, 2, "missing", TIDE_JV_MISSING, NULL);
  CHECK(tide_jsonl_count(x) == 3);
  /* lone surrogates become U+FFFD (documented in jsonl.c) */
  CHECK(parse(x, "{\"s\":\"\\ud800x\\udc00\\ud800\\u0041\\ud800\\ud800\\udc00\\uDBFF\\uDFFF\"}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd" "A\xef\xbf\xbd\xf0\x90\x80\x80\xf4\x8f\xbf\xbf");
  CHECK(parse(x, "{\"s\":\"\\ud800\"}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "\xef\xbf\xbd");
  /* invalid UTF-8 and raw control characters are kept */
  CHECK(parse(x, "{\"s\":\"\xff\xfe\xc3(\x80\"}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "\xff\xfe\xc3(\x80");
  CHECK(parse(x, "{\"s\":\"a\tb\x01\x1f\"}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "a\tb\x01\x1f");
  /* numbers and literals */
  const char *nums[] = {"0", "-0", "12", "1.5", "1e10", "1E-2", "-0.0e+00", "123456789012345678901234567890", "1e400"};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    char l[128];
    snprintf(l, sizeof l, "{\"n\":%s}", nums[i]);
    CHECK(parse(x, l) == 1);
    FIELD(x, 1, "n", TIDE_JV_NUMBER, nums[i]);
    snprintf(l, sizeof l, "{\"n\" : %s , \"s\":1}", nums[i]);
    CHECK(parse(x, l) == 1);
    FIELD(x, 1, "n", TIDE_JV_NUMBER, nums[i]);
  }
  CHECK(parse(x, "{\"s\":true,\"n\":null,\"missing\":false}") == 1);
  FIELD(x, 0, "s", TIDE_JV_TRUE, NULL);
  FIELD(x, 1, "n", TIDE_JV_NULL, NULL);
  FIELD(x, 2, "missing", TIDE_JV_FALSE, NULL);
  /* nested values come back as their raw text, skipped ones are checked */
  CHECK(parse(x, " {\"n\": {\"a\": [1, 2, {\"b\": null}], \"c\": \"}\"} , \"x\": [[], {}, \"]\\\"\"], \"s\": [ ] }\r") == 1);
  FIELD(x, 1, "n", TIDE_JV_RAW, "{\"a\": [1, 2, {\"b\": null}], \"c\": \"}\"}");
  FIELD(x, 0, "s", TIDE_JV_RAW, "[ ]");
  FIELD(x, 2, "missing", TIDE_JV_MISSING, NULL);
  /* repeated keys: the last wins; an escaped key matches its decoded bytes */
  CHECK(parse(x, "{\"s\":1,\"s\":\"two\",\"\\u006e\":3,\"n\\u0000\":4}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "two");
  FIELD(x, 1, "n", TIDE_JV_NUMBER, "3");
  /* blank lines */
  CHECK(parse(x, "") == 0);
  CHECK(parse(x, " \t\r") == 0);
  CHECK(tide_jsonl_count(x) == 3);
  FIELD(x, 0, "s", TIDE_JV_MISSING, NULL);
  CHECK(parse(x, "{}") == 1);
  FIELD(x, 0, "s", TIDE_JV_MISSING, NULL);
  /* a byte order mark */
  CHECK(parse(x, "\xef\xbb\xbf{\"s\":\"bom\"}") == 1);
  FIELD(x, 0, "s", TIDE_JV_STRING, "bom");
  tide_jsonl_free(x);

  /* all fields, in order, repeats included, escaped keys decoded */
  x = extractor(0);
  CHECK(parse(x, "{\"b\":1,\"a\":\"x\",\"b\":[true],\"k\\ty\":null,\"\":{}}") == 1);
  CHECK(tide_jsonl_count(x) == 5);
  FIELD(x, 0, "b", TIDE_JV_NUMBER, "1");
  FIELD(x, 1, "a", TIDE_JV_STRING, "x");
  FIELD(x, 2, "b", TIDE_JV_RAW, "[true]");
  FIELD(x, 3, "k\ty", TIDE_JV_NULL, NULL);
  FIELD(x, 4, "", TIDE_JV_RAW, "{}");
  const char *k;
  int64_t kl;
  CHECK(tide_jsonl_field(x, 5, &k, &kl, NULL, NULL, NULL) == -1 && k == NULL);
  CHECK(tide_jsonl_field(x, -1, NULL, NULL, NULL, NULL, NULL) == -1);
  CHECK(parse(x, "  ") == 0 && tide_jsonl_count(x) == 0);
  CHECK(parse(x, "{\"a\":1") == -1 && tide_jsonl_count(x) == 0);
  tide_jsonl_free(x);

  /* a name asked for twice gets the value in both places */
  x = extractor(3, "a", "b", "a");
  CHECK(parse(x, "{\"a\":\"v\",\"b\":2}") == 1);
  FIELD(x, 0, "a", TIDE_JV_STRING, "v");
  FIELD(x, 1, "b", TIDE_JV_NUMBER, "2");
  FIELD(x, 2, "a", TIDE_JV_STRING, "v");
  tide_jsonl_free(x);

  /* bad arguments */
  tide_jsonl *y = (tide_jsonl *)&y;
  CHECK(tide_jsonl_new(NULL, NULL, -1, &y) == -1 && y == NULL);
  const char *names[] = {"a", NULL};
  int64_t lens[] = {1, 1};
  CHECK(tide_jsonl_new(names, lens, 2, &y) == -1 && y == NULL);
  CHECK(tide_jsonl_new(names, NULL, 1, &y) == -1);
  CHECK(tide_jsonl_new(names, lens, 1, NULL) == -1);
  CHECK(tide_jsonl_parse(NULL, "{}", 2) == -1);
  CHECK(tide_jsonl_count(NULL) == 0);
  tide_jsonl_free(NULL);
  CHECK(tide_jsonl_new(names, lens, 1, &y) == 0);
  CHECK(tide_jsonl_parse(y, NULL, 0) == 0);
  CHECK(tide_jsonl_parse(y, NULL, 3) == -1);
  tide_jsonl_free(y);
}

/* The line must fail with "column C: expected" and the other text. */
static void bad(tide_jsonl *x, const char *line, int col, const char *text, int at) {
  int rc = parse(x, line);
  char want[64];
  snprintf(want, sizeof want, "column %d: expected", col);
  const char *e = tide_last_error();
  if (rc != -1 || !strstr(e, want) || !strstr(e, text)) {
    printf("FAIL line %d: %s gave %d \"%s\", expected \"%s\" and \"%s\"\n", at, line, rc, rc == -1 ? e : "", want, text);
    failures++;
  }
  tide_json *d = NULL;  /* json.c rejects it too */
  if (tide_json_parse(line, (int64_t)strlen(line), &d) == 0 && tide_json_type(d, 0) == TIDE_JSON_OBJECT) {
    printf("FAIL line %d: json.c accepts %s\n", at, line);
    failures++;
  }
  tide_json_free(d);
}
#define BAD(x, line, col, text) bad(x, line, col, text, __LINE__)

static void test_jsonl_errors(void) {
  tide_jsonl *all = extractor(0), *some = extractor(1, "a");
  tide_jsonl *xs[] = {all, some};
  for (int i = 0; i < 2; i++) {
    tide_jsonl *x = xs[i];
    BAD(x, "{\"a\":\"abc", 10, "closing '\"'");
    BAD(x, "{\"b\":\"abc", 10, "closing '\"'");
    BAD(x, "{\"a\":\"abc\\", 11, "\\uXXXX");
    BAD(x, "{\"a\":\"\\x\"}", 8, "\\uXXXX");
    BAD(x, "{\"b\":\"\\x\"}", 8, "\\uXXXX");
    BAD(x, "{\"a\":\"\\u12G4\"}", 7, "4 hex digits");
    BAD(x, "{\"a\":\"\\u12\"}", 7, "4 hex digits");
    BAD(x, "{\"a\" 1}", 6, "':'");
    BAD(x, "{\"a\":1,}", 8, "trailing comma");
    BAD(x, "{\"a\":1 \"b\":2}", 8, "','");
    BAD(x, "{\"a\":1} x", 9, "end of the line");
    BAD(x, "{} {}", 4, "end of the line");
    BAD(x, "[1]", 1, "an object");
    BAD(x, "\"x\"", 1, "an object");
    BAD(x, "  7", 3, "an object");
    BAD(x, "{", 2, "a string key");
    BAD(x, "{a:1}", 2, "a string key");
    BAD(x, "{\"a\":}", 6, "a value");
    BAD(x, "{\"a\":", 6, "a value");
    BAD(x, "{\"a\":01}", 7, "leading zeros");
    BAD(x, "{\"a\":-}", 7, "a digit");
    BAD(x, "{\"a\":1.}", 8, "decimal point");
    BAD(x, "{\"a\":1e}", 8, "exponent");
    BAD(x, "{\"a\":+1}", 6, "a value");
    BAD(x, "{\"a\":tru}", 9, "'e' of true");
    BAD(x, "{\"a\":nul", 9, "'l' of null");
    BAD(x, "{\"a\":[1,]}", 9, "trailing comma");
    BAD(x, "{\"a\":[1 2]}", 9, "',' or ']'");
    BAD(x, "{\"a\":{\"b\" 1}}", 11, "':'");
    BAD(x, "{\"a\":{\"b\":1,}}", 13, "trailing comma");
    BAD(x, "{\"a\":{1:1}}", 7, "a string key");
    BAD(x, "{\"a\":[\"x]}", 11, "closing");
    BAD(x, "{\"a\":[}", 7, "a value");
  }
  /* nesting: 512 levels in all is fine, 513 is not */
  for (int levels = 511; levels <= 512; levels++) {
    size_t n = 6 + 2 * (size_t)levels;
    char *l = malloc(n + 1);
    memcpy(l, "{\"a\":", 5);
    memset(l + 5, '[', (size_t)levels);
    memset(l + 5 + levels, ']', (size_t)levels);
    l[n - 1] = '}';
    l[n] = 0;
    for (int i = 0; i < 2; i++) {
      int rc = parse(xs[i], l);
      if (levels == 511) CHECK(rc == 1);
      else CHECK(rc == -1 && strstr(tide_last_error(), "512 levels") && strstr(tide_last_error(), "column 517:"));
    }
    tide_json *d = NULL;  /* json.c draws the line in the same place */
    CHECK((tide_json_parse(l, (int64_t)n, &d) == 0) == (levels == 511));
    tide_json_free(d);
    free(l);
  }
  tide_jsonl_free(all);
  tide_jsonl_free(some);
}

/* Appends a JSON string literal of n bytes. */
static size_t put_quoted(char *o, const char *s, size_t n) {
  char *o0 = o;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
    else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
    else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
    else if (c < 0x20) o += sprintf(o, "\\u%04x", c);
    else *o++ = (char)c;
  }
  *o++ = '"';
  return (size_t)(o - o0);
}

static void test_jsonl_against_json(void) {
  AGREES("{\"repo_name\":\"a/b\",\"path\":\"src/x.py\",\"copies\":\"2\",\"size\":\"123\",\"content\":\"def f(x):\\n\\treturn \\\"\\u00e9\\\\\\\"\\n\",\"license\":\"mit\"}");
  AGREES("{\"a\":[1,{\"b\":[]},\"\\ud83d\\ude00\"],\"n\":-1.25E-7,\"t\":true,\"f\":false,\"z\":null,\"a\":0}");
  AGREES("\xef\xbb\xbf {\"\\u00e9\\n\": \"\xff\"} \r");
  AGREES("{}");
  /* a 5 MB content of code with escapes everywhere, in a CodeParrot line, read back through a gzip file */
  size_t n = 5u << 20;
  char *content = malloc(n);
  const char *code = "def f(x):\n\tif x == \"a\\b\": return 'q'  # \x01 \xc3\xa9 \xff\n";
  size_t cl = strlen(code);
  for (size_t i = 0; i < n; i++) content[i] = code[i % cl];
  char *line = malloc(8 * n + 256);
  size_t k = (size_t)sprintf(line, "{\"repo_name\":\"org/repo\",\"path\":\"a/b.py\",\"copies\":\"1\",\"size\":\"%zu\",\"content\":", n);
  k += put_quoted(line + k, content, n);
  k += (size_t)sprintf(line + k, ",\"license\":\"apache-2.0\"}");
  agrees_with_json(line, k, __LINE__);
  line[k++] = '\n';
  k += (size_t)sprintf(line + k, "{\"content\":\"second\"}\n\n");
  tide_lines *r = NULL;
  CHECK(tide_lines_open(gzip_file(line, k, 6), &r) == 0);
  tide_jsonl *x = extractor(2, "content", "license");
  const char *l, *v;
  int64_t len, vl;
  int32_t kind;
  CHECK(tide_lines_next(r, &l, &len) == 1 && tide_jsonl_parse(x, l, len) == 1);
  CHECK(tide_jsonl_field(x, 0, NULL, NULL, &kind, &v, &vl) == 0 && kind == TIDE_JV_STRING && vl == (int64_t)n &&
        memcmp(v, content, n) == 0);
  FIELD(x, 1, "license", TIDE_JV_STRING, "apache-2.0");
  CHECK(tide_lines_next(r, &l, &len) == 1 && tide_jsonl_parse(x, l, len) == 1);
  FIELD(x, 0, "content", TIDE_JV_STRING, "second");
  FIELD(x, 1, "license", TIDE_JV_MISSING, NULL);
  CHECK(tide_lines_next(r, &l, &len) == 1 && len == 0 && tide_jsonl_parse(x, l, len) == 0);
  CHECK(tide_lines_next(r, &l, &len) == 0 && tide_lines_lineno(r) == 3);
  tide_lines_close(r);
  tide_jsonl_free(x);
  free(line);
  free(content);
}

/* One next() call: its return code, and the line when it is 1. */
static int next_is(tide_lines *r, int want_rc, const char *want, const char *in_error, int line) {
  const char *l;
  int64_t len;
  int rc = tide_lines_next(r, &l, &len);
  int ok = rc == want_rc;
  if (ok && rc == 1) ok = len == (int64_t)strlen(want) && memcmp(l, want, (size_t)len) == 0;
  if (ok && in_error) ok = strstr(tide_last_error(), in_error) != NULL;
  if (!ok) {
    printf("FAIL line %d: got rc %d (%s), expected %d\n", line, rc, rc == 1 ? "a line" : tide_last_error(), want_rc);
    failures++;
  }
  return rc;
}
#define NEXT(r, rc, want, err) next_is(r, rc, want, err, __LINE__)

/* Issue 9's gzip bomb: 2 MB holding one 2 GB line took 4.2 GB and ended in
   "string length overflow". A line over the maximum is skipped (2) with a
   message naming the file and line, and the reader goes on after it. */
static void test_max_line(void) {
  const char *text = "ab\nabcdefghij\nabcde\r\ncd\nlast line without newline";
  const char *p = plain_file(text, strlen(text));
  tide_lines *r = NULL;
  CHECK(tide_lines_open(p, &r) == 0);
  CHECK(tide_lines_max_line(r) == (int64_t)256 << 20);
  CHECK(tide_lines_set_max_line(r, 0) == -1 && strstr(tide_last_error(), "maximum line length"));
  CHECK(tide_lines_set_max_line(r, -5) == -1);
  CHECK(tide_lines_set_max_line(r, 6) == 0 && tide_lines_max_line(r) == 6);
  NEXT(r, 1, "ab", NULL);
  NEXT(r, 2, NULL, "line 2 is longer than the maximum of 6 bytes");
  CHECK(strstr(tide_last_error(), p) != NULL);
  NEXT(r, 1, "abcde\r", NULL);  /* exactly the maximum */
  NEXT(r, 1, "cd", NULL);
  NEXT(r, 2, NULL, "line 5 is longer");
  NEXT(r, 0, NULL, NULL);
  CHECK(tide_lines_lineno(r) == 5);
  tide_lines_close(r);

  /* a 3 MB line in gzip, across many refills, between two short ones */
  size_t n = 3u << 20;
  char *big = malloc(n + 16);
  memcpy(big, "x\n", 2);
  memset(big + 2, 'q', n);
  memcpy(big + 2 + n, "\ny\n", 3);
  CHECK(tide_lines_open(gzip_file(big, n + 5, 6), &r) == 0);
  CHECK(tide_lines_set_max_line(r, 1000) == 0);
  NEXT(r, 1, "x", NULL);
  NEXT(r, 2, NULL, "line 2 is longer than the maximum of 1000 bytes");
  NEXT(r, 1, "y", NULL);
  NEXT(r, 0, NULL, NULL);
  tide_lines_close(r);
  free(big);

  /* the default, 256 MiB, holds against a 512 MiB line (512 gzip members of
     1 MiB of 'a'), with memory well below the line's size (262 MiB measured) */
  size_t mb = 1u << 20;
  char *block = malloc(mb);
  memset(block, 'a', mb);
  uLong zcap = compressBound(mb) + 64;
  unsigned char *z = malloc(zcap);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  CHECK(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = (Bytef *)block;
  zs.avail_in = (uInt)mb;
  zs.next_out = z;
  zs.avail_out = (uInt)zcap;
  CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  size_t zn = zcap - zs.avail_out;
  deflateEnd(&zs);
  const char *gp = tmp_path();
  FILE *f = fopen(gp, "wb");
  for (int i = 0; i < 512 && f; i++) fwrite(z, 1, zn, f);
  gzFile tail = NULL;
  if (f) fclose(f);
  tail = gzopen(gp, "ab");
  gzwrite(tail, "\nafter\n", 7);
  gzclose(tail);
  CHECK(tide_lines_open(gp, &r) == 0);
  NEXT(r, 2, NULL, "line 1 is longer than the maximum of 268435456 bytes");
  NEXT(r, 1, "after", NULL);
  NEXT(r, 0, NULL, NULL);
  tide_lines_close(r);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
#if defined(__SANITIZE_ADDRESS__)
  ru.ru_maxrss = 0;  /* AddressSanitizer's quarantine keeps every freed buffer resident */
#endif
  if (ru.ru_maxrss > 420L * 1024) {  /* KiB */
    printf("FAIL: reading a 512 MiB line took %ld MiB\n", ru.ru_maxrss / 1024);
    failures++;
  }
  free(block);
  free(z);
}

/* Dotted names follow paths through objects, as datasets' flatten() names
   the fields of a nested struct; a top-level key of the same spelling wins. */
static void test_jsonl_paths(void) {
  tide_jsonl *x = extractor(5, "answers.text", "answers", "q.a.b", "answers.text", "title");
  /* an ELI5-shaped line: the list inside the struct, and the struct itself */
  CHECK(parse(x, "{\"title\":\"t\",\"answers\":{\"a_id\":[\"x\"],\"text\":[\"One.\", \"Two\"],\"score\":[3]}}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_RAW, "[\"One.\", \"Two\"]");
  FIELD(x, 1, "answers", TIDE_JV_RAW, "{\"a_id\":[\"x\"],\"text\":[\"One.\", \"Two\"],\"score\":[3]}");
  FIELD(x, 2, "q.a.b", TIDE_JV_MISSING, NULL);
  FIELD(x, 3, "answers.text", TIDE_JV_RAW, "[\"One.\", \"Two\"]");
  FIELD(x, 4, "title", TIDE_JV_STRING, "t");
  /* three steps, escaped keys, strings decoded at depth */
  CHECK(parse(x, "{\"q\":{\"\\u0061\":{\"b\":\"caf\\u00e9\",\"c\":1}},\"answers\":{\"text\":\"s\"}}") == 1);
  FIELD(x, 2, "q.a.b", TIDE_JV_STRING, "caf\xc3\xa9");
  FIELD(x, 0, "answers.text", TIDE_JV_STRING, "s");
  /* a flattened dump's top-level key wins over the path, before or after it */
  CHECK(parse(x, "{\"answers\":{\"text\":[\"nested\"]},\"answers.text\":[\"flat\"]}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_RAW, "[\"flat\"]");
  CHECK(parse(x, "{\"answers.text\":[\"flat\"],\"answers\":{\"text\":[\"nested\"]}}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_RAW, "[\"flat\"]");
  /* the last member with a key is the one followed (as json.loads keeps it) */
  CHECK(parse(x, "{\"answers\":{\"text\":[\"first\"]},\"answers\":{\"a_id\":[]}}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_MISSING, NULL);
  CHECK(parse(x, "{\"answers\":{\"text\":[\"first\"]},\"answers\":null}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_MISSING, NULL);
  FIELD(x, 1, "answers", TIDE_JV_NULL, NULL);
  CHECK(parse(x, "{\"answers\":{\"text\":1,\"text\":2}}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_NUMBER, "2");
  /* through arrays and scalars: missing; dotted keys below the top level are not steps */
  CHECK(parse(x, "{\"answers\":[{\"text\":\"in a list\"}],\"q\":{\"a.b\":1}}") == 1);
  FIELD(x, 0, "answers.text", TIDE_JV_MISSING, NULL);
  FIELD(x, 2, "q.a.b", TIDE_JV_MISSING, NULL);
  /* errors inside a followed object name the column, and leave nothing */
  CHECK(parse(x, "{\"answers\":{\"text\":[\"a\",]}}") == -1);
  CHECK(strstr(tide_last_error(), "column 25: expected a value after ','") != NULL);
  FIELD(x, 0, "answers.text", TIDE_JV_MISSING, NULL);
  CHECK(parse(x, "{\"answers\":{\"text\" [1]}}") == -1);
  CHECK(strstr(tide_last_error(), "column 20: expected ':' after an object key") != NULL);
  CHECK(parse(x, "{\"answers\":{\"text\":\"unterminated}}") == -1);
  CHECK(strstr(tide_last_error(), "closing '\"'") != NULL);
  CHECK(parse(x, "{\"answers\":{\"text\":1,}}") == -1);
  CHECK(strstr(tide_last_error(), "no trailing comma") != NULL);
  CHECK(parse(x, "{\"answers\":{\"text\":1}") == -1);
  /* nesting past 512 levels under a followed path is refused as anywhere */
  {
    static char deep[2048];
    int n = snprintf(deep, sizeof deep, "{\"q\":{\"a\":{\"b\":");
    for (int i = 0; i < 520; i++) deep[n++] = '[';
    for (int i = 0; i < 520; i++) deep[n++] = ']';
    n += snprintf(deep + n, sizeof deep - (size_t)n, "}}}");
    CHECK(tide_jsonl_parse(x, deep, n) == -1 && strstr(tide_last_error(), "512 levels") != NULL);
  }
  tide_jsonl_free(x);
  /* a name of 16 or more steps is refused when made */
  const char *long_path = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q";
  int64_t ll = (int64_t)strlen(long_path);
  tide_jsonl *y = NULL;
  CHECK(tide_jsonl_new(&long_path, &ll, 1, &y) == -1 && y == NULL && strstr(tide_last_error(), "at most 16 steps"));
}

int main(void) {
  test_max_line();
  test_plain();
  test_gzip();
  test_damaged();
  test_open_errors();
  test_jsonl_values();
  test_jsonl_errors();
  test_jsonl_paths();
  test_jsonl_against_json();
  for (int i = 0; i < npaths; i++) {
    unlink(paths[i]);
    free(paths[i]);
  }
  if (failures) {
    printf("%d failures\n", failures);
    return 1;
  }
  printf("lines and jsonl: all passed\n");
  return 0;
}
