/* safetensors: round trips of every dtype and shape (0-d, empty, 8-d, strided
   views), metadata, a golden file built byte by byte from the format's
   description, malformed files (every truncation of a valid file, bad header
   lengths, bad JSON, offsets out of range, overlapping, gaps, wrong byte
   lengths, unknown and unsupported dtypes, duplicate names, ...), each of
   which must give a clear error, and atomic writes (a failed write leaves the
   old file and no temp file). */
#include "tensor.h"
#include "json.h"
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static char dir[64];

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define CHECK_ERR(call, text) do { int rc_ = (call); CHECK(rc_ == -1); \
  if (!strstr(tide_last_error(), text)) { printf("FAIL %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, tide_last_error(), text); failures++; } } while (0)

static const char *path_of(const char *name) {
  static char buf[256];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(2); }
  fwrite(p, 1, n, f);
  fclose(f);
}

static size_t read_bytes(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

/* A file image: 8-byte little-endian length of hdr, hdr, then ndata bytes of data. */
static size_t image(char *out, const char *hdr, const void *data, size_t ndata) {
  uint64_t n = strlen(hdr);
  for (int i = 0; i < 8; i++) out[i] = (char)(n >> (8 * i));
  memcpy(out + 8, hdr, n);
  if (ndata) memcpy(out + 8 + n, data, ndata);
  return 8 + n + ndata;
}

/* Opening a file made of hdr and ndata zero bytes must fail mentioning text. */
static void bad_header(const char *hdr, size_t ndata, const char *text, int line) {
  static char buf[4096];
  char zeros[256] = {0};
  size_t n = image(buf, hdr, zeros, ndata);
  write_bytes(path_of("bad.safetensors"), buf, n);
  tide_st_file *f = NULL;
  int rc = tide_st_open(path_of("bad.safetensors"), &f);
  if (rc != -1 || f || !strstr(tide_last_error(), text)) {
    printf("FAIL line %d: header %s gave rc %d, error \"%s\", expected \"%s\"\n", line, hdr, rc, rc ? tide_last_error() : "", text);
    failures++;
  }
  tide_st_close(f);
}
#define BAD(hdr, ndata, text) bad_header(hdr, ndata, text, __LINE__)

static tide_tensor *filled(int32_t dtype, int32_t ndim, const int64_t *shape, double start) {
  tide_tensor *t = NULL;
  if (tide_empty(dtype, ndim, shape, TIDE_CPU, &t)) return NULL;
  for (int64_t i = 0; i < t->numel; i++) {
    double v = dtype == TIDE_BOOL ? (double)(i % 3 == 0) : start + (double)(i % 200) * (dtype <= TIDE_F16 ? 0.25 : 1);
    tide_store_f64(t->data + i * tide_dtype_size(dtype), dtype, v);
  }
  return t;
}

static int same_tensor(const tide_tensor *a, const tide_tensor *b) {
  if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
  for (int32_t d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return 0;
  tide_tensor *ca = tide_contiguous_as(a, a->dtype), *cb = tide_contiguous_as(b, b->dtype);
  int ok = ca && cb && memcmp(ca->data, cb->data, (size_t)a->numel * (size_t)tide_dtype_size(a->dtype)) == 0;
  tide_tensor_release(ca);
  tide_tensor_release(cb);
  return ok;
}

static int64_t find(const tide_st_file *f, const char *name) {
  for (int64_t i = 0; i < tide_st_count(f); i++)
    if (strcmp(tide_st_name(f, i), name) == 0) return i;
  return -1;
}

static void test_round_trip(void) {
  static const int64_t shapes[][8] = {{0}, {0}, {5}, {2, 0, 3}, {2, 3, 4}, {1, 2, 1, 2, 1, 2, 1, 2}};
  static const int32_t ndims[] = {0, 1, 1, 3, 3, 8};
  enum { NS = 6 };
  tide_tensor *ts[TIDE_NUM_DTYPES * NS];
  char names[TIDE_NUM_DTYPES * NS][32];
  const char *np[TIDE_NUM_DTYPES * NS];
  int n = 0;
  for (int32_t dt = 0; dt < TIDE_NUM_DTYPES; dt++)
    for (int s = 0; s < NS; s++) {
      ts[n] = filled(dt, ndims[s], shapes[s], -3 + dt);
      snprintf(names[n], sizeof names[n], "t.%s.%d", tide_dtype_name(dt), s);
      np[n] = names[n];
      n++;
    }
  const char *p = path_of("all.safetensors");
  CHECK(tide_st_save(p, n, np, ts, "{\"format\": \"pt\", \"note\": \"\\u00e9 \\\"q\\\"\"}") == 0);
  tide_st_file *f = NULL;
  CHECK(tide_st_open(p, &f) == 0);
  CHECK(tide_st_count(f) == n);
  CHECK(strcmp(tide_st_metadata(f), "{\"format\":\"pt\",\"note\":\"\xc3\xa9 \\\"q\\\"\"}") == 0);
  for (int i = 0; i < n; i++) {
    int64_t k = find(f, names[i]);
    CHECK(k >= 0);
    int32_t dt = -1, nd = -1;
    int64_t shape[8];
    CHECK(tide_st_info(f, k, &dt, &nd, shape) == 0);
    CHECK(dt == ts[i]->dtype && nd == ts[i]->ndim);
    tide_tensor *t = NULL;
    CHECK(tide_st_load(f, k, &t) == 0);
    if (!t || !same_tensor(t, ts[i])) { printf("FAIL: tensor %s differs after the round trip\n", names[i]); failures++; }
    tide_tensor_release(t);
  }
  /* file order (the Python library's): by dtype in the order I64 F64 F32 I32
     BF16 F16 U16 U8 BOOL, so larger elements come first, then by name */
  static const int32_t rank[TIDE_NUM_DTYPES] = {[TIDE_I64] = 0, [TIDE_F64] = 1, [TIDE_F32] = 2, [TIDE_I32] = 3,
                                                [TIDE_BF16] = 4, [TIDE_F16] = 5, [TIDE_U16] = 6, [TIDE_U8] = 7, [TIDE_BOOL] = 8};
  for (int64_t i = 1; i < tide_st_count(f); i++) {
    int32_t d0, d1;
    tide_st_info(f, i - 1, &d0, NULL, NULL);
    tide_st_info(f, i, &d1, NULL, NULL);
    CHECK(rank[d0] < rank[d1] || (d0 == d1 && strcmp(tide_st_name(f, i - 1), tide_st_name(f, i)) < 0));
  }
  /* the header is padded so the data starts 8-byte aligned */
  char buf[16];
  CHECK(read_bytes(p, buf, 8) == 8);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)buf[i];
  CHECK(hl % 8 == 0);
  tide_st_close(f);
  for (int i = 0; i < n; i++) tide_tensor_release(ts[i]);

  /* a strided view (transpose, narrowed) is written as its contiguous values */
  int64_t sh[2] = {3, 4};
  tide_tensor *a = filled(TIDE_F32, 2, sh, 0), *tr = NULL, *nar = NULL, *back = NULL;
  CHECK(tide_transpose(a, 0, 1, &tr) == 0);
  CHECK(tide_narrow(tr, 0, 1, 2, &nar) == 0);
  const char *nn[2] = {"transposed", "narrowed"};
  tide_tensor *tt[2] = {tr, nar};
  CHECK(tide_st_save(p, 2, nn, tt, NULL) == 0);
  CHECK(tide_st_open(p, &f) == 0);
  CHECK(strcmp(tide_st_metadata(f), "{}") == 0);
  CHECK(tide_st_load(f, find(f, "transposed"), &back) == 0 && same_tensor(back, tr) && tide_is_contiguous(back));
  tide_tensor_release(back);
  CHECK(tide_st_load(f, find(f, "narrowed"), &back) == 0 && same_tensor(back, nar));
  tide_tensor_release(back);
  tide_st_close(f);
  tide_tensor_release(a);
  tide_tensor_release(tr);
  tide_tensor_release(nar);

  /* no tensors at all, with empty metadata */
  CHECK(tide_st_save(p, 0, NULL, NULL, "{}") == 0);
  CHECK(tide_st_open(p, &f) == 0 && tide_st_count(f) == 0 && strcmp(tide_st_metadata(f), "{}") == 0);
  CHECK(tide_st_name(f, 0) == NULL);
  tide_st_close(f);
  char img[64];
  CHECK(read_bytes(p, img, sizeof img) == 8 + 24);
  CHECK(memcmp(img + 8, "{\"__metadata__\":{}}     ", 24) == 0);
}

/* The format written out by hand: this is what any safetensors reader and
   writer (the Python library included) produces for these tensors. */
static void test_golden(void) {
  const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[16,20]},"
                    "\"d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[20,20]}}";
  size_t hl = strlen(hdr);
  if (hl != 250) { printf("FAIL: golden header is %zu bytes\n", hl); failures++; return; }  /* + 6 spaces: 256 */
  unsigned char want[8 + 256 + 20 + 1];
  size_t k = 0;
  want[k++] = 0x00; want[k++] = 0x01;  /* 256, little-endian */
  for (int i = 0; i < 6; i++) want[k++] = 0;
  memcpy(want + k, hdr, hl);
  k += hl;
  memcpy(want + k, "      ", 6);
  k += 6;
  const unsigned char data[20] = {
    7, 0, 0, 0, 0, 0, 0, 0,                 /* b = 7 (i64) */
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,  /* a = {1.0, -2.0} (f32) */
    0x80, 0x3f, 0x40, 0x40,                 /* c = {{1.0, 3.0}} (bf16) */
  };
  memcpy(want + k, data, 20);
  k += 20;

  /* tide writes exactly these bytes */
  int64_t s0[1] = {0}, s2[1] = {2}, s12[2] = {1, 2};
  tide_tensor *a = NULL, *b = NULL, *c = NULL, *d = NULL;
  tide_empty(TIDE_F32, 1, s2, TIDE_CPU, &a);
  ((float *)a->data)[0] = 1.0f;
  ((float *)a->data)[1] = -2.0f;
  tide_full(TIDE_I64, 0, s0, 7, TIDE_CPU, &b);
  tide_empty(TIDE_BF16, 2, s12, TIDE_CPU, &c);
  ((uint16_t *)c->data)[0] = tide_f32_to_bf16(1.0f);
  ((uint16_t *)c->data)[1] = tide_f32_to_bf16(3.0f);
  tide_empty(TIDE_U8, 1, s0, TIDE_CPU, &d);
  const char *names[4] = {"d", "c", "a", "b"};
  tide_tensor *ts[4] = {d, c, a, b};
  const char *p = path_of("golden.safetensors");
  CHECK(tide_st_save(p, 4, names, ts, "{\"format\":\"pt\"}") == 0);
  char got[512];
  size_t n = read_bytes(p, got, sizeof got);
  CHECK(n == k && memcmp(got, want, k) == 0);
  if (n != k || memcmp(got, want, k) != 0) printf("wrote %zu bytes: header %.*s\n", n, n > 8 ? (int)(n - 8) : 0, got + 8);

  /* and reads the hand-made file back */
  write_bytes(p, want, k);
  tide_st_file *f = NULL;
  CHECK(tide_st_open(p, &f) == 0);
  CHECK(tide_st_count(f) == 4);
  /* names come in data order */
  CHECK(!strcmp(tide_st_name(f, 0), "b") && !strcmp(tide_st_name(f, 1), "a") && !strcmp(tide_st_name(f, 2), "c") &&
        !strcmp(tide_st_name(f, 3), "d"));
  CHECK(strcmp(tide_st_metadata(f), "{\"format\":\"pt\"}") == 0);
  tide_tensor *t = NULL;
  CHECK(tide_st_load(f, 0, &t) == 0 && same_tensor(t, b));
  tide_tensor_release(t);
  CHECK(tide_st_load(f, 1, &t) == 0 && same_tensor(t, a));
  tide_tensor_release(t);
  CHECK(tide_st_load(f, 2, &t) == 0 && same_tensor(t, c) && tide_bf16_to_f32(((uint16_t *)t->data)[1]) == 3.0f);
  tide_tensor_release(t);
  CHECK(tide_st_load(f, 3, &t) == 0 && t->numel == 0 && t->ndim == 1);
  tide_tensor_release(t);
  tide_st_close(f);

  /* every truncation of this valid file is a clear error, never a crash */
  for (size_t cut = 0; cut < k; cut++) {
    write_bytes(p, want, cut);
    f = NULL;
    int rc = tide_st_open(p, &f);
    const char *e = tide_last_error();
    int clear = strstr(e, "too short") || strstr(e, "runs past the end") || strstr(e, "out of range");
    if (rc != -1 || f || !clear) {
      printf("FAIL: the first %zu bytes gave rc %d, error \"%s\"\n", cut, rc, e);
      failures++;
    }
    tide_st_close(f);
  }
  /* one byte too many: not covered by any tensor */
  want[k] = 0;
  write_bytes(p, want, k + 1);
  CHECK_ERR(tide_st_open(p, &f), "the last 1 bytes of the file belong to no tensor");
  tide_tensor_release(a);
  tide_tensor_release(b);
  tide_tensor_release(c);
  tide_tensor_release(d);
}

static void test_malformed(void) {
  tide_st_file *f = NULL;
  char buf[256];
  CHECK_ERR(tide_st_open(path_of("missing.safetensors"), &f), "cannot open");
  CHECK_ERR(tide_st_open(path_of("missing.safetensors"), &f), "No such file");
  CHECK_ERR(tide_st_open(dir, &f), "is not a regular file");
  CHECK_ERR(tide_st_open(NULL, &f), "no file name");
  CHECK_ERR(tide_st_open("x", NULL), "no output pointer");
  write_bytes(path_of("short"), "\x10\0\0", 3);
  CHECK_ERR(tide_st_open(path_of("short"), &f), "file is 3 bytes, too short");

  /* header lengths: absurd, over the limit, past the end */
  memcpy(buf, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  write_bytes(path_of("huge"), buf, 10);
  CHECK_ERR(tide_st_open(path_of("huge"), &f), "header length 18446744073709551615 is over the 100000000-byte limit");
  memcpy(buf, "\x01\xe1\xf5\x05\0\0\0\0{}", 10);  /* 100,000,001 */
  write_bytes(path_of("huge"), buf, 10);
  CHECK_ERR(tide_st_open(path_of("huge"), &f), "over the 100000000-byte limit");
  memcpy(buf, "\x40\0\0\0\0\0\0\0{}", 10);
  write_bytes(path_of("huge"), buf, 10);
  CHECK_ERR(tide_st_open(path_of("huge"), &f), "header length 64 runs past the end of the file (10 bytes; truncated?)");

  BAD("", 0, "header is not valid JSON: json: line 1, column 1: expected a JSON value, got end of input");
  BAD("{\"a\":", 0, "header is not valid JSON");
  BAD("{\"a\": {\"dtype\": \"F32\",}}", 0, "trailing comma");
  BAD("[]", 0, "header is an array, expected a JSON object");
  BAD("\"x\"", 0, "header is a string");
  BAD("\xef\xbb\xbf{}", 0, "byte order mark");
  BAD("{\"\xff\":1}", 0, "header is not valid UTF-8 (byte 2)");
  BAD("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8");  /* an encoded surrogate */
  BAD("{\"\xc0\x80\":1}", 0, "not valid UTF-8");      /* overlong */
  BAD("{\"a\":1}", 0, "tensor \"a\": expected an object with dtype, shape and data_offsets, got a number");
  BAD("{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, "tensor \"a\" has no \"dtype\"");
  BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor \"a\" has no \"shape\"");
  BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}", 4, "tensor \"a\" has no \"data_offsets\"");
  BAD("{\"a\":{\"dtype\":32,\"shape\":[],\"data_offsets\":[0,4]}}", 4, "dtype must be a string, got a number");
  BAD("{\"a\":{\"dtype\":\"F33\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"F33\" in tensor \"a\"");
  BAD("{\"a\":{\"dtype\":\"f32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"f32\"");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor \"w\": shape entry 1 is not a non-negative integer");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape entry 1 is not a non-negative integer");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, "shape entry 2");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, "shape must be an array of integers, got an object");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "tensor \"w\" has 9 dimensions (tide supports at most 8)");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "is too large");
  /* empty, but the strides of [0, 2^62, 7904] overflow int64 (a fuzz crash) */
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,7904],\"data_offsets\":[0,0]}}", 0,
      "tensor \"w\": shape [0, 4611686018427387904, 7904] is too large");
  BAD("{\"w\":{\"dtype\":\"BF16\",\"shape\":[9223372036854775807,0,9223372036854775807],\"data_offsets\":[0,0]}}", 0, "is too large");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "data_offsets [0, 4] hold 4 bytes but F32 [2] needs 8");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets must be [begin, end]");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "data_offsets must be [begin, end]");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, "data_offsets must be [begin, end], two non-negative integers");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets must be");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "data_offsets [4, 0] end before they begin");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "data_offsets [0, 8] are out of range: the data section has 4 bytes");
  BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551612,18446744073709551616]}}", 4, "data_offsets must be");
  BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
      "tensors \"a\" [0, 8] and \"b\" [4, 8] overlap");
  BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 4,
      "overlap");
  BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4,
      "bytes 0 to 2 of the data belong to no tensor (the gap before tensor \"a\")");
  BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 4, "the last 2 bytes of the file belong to no tensor");
  BAD("{}", 1, "the last 1 bytes");
  BAD("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
      "duplicate tensor name \"a\" in the header");
  BAD("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "contains a NUL byte");
  BAD("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ must map strings to strings; \"format\" is a number");
  BAD("{\"__metadata__\":[]}", 0, "__metadata__ must be an object of strings, got an array");
  BAD("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "__metadata__ has the key \"a\" twice");
  BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate tensor name \"__metadata__\"");
  BAD("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1, "F4 [3] does not fill whole bytes");

  /* accepted: whitespace padding on both sides, null metadata, unknown extra fields */
  const char *ok[] = {
    "  {\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}      ",
    "{\"__metadata__\":null,\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,2]}}",
    "{\"e\":{\"dtype\":\"F32\",\"shape\":[0, 5],\"data_offsets\":[1,1]},\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}",
  };
  for (int i = 0; i < 3; i++) {
    char img[512];
    size_t n = image(img, ok[i], "\x05", 1);
    write_bytes(path_of("ok"), img, n);
    f = NULL;
    CHECK(tide_st_open(path_of("ok"), &f) == 0);
    if (!f) { printf("  header %s: %s\n", ok[i], tide_last_error()); continue; }
    CHECK(strcmp(tide_st_metadata(f), "{}") == 0);
    tide_tensor *t = NULL;
    int64_t a = find(f, "a");
    CHECK(tide_st_load(f, a, &t) == 0 && t->numel == 1);
    /* BOOL bytes other than 0 and 1 read as 1 */
    CHECK(t && (i < 2 ? t->data[0] == 5 : t->data[0] == 1));
    tide_tensor_release(t);
    tide_st_close(f);
  }

  /* dtypes the format has and tide lacks: the file opens, that tensor fails by name */
  {
    char img[512];
    size_t n = image(img, "{\"q\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                          "\"r\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[2,3]},"
                          "\"s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[3,4]}}", "abcd", 4);
    write_bytes(path_of("i8"), img, n);
    CHECK(tide_st_open(path_of("i8"), &f) == 0 && tide_st_count(f) == 3);
    tide_tensor *t = NULL;
    CHECK_ERR(tide_st_load(f, 0, &t), "unsupported dtype I8 in tensor \"q\"");
    CHECK(strstr(tide_last_error(), "tide reads F32, F64, BF16, F16, I32, I64, U8, BOOL, U16") != NULL);
    CHECK_ERR(tide_st_info(f, 1, NULL, NULL, NULL), "unsupported dtype F8_E4M3 in tensor \"r\"");
    CHECK(tide_st_load(f, 2, &t) == 0 && t->data[0] == 'd');
    tide_tensor_release(t);
    CHECK_ERR(tide_st_load(f, 3, &t), "tensor index 3 out of range");
    CHECK_ERR(tide_st_load(f, -1, &t), "out of range");
    CHECK_ERR(tide_st_load(NULL, 0, &t), "no file");
    CHECK_ERR(tide_st_info(NULL, 0, NULL, NULL, NULL), "no file");
    CHECK(tide_st_count(NULL) == 0 && tide_st_name(NULL, 0) == NULL && tide_st_name(f, -1) == NULL);
    CHECK(strcmp(tide_st_metadata(NULL), "{}") == 0);
    tide_st_close(f);
    tide_st_close(NULL);
  }

  /* a file that shrinks after it was opened */
  {
    char img[512];
    size_t n = image(img, "{\"s\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", "abcd", 4);
    write_bytes(path_of("shrink"), img, n);
    CHECK(tide_st_open(path_of("shrink"), &f) == 0);
    CHECK(truncate(path_of("shrink"), (off_t)n - 2) == 0);
    tide_tensor *t = NULL;
    CHECK_ERR(tide_st_load(f, 0, &t), "cannot read tensor \"s\": the file ended early");
    CHECK(t == NULL);
    tide_st_close(f);
  }
}

