/* The JSON parser against RFC 8259: valid documents of every kind (escapes,
   surrogate pairs, numbers at the edges of the double range, deep nesting)
   and invalid ones, each of which must fail with a message that says where
   and what was expected. Also lookups in large objects, duplicate keys,
   string quoting, and the parse time of a 2 MB vocab-like object. */
#include "json.h"
#include "error.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static tide_json *parse(const char *s) {
  tide_json *d = NULL;
  if (tide_json_parse(s, (int64_t)strlen(s), &d)) {
    printf("FAIL: %s did not parse: %s\n", s, tide_last_error());
    failures++;
    return NULL;
  }
  return d;
}

/* The document must fail to parse with a message containing each of the texts. */
static void bad_n(const char *s, size_t n, const char *text, const char *text2, int line) {
  tide_json *d = NULL;
  int rc = tide_json_parse(s, (int64_t)n, &d);
  if (rc != -1 || d) {
    printf("FAIL line %d: %.*s parsed but should not\n", line, (int)n, s);
    failures++;
    tide_json_free(d);
    return;
  }
  const char *e = tide_last_error();
  if (!strstr(e, text) || (text2 && !strstr(e, text2))) {
    printf("FAIL line %d: error for %.*s is \"%s\", expected \"%s\"%s%s\n", line, (int)n, s, e, text, text2 ? " and " : "",
           text2 ? text2 : "");
    failures++;
  }
}
#define BAD(s, text) bad_n(s, strlen(s), text, NULL, __LINE__)
#define BAD2(s, text, text2) bad_n(s, strlen(s), text, text2, __LINE__)

static double num(const char *s) {
  tide_json *d = parse(s);
  double v = d ? tide_json_number(d, 0) : NAN;
  if (d) CHECK(tide_json_type(d, 0) == TIDE_JSON_NUMBER);
  tide_json_free(d);
  return v;
}

static int str_is(const char *json, const char *bytes, size_t n) {
  tide_json *d = parse(json);
  if (!d) return 0;
  int64_t len = -1;
  const char *s = tide_json_string(d, 0, &len);
  int ok = s && len == (int64_t)n && memcmp(s, bytes, n) == 0 && s[n] == 0;
  if (!ok) printf("string %s decoded to %lld bytes\n", json, (long long)len);
  tide_json_free(d);
  return ok;
}

static void test_scalars(void) {
  tide_json *d = parse(" null ");
  CHECK(d && tide_json_type(d, 0) == TIDE_JSON_NULL);
  tide_json_free(d);
  d = parse("true");
  CHECK(d && tide_json_type(d, 0) == TIDE_JSON_TRUE);
  tide_json_free(d);
  d = parse("\t\r\nfalse\n");
  CHECK(d && tide_json_type(d, 0) == TIDE_JSON_FALSE);
  tide_json_free(d);
  /* a UTF-8 byte order mark is skipped (RFC 8259 section 8.1 allows ignoring it) */
  d = parse("\xef\xbb\xbf[1]");
  CHECK(d && tide_json_length(d, 0) == 1);
  tide_json_free(d);
}