static void test_save_errors(void) {
  const char *p = path_of("err.safetensors");
  int64_t s2[1] = {2};
  tide_tensor *a = NULL, *b = NULL;
  tide_full(TIDE_F32, 1, s2, 1, TIDE_CPU, &a);
  tide_full(TIDE_I64, 1, s2, 1, TIDE_CPU, &b);
  const char *names[2] = {"a", "a"};
  tide_tensor *ts[2] = {a, b};
  CHECK_ERR(tide_st_save(p, 2, names, ts, NULL), "duplicate tensor name \"a\"");
  names[1] = "__metadata__";
  CHECK_ERR(tide_st_save(p, 2, names, ts, NULL), "\"__metadata__\" is reserved");
  names[1] = "\xff";
  CHECK_ERR(tide_st_save(p, 2, names, ts, NULL), "the name is not valid UTF-8");
  names[1] = NULL;
  CHECK_ERR(tide_st_save(p, 2, names, ts, NULL), "tensor 2 has no name");
  names[1] = "b";
  ts[1] = NULL;
  CHECK_ERR(tide_st_save(p, 2, names, ts, NULL), "safetensors save: tensor \"b\": expected a tensor, got nil");
  ts[1] = b;
  CHECK_ERR(tide_st_save(p, -1, names, ts, NULL), "negative tensor count");
  CHECK_ERR(tide_st_save(p, 2, NULL, ts, NULL), "no name or tensor array");
  CHECK_ERR(tide_st_save(NULL, 2, names, ts, NULL), "no file name");
  CHECK_ERR(tide_st_save(p, 2, names, ts, "{\"format\":"), "metadata is not valid JSON: json: line 1, column 11");
  CHECK_ERR(tide_st_save(p, 2, names, ts, "[\"pt\"]"), "metadata must be a JSON object of strings, got an array");
  CHECK_ERR(tide_st_save(p, 2, names, ts, "{\"format\":null}"), "\"format\" is null");
  CHECK_ERR(tide_st_save(path_of("no/such/dir/x.safetensors"), 2, names, ts, NULL), "cannot create");
  CHECK(access(p, F_OK) != 0);  /* none of these left a file */
  tide_tensor_release(a);
  tide_tensor_release(b);
}

static int count_files(const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
  if (d) closedir(d);
  return n;
}

/* A save that fails part-way must leave an existing file as it was and no temp file. */
static void test_atomic(void) {
  const char *p = path_of("model.safetensors");
  int64_t s[1] = {4};
  tide_tensor *a = NULL;
  tide_full(TIDE_F32, 1, s, 2.5, TIDE_CPU, &a);
  const char *names[1] = {"w"};
  tide_tensor *ts[1] = {a};
  CHECK(tide_st_save(p, 1, names, ts, NULL) == 0);
  char before[256], after[256];
  size_t nb = read_bytes(p, before, sizeof before);

  /* a writer that died mid-write left its temp file: readers never see it */
  char stale[300];
  snprintf(stale, sizeof stale, "%s.tmp-999999", p);
  write_bytes(stale, "\x40\0\0\0\0\0\0\0{\"w\":", 13);
  tide_st_file *f = NULL;
  CHECK(tide_st_open(p, &f) == 0 && tide_st_count(f) == 1);
  tide_st_close(f);
  unlink(stale);

  /* the file-size limit stops the write part-way (the write fails with EFBIG) */
  int64_t big[1] = {1 << 20};
  tide_tensor *large = NULL;
  tide_full(TIDE_F32, 1, big, 1, TIDE_CPU, &large);
  ts[0] = large;
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 100000;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
    CHECK_ERR(tide_st_save(p, 1, names, ts, NULL), "writing");
    CHECK(strstr(tide_last_error(), ".tmp-") != NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(read_bytes(p, after, sizeof after) == nb && memcmp(before, after, nb) == 0);
    CHECK(count_files("model.safetensors.tmp-") == 0);
  } else {
    printf("note: could not lower RLIMIT_FSIZE; skipping the part-way write check\n");
  }
  signal(SIGXFSZ, prev);

  /* the rename fails (a directory is in the way): the temp file is removed */
  const char *q = path_of("isdir.safetensors");
  mkdir(q, 0777);
  char inside[300];
  snprintf(inside, sizeof inside, "%s/keep", q);
  write_bytes(inside, "x", 1);
  ts[0] = a;
  CHECK_ERR(tide_st_save(q, 1, names, ts, NULL), "cannot rename");
  CHECK(count_files("isdir.safetensors.tmp-") == 0);
  unlink(inside);
  rmdir(q);

  /* a successful save replaces the file whole */
  tide_fill_(a, -1);
  CHECK(tide_st_save(p, 1, names, ts, NULL) == 0);
  CHECK(tide_st_open(p, &f) == 0);
  tide_tensor *t = NULL;
  CHECK(tide_st_load(f, 0, &t) == 0 && ((float *)t->data)[3] == -1.0f);
  tide_tensor_release(t);
  tide_st_close(f);
  CHECK(count_files("model.safetensors.tmp-") == 0);
  tide_tensor_release(a);
  tide_tensor_release(large);
}

static void cleanup(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(dir);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/tide_st_XXXXXX");
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
  test_round_trip();
  test_golden();
  test_malformed();
  test_save_errors();
  test_atomic();
  cleanup();
  printf("%s: %d failures\n", __FILE__, failures);
  return failures ? 1 : 0;
}