static void test_numbers(void) {
  CHECK(num("0") == 0 && !signbit(num("0")));
  CHECK(num("-0") == 0 && signbit(num("-0")));
  CHECK(signbit(num("-0.0")) && signbit(num("-0e5")));
  CHECK(num("1.5") == 1.5);
  CHECK(num("-1.5e3") == -1500);
  CHECK(num("1E+2") == 100 && num("1e-2") == 0.01 && num("12e0") == 12);
  CHECK(num("0.1") == 0.1 && num("0.3") == 0.3 && num("3.14159") == 3.14159);
  CHECK(num("1.7976931348623157e308") == DBL_MAX);
  CHECK(num("2.2250738585072014e-308") == DBL_MIN);
  CHECK(num("4.9406564584124654e-324") == 4.9406564584124654e-324);
  CHECK(num("5e-324") == 4.9406564584124654e-324);
  CHECK(num("1e-400") == 0);  /* underflow is not an error */
  CHECK(num("0e99999999999999") == 0);
  CHECK(num("3.141592653589793238462643383279502884197") == 3.141592653589793);
  CHECK(num("123456789012345678901234567890") == 123456789012345678901234567890.0);
  CHECK(num("0.000000000000000000000000000001") == 1e-30);
  CHECK(num("9007199254740993") == 9007199254740992.0);  /* 2^53 + 1 rounds to even */
  CHECK(num("1e22") == 1e22 && num("1e23") == 1e23 && num("8.98846567431158e307") == 8.98846567431158e307);
  /* exact int64 alongside the double */
  tide_json *d = parse("[9007199254740993, -9223372036854775808, 9223372036854775807, 9223372036854775808, 1.0, 1e2, -12]");
  int64_t v = 0;
  CHECK(tide_json_int64(d, tide_json_child(d, 0, 0), &v) && v == 9007199254740993LL);
  CHECK(tide_json_int64(d, tide_json_child(d, 0, 1), &v) && v == INT64_MIN);
  CHECK(tide_json_int64(d, tide_json_child(d, 0, 2), &v) && v == INT64_MAX);
  CHECK(!tide_json_int64(d, tide_json_child(d, 0, 3), &v));
  CHECK(tide_json_number(d, tide_json_child(d, 0, 3)) == 9223372036854775808.0);
  CHECK(!tide_json_int64(d, tide_json_child(d, 0, 4), &v));
  CHECK(!tide_json_int64(d, tide_json_child(d, 0, 5), &v));
  CHECK(tide_json_int64(d, tide_json_child(d, 0, 6), &v) && v == -12);
  CHECK(!tide_json_int64(d, 0, &v));
  tide_json_free(d);
  /* every decimal form a shortest printer can give round-trips bit-exactly */
  uint64_t s = 88172645463325252ull;
  char buf[64];
  for (int i = 0; i < 20000; i++) {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    double x;
    uint64_t bits = s;
    memcpy(&x, &bits, 8);
    if (!isfinite(x)) continue;
    snprintf(buf, sizeof buf, i % 2 ? "%.17g" : "%.6e", x);
    double want = strtod(buf, NULL), got = num(buf);
    if (memcmp(&want, &got, 8) != 0) {
      printf("FAIL: %s parsed to %.17g, strtod gives %.17g\n", buf, got, want);
      failures++;
      break;
    }
  }
}

static void test_strings(void) {
  CHECK(str_is("\"\"", "", 0));
  CHECK(str_is("\"abc\"", "abc", 3));
  CHECK(str_is("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8));
  CHECK(str_is("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6));
  CHECK(str_is("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4));      /* U+1F600 from a surrogate pair */
  CHECK(str_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4));      /* U+10FFFF */
  CHECK(str_is("\"a\\u0000b\"", "a\0b", 3));                        /* NUL inside, length says 3 */
  CHECK(str_is("\"\xc3\xa9\xe6\x97\xa5\"", "\xc3\xa9\xe6\x97\xa5", 5)); /* raw UTF-8 */
  CHECK(str_is("\"\xff\xfe\x80\"", "\xff\xfe\x80", 3));             /* invalid UTF-8 is kept as bytes */
  CHECK(str_is("\"\x7f\"", "\x7f", 1));
  /* quoting any bytes and parsing back gives the same bytes */
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  CHECK(tide_json_quote(&buf, &len, &cap, all, 256) == 0);
  CHECK(buf && strlen(buf) == len);
  tide_json *d = NULL;
  CHECK(tide_json_parse(buf, (int64_t)len, &d) == 0);
  int64_t n = 0;
  const char *s = tide_json_string(d, 0, &n);
  CHECK(s && n == 256 && memcmp(s, all, 256) == 0);
  tide_json_free(d);
  free(buf);
}

static void test_containers(void) {
  tide_json *d = parse("{\"a\": [1, {\"b\": null}, []], \"c\": {}, \"\": \"empty key\", \"a\": 2}");
  if (!d) return;
  CHECK(tide_json_type(d, 0) == TIDE_JSON_OBJECT && tide_json_length(d, 0) == 4);
  int64_t kl;
  CHECK(strcmp(tide_json_key(d, 0, 0, &kl), "a") == 0 && kl == 1);
  CHECK(strcmp(tide_json_key(d, 0, 2, &kl), "") == 0 && kl == 0);
  int64_t arr = tide_json_child(d, 0, 0);
  CHECK(tide_json_type(d, arr) == TIDE_JSON_ARRAY && tide_json_length(d, arr) == 3);
  CHECK(tide_json_number(d, tide_json_child(d, arr, 0)) == 1);
  int64_t inner = tide_json_child(d, arr, 1);
  CHECK(tide_json_type(d, tide_json_get(d, inner, "b")) == TIDE_JSON_NULL);
  CHECK(tide_json_length(d, tide_json_child(d, arr, 2)) == 0);
  CHECK(tide_json_type(d, tide_json_get(d, 0, "c")) == TIDE_JSON_OBJECT);
  /* a repeated key: lookup finds the last (as Python's json.loads), dup_member the repeat */
  CHECK(tide_json_number(d, tide_json_get(d, 0, "a")) == 2);
  CHECK(tide_json_dup_member(d, 0) == 3);
  CHECK(tide_json_dup_member(d, inner) == -1);
  CHECK(tide_json_get(d, 0, "zz") == -1 && tide_json_get(d, arr, "a") == -1);
  CHECK(tide_json_find(d, 0, "a\0", 2) == -1);
  /* accessors on wrong nodes return neutral values */
  CHECK(tide_json_child(d, 0, 4) == -1 && tide_json_child(d, 0, -1) == -1 && tide_json_child(d, arr, 3) == -1);
  CHECK(tide_json_key(d, arr, 0, &kl) == NULL && kl == 0);
  CHECK(tide_json_key(d, 0, 9, NULL) == NULL);
  CHECK(tide_json_type(d, -1) == -1 && tide_json_type(d, 1000) == -1 && tide_json_type(NULL, 0) == -1);
  CHECK(isnan(tide_json_number(d, 0)) && tide_json_string(d, 0, &kl) == NULL && kl == 0);
  CHECK(tide_json_length(d, tide_json_child(d, arr, 0)) == 0 && tide_json_length(NULL, 0) == 0);
  tide_json_free(d);
  tide_json_free(NULL);

  /* nesting: exactly the limit parses, one more is an error naming it */
  int depth = TIDE_JSON_MAX_DEPTH;
  char *deep = malloc(2 * (size_t)depth + 16);
  memset(deep, '[', (size_t)depth);
  memset(deep + depth, ']', (size_t)depth);
  deep[2 * depth] = 0;
  d = parse(deep);
  CHECK(d != NULL);
  tide_json_free(d);
  memset(deep, '[', (size_t)depth + 1);
  memset(deep + depth + 1, ']', (size_t)depth + 1);
  deep[2 * depth + 2] = 0;
  BAD(deep, "nesting deeper than 512 levels");
  memset(deep, '[', 2 * (size_t)depth + 8);  /* unbalanced, far too deep: still just an error */
  deep[2 * depth + 8] = 0;
  BAD(deep, "nesting deeper");
  free(deep);
}

static void test_invalid(void) {
  BAD2("", "line 1, column 1", "expected a JSON value, got end of input");
  BAD("   ", "got end of input");
  BAD2("[1,]", "column 4", "trailing comma before ']'");
  BAD("{\"a\":1,}", "trailing comma before '}'");
  BAD("[1 2]", "expected ',' or ']' after an array element, got '2'");
  BAD("{\"a\":1 \"b\":2}", "expected ',' or '}' after an object member, got '\"'");
  BAD("{\"a\" 1}", "expected ':' after an object key, got '1'");
  BAD("{1:2}", "expected a string key or '}' in an object, got '1'");
  BAD("{\"a\":1,2}", "expected a string key after ',' in an object, got '2'");
  BAD("{'a':1}", "got '''");
  BAD("[1", "expected ',' or ']' after an array element, got end of input");
  BAD("{", "expected a string key or '}'");
  BAD("[", "expected a JSON value, got end of input");
  BAD("// comment\n1", "expected a JSON value, got '/'");
  BAD("/* c */ 1", "got '/'");
  BAD("[1] // trailing", "unexpected '/' after the JSON value");
  BAD("NaN", "expected a JSON value, got 'N'");
  BAD("Infinity", "got 'I'");
  BAD("-Infinity", "expected a digit after '-', got 'I'");
  BAD("[nan]", "invalid literal (expected null)");
  BAD("tru", "invalid literal (expected true)");
  BAD("falsy", "invalid literal (expected false)");
  BAD("falsey", "unexpected 'y' after the JSON value");
  BAD("01", "leading zeros are not allowed");
  BAD("-01", "leading zeros");
  BAD("1.", "expected a digit after the decimal point, got end of input");
  BAD("1.e5", "expected a digit after the decimal point, got 'e'");
  BAD(".5", "expected a JSON value, got '.'");
  BAD("+1", "got '+'");
  BAD("1e", "expected a digit in the exponent");
  BAD("1e+", "expected a digit in the exponent");
  BAD("0x10", "unexpected 'x'");
  BAD("1e400", "number 1e400 is out of the range of a double");
  BAD("-1e400", "number -1e400 is out of the range");
  BAD("[1e309]", "out of the range");
  BAD("\"abc", "unterminated string");
  BAD("\"abc\\", "unterminated string");
  BAD("\"a\tb\"", "control character 0x09 inside a string");
  BAD("\"a\nb\"", "control character 0x0a");
  BAD("\"\\x\"", "invalid escape \\'x'");
  BAD("\"\\U0041\"", "invalid escape");
  BAD("\"\\u12\"", "expected 4 hex digits after \\u");
  BAD("\"\\u12G4\"", "expected 4 hex digits");
  BAD("\"\\uD800\"", "lone high surrogate \\uD800");
  BAD("\"\\uD800\\u0041\"", "lone high surrogate");
  BAD("\"\\uD800\\n\"", "lone high surrogate");
  BAD("\"\\uDC00\"", "lone low surrogate \\uDC00");
  BAD("\"\\uDE00\\uD83D\"", "lone low surrogate");
  BAD("[1] [2]", "unexpected '[' after the JSON value (expected end of input)");
  BAD("\xef\xbb\xbf", "got end of input");
  BAD("\xef\xbb[]", "got byte 0xef");
  bad_n("\"a\"\0", 4, "unexpected byte 0x00 after the JSON value", NULL, __LINE__);
  bad_n("[1,\0]", 5, "expected a JSON value, got byte 0x00", NULL, __LINE__);
  BAD2("{\n  \"a\": 1,\n  \"b\" 2\n}", "line 3, column 7", "expected ':'");
  BAD2("[\r\n1,\r\n  x]", "line 3, column 3", "got 'x'");
  tide_json *d = (tide_json *)1;
  CHECK(tide_json_parse(NULL, 3, &d) == -1 && d == NULL && strstr(tide_last_error(), "no text"));
  CHECK(tide_json_parse("1", -1, &d) == -1 && strstr(tide_last_error(), "negative length"));
  CHECK(tide_json_parse(NULL, 0, &d) == -1 && strstr(tide_last_error(), "end of input"));
  CHECK(tide_json_parse("1", 1, NULL) == -1);
  /* every proper prefix of a document is an error (or, for a number, a shorter valid one) */
  const char *doc = "{\"k\": [1.5e3, \"\\u00e9\\uD83D\\uDE00\", true, null, {\"x\": -0}], \"z\": false}";
  size_t n = strlen(doc);
  for (size_t i = 0; i < n; i++) {
    tide_json *p = NULL;
    int rc = tide_json_parse(doc, (int64_t)i, &p);
    CHECK(rc == -1 && p == NULL && strncmp(tide_last_error(), "json: line 1, column ", 21) == 0);
    tide_json_free(p);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A GPT-2-like vocab: 50,000 string keys to ids, about 2 MB. */
static void test_large_object(void) {
  int n = 50000;
  size_t cap = 4u << 20, len = 0;
  char *text = malloc(cap);
  len += (size_t)sprintf(text + len, "{");
  for (int i = 0; i < n; i++)
    len += (size_t)sprintf(text + len, "%s\"\\u0120token_%07d_\xc4\xa0suffix\\n\": %d", i ? ", " : "", i * 7919 % n, i);
  len += (size_t)sprintf(text + len, "}");
  tide_json *d = NULL;
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    tide_json_free(d);
    d = NULL;
    double t0 = now();
    CHECK(tide_json_parse(text, (int64_t)len, &d) == 0);
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  printf("parsed a %.2f MB object of %d string->int members in %.2f ms (best of 5)\n", (double)len / 1e6, n, best * 1e3);
  CHECK(tide_json_length(d, 0) == n);
  CHECK(tide_json_dup_member(d, 0) == -1);
  char key[64];
  int ok = 1;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    int k = i * 7919 % n;
    int len2 = sprintf(key, "\xc4\xa0token_%07d_\xc4\xa0suffix\n", k);
    int64_t v = tide_json_find(d, 0, key, (size_t)len2);
    if (v < 0 || tide_json_number(d, v) != i) ok = 0;
  }
  printf("looked up all %d keys in %.2f ms\n", n, (now() - t0) * 1e3);
  CHECK(ok);
  CHECK(tide_json_get(d, 0, "missing") == -1);
  tide_json_free(d);
  /* a repeated key in a large (hashed) object is found and reported */
  len -= 1;
  len += (size_t)sprintf(text + len, ", \"\\u0120token_0000007_\xc4\xa0suffix\\n\": -1}");
  CHECK(tide_json_parse(text, (int64_t)len, &d) == 0);
  CHECK(tide_json_dup_member(d, 0) == n);
  sprintf(key, "\xc4\xa0token_%07d_\xc4\xa0suffix\n", 7);
  CHECK(tide_json_number(d, tide_json_get(d, 0, key)) == -1);
  tide_json_free(d);
  free(text);
}

int main(void) {
  test_scalars();
  test_numbers();
  test_strings();
  test_containers();
  test_invalid();
  test_large_object();
  printf("%s: %d failures\n", __FILE__, failures);
  return failures ? 1 : 0;
}
