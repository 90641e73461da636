/* Token shards (runtime/shards.c): uint16 and uint32 round trips, tokens
   that do not fit, the PATH.tmp protocol (nothing at PATH until a committing
   close, nothing at all after an aborted one), every way a file can disagree
   with its header (truncated, one byte too many, wrong magic or version,
   shorter than the header), nanoGPT's header-less .bin, out-of-bounds reads,
   and a shard whose header bytes are written here by hand as llm.c's Python
   writer does. */
#include "tide.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define OK(call) do { if ((call) != 0) { printf("FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, tide_last_error()); failures++; } } while (0)

static char dir[256];

static const char *at(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void write_bytes(const char *path, const void *p, size_t n, const char *mode) {
  FILE *f = fopen(path, mode);
  if (!f) { printf("FAIL cannot write %s\n", path); failures++; return; }
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

/* The call must fail with a message containing text (and text2, when given). */
static void expect_error(int rc, const char *text, const char *text2, int line) {
  if (rc == 0) {
    printf("FAIL line %d: succeeded, expected an error with \"%s\"\n", line, text);
    failures++;
    return;
  }
  const char *e = tide_last_error();
  if (!strstr(e, text) || (text2 && !strstr(e, text2))) {
    printf("FAIL line %d: error \"%s\" lacks \"%s\"%s%s\n", line, e, text, text2 ? " or " : "", text2 ? text2 : "");
    failures++;
  }
}
#define ERR(call, text) expect_error((call), text, NULL, __LINE__)
#define ERR2(call, text, text2) expect_error((call), text, text2, __LINE__)

static void write_shard(const char *path, int32_t tb, const int32_t *tok, int64_t n) {
  tide_shard_writer *w = NULL;
  OK(tide_shard_writer_open(path, tb, &w));
  OK(tide_shard_writer_write(w, tok, n));
  OK(tide_shard_writer_close(w, 1));
}

static void round_trip(int32_t tb) {
  const char *path = at(tb == 2 ? "u16.bin" : "u32.bin");
  int64_t n = 100003;  /* more than one internal chunk, odd */
  int32_t *tok = malloc((size_t)n * 4), *back = malloc((size_t)n * 4);
  uint32_t x = 12345;
  for (int64_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    tok[i] = tb == 2 ? (int32_t)(x >> 16) : (int32_t)(x >> 1);
  }
  tok[0] = 0;
  tok[1] = tb == 2 ? 65535 : INT32_MAX;
  tide_shard_writer *w = NULL;
  OK(tide_shard_writer_open(path, tb, &w));
  /* written in uneven pieces, including an empty one */
  OK(tide_shard_writer_write(w, tok, 7));
  OK(tide_shard_writer_write(w, tok + 7, 0));
  OK(tide_shard_writer_write(w, tok + 7, 50000));
  CHECK(tide_shard_writer_count(w) == 50007);
  OK(tide_shard_writer_write(w, tok + 50007, n - 50007));
  CHECK(tide_shard_writer_count(w) == n);
  OK(tide_shard_writer_close(w, 1));
  CHECK(file_size(path) == 1024 + n * tb);
  CHECK(!exists(at(tb == 2 ? "u16.bin.tmp" : "u32.bin.tmp")));

  /* header bytes exactly as llm.c writes them */
  FILE *f = fopen(path, "rb");
  unsigned char h[1024];
  CHECK(f && fread(h, 1, sizeof h, f) == sizeof h);
  if (f) fclose(f);
  int32_t magic = tb == 2 ? 20240520 : 20240801, version = tb == 2 ? 1 : 7;
  CHECK(h[0] == (magic & 255) && h[1] == ((magic >> 8) & 255) && h[2] == ((magic >> 16) & 255) && h[3] == (magic >> 24));
  CHECK(h[4] == version && h[5] == 0 && h[6] == 0 && h[7] == 0);
  CHECK((h[8] | h[9] << 8 | h[10] << 16 | (long)h[11] << 24) == n);
  int zero = 1;
  for (int i = 12; i < 1024; i++) zero &= h[i] == 0;
  CHECK(zero);

  tide_shard *s = NULL;
  OK(tide_shard_open(path, 0, &s));
  CHECK(tide_shard_ntokens(s) == n);
  CHECK(tide_shard_token_bytes(s) == tb);
  OK(tide_shard_read(s, 0, n, back));
  CHECK(memcmp(tok, back, (size_t)n * 4) == 0);
  int32_t mid[3];
  OK(tide_shard_read(s, 4242, 3, mid));
  CHECK(mid[0] == tok[4242] && mid[1] == tok[4243] && mid[2] == tok[4244]);
  OK(tide_shard_read(s, n, 0, NULL));  /* an empty range at the end */
  ERR2(tide_shard_read(s, n - 2, 3, mid), "outside", "100003");
  ERR(tide_shard_read(s, -1, 1, mid), "outside");
  ERR(tide_shard_read(s, 0, -1, mid), "outside");
  ERR(tide_shard_read(s, INT64_MAX, 2, mid), "outside");
  ERR(tide_shard_read(s, 1, INT64_MAX, mid), "outside");
  ERR(tide_shard_read(NULL, 0, 1, mid), "NULL");
  tide_shard_close(s);
  free(tok);
  free(back);
}

static void out_of_range(void) {
  const char *path = at("range.bin");
  tide_shard_writer *w = NULL;
  OK(tide_shard_writer_open(path, 2, &w));
  int32_t good[3] = {1, 2, 3}, bad[4] = {4, 5, 65536, 6}, neg[2] = {7, -1};
  OK(tide_shard_writer_write(w, good, 3));
  ERR2(tide_shard_writer_write(w, bad, 4), "65536", "index 2");
  CHECK(tide_shard_writer_count(w) == 3);  /* nothing of the bad call */
  ERR2(tide_shard_writer_write(w, neg, 2), "-1", "index 1");
  CHECK(tide_shard_writer_count(w) == 3);
  ERR(tide_shard_writer_write(w, good, -1), "negative");
  ERR(tide_shard_writer_write(w, NULL, 2), "NULL");
  OK(tide_shard_writer_write(w, good, 2));
  OK(tide_shard_writer_close(w, 1));
  tide_shard *s = NULL;
  OK(tide_shard_open(path, 0, &s));
  int32_t back[5];
  CHECK(tide_shard_ntokens(s) == 5);
  OK(tide_shard_read(s, 0, 5, back));
  CHECK(back[0] == 1 && back[2] == 3 && back[3] == 1 && back[4] == 2);
  tide_shard_close(s);

  OK(tide_shard_writer_open(at("range32.bin"), 4, &w));
  int32_t big[2] = {70000, INT32_MAX};
  OK(tide_shard_writer_write(w, big, 2));
  ERR2(tide_shard_writer_write(w, neg, 2), "-1", "index 1");
  OK(tide_shard_writer_close(w, 1));

  ERR(tide_shard_writer_open(at("x.bin"), 3, &w), "token_bytes");
  CHECK(w == NULL);
  ERR(tide_shard_writer_open(NULL, 2, &w), "path");
  ERR(tide_shard_writer_open(at("x.bin"), 2, NULL), "NULL");
  ERR(tide_shard_writer_open(at("no/such/dir/x.bin"), 2, &w), "cannot create");
  ERR(tide_shard_writer_write(NULL, good, 1), "NULL");
  CHECK(tide_shard_writer_count(NULL) == 0);
  OK(tide_shard_writer_close(NULL, 1));
}

static void temp_protocol(void) {
  const char *path = at("tmp.bin"), *tmp = at("tmp.bin.tmp");
  tide_shard_writer *w = NULL;
  int32_t tok[4] = {9, 8, 7, 6};
  OK(tide_shard_writer_open(path, 2, &w));
  OK(tide_shard_writer_write(w, tok, 4));
  CHECK(exists(tmp) && !exists(path));
  OK(tide_shard_writer_close(w, 0));
  CHECK(!exists(tmp) && !exists(path));

  /* committing replaces an older shard at the same path */
  write_shard(path, 2, tok, 2);
  OK(tide_shard_writer_open(path, 2, &w));
  OK(tide_shard_writer_write(w, tok, 4));
  CHECK(exists(tmp) && file_size(path) == 1024 + 4);
  OK(tide_shard_writer_close(w, 1));
  CHECK(!exists(tmp) && file_size(path) == 1024 + 8);

  /* an empty shard is valid */
  OK(tide_shard_writer_open(at("empty.bin"), 4, &w));
  OK(tide_shard_writer_close(w, 1));
  tide_shard *s = NULL;
  OK(tide_shard_open(at("empty.bin"), 0, &s));
  CHECK(tide_shard_ntokens(s) == 0 && tide_shard_token_bytes(s) == 4);
  ERR(tide_shard_read(s, 0, 1, tok), "outside");
  tide_shard_close(s);
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len + 1);
  *n = fread(p, 1, (size_t)len, f);
  fclose(f);
  return p;
}

static void mismatches(void) {
  int32_t tok[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const char *good = at("good.bin"), *bad = at("bad.bin");
  write_shard(good, 2, tok, 10);
  size_t n = 0;
  unsigned char *p = slurp(good, &n);
  CHECK(n == 1044);
  tide_shard *s = (tide_shard *)&n;

  write_bytes(bad, p, n - 2, "wb");  /* truncated by one token */
  ERR2(tide_shard_open(bad, 0, &s), "header says 10 tokens (1044 bytes) but the file holds 1042 bytes", bad);
  CHECK(s == NULL);
  write_bytes(bad, p, n - 1, "wb");
  ERR(tide_shard_open(bad, 0, &s), "header says 10 tokens (1044 bytes) but the file holds 1043 bytes");
  write_bytes(bad, p, n, "wb");
  write_bytes(bad, "x", 1, "ab");  /* one byte appended */
  ERR(tide_shard_open(bad, 0, &s), "header says 10 tokens (1044 bytes) but the file holds 1045 bytes");

  unsigned char *q = malloc(n);
  memcpy(q, p, n);
  q[0] ^= 1;  /* wrong magic */
  write_bytes(bad, q, n, "wb");
  ERR2(tide_shard_open(bad, 0, &s), "bad magic", "raw_uint16");
  memcpy(q, p, n);
  q[4] = 7;  /* a uint16 shard with the uint32 version */
  write_bytes(bad, q, n, "wb");
  ERR2(tide_shard_open(bad, 0, &s), "version 7", "expected 1");
  memcpy(q, p, n);
  q[11] = 0x80;  /* negative count */
  write_bytes(bad, q, n, "wb");
  ERR(tide_shard_open(bad, 0, &s), "negative");
  memcpy(q, p, n);
  q[8] = 11;  /* count one more than the file holds */
  write_bytes(bad, q, n, "wb");
  ERR(tide_shard_open(bad, 0, &s), "header says 11 tokens (1046 bytes) but the file holds 1044 bytes");
  memcpy(q, p, n);
  q[9] = 0xff;
  q[10] = 0xff;
  q[11] = 0x7f;  /* a huge count must not overflow the size arithmetic */
  write_bytes(bad, q, n, "wb");
  ERR(tide_shard_open(bad, 0, &s), "but the file holds 1044 bytes");

  write_bytes(bad, p, 1000, "wb");  /* shorter than the header */
  ERR2(tide_shard_open(bad, 0, &s), "1000 bytes", "1024-byte header");
  write_bytes(bad, p, 0, "wb");
  ERR(tide_shard_open(bad, 0, &s), "0 bytes");
  ERR(tide_shard_open(at("missing.bin"), 0, &s), "cannot open");
  ERR(tide_shard_open(dir, 0, &s), "not a regular file");
  ERR(tide_shard_open(NULL, 0, &s), "NULL");
  ERR(tide_shard_open(good, 0, NULL), "NULL");
  CHECK(s == NULL);
  free(q);
  free(p);
}

static void raw_nanogpt(void) {
  const char *path = at("nanogpt.bin");
  /* np.array([...], dtype=np.uint16).tofile(path): little-endian, no header */
  unsigned char b[8] = {0x01, 0x00, 0x50, 0xc4, 0xff, 0xff, 0x00, 0x00};
  write_bytes(path, b, 8, "wb");
  tide_shard *s = NULL;
  OK(tide_shard_open(path, 1, &s));
  CHECK(tide_shard_ntokens(s) == 4 && tide_shard_token_bytes(s) == 2);
  int32_t t[4];
  OK(tide_shard_read(s, 0, 4, t));
  CHECK(t[0] == 1 && t[1] == 50256 && t[2] == 65535 && t[3] == 0);
  ERR(tide_shard_read(s, 1, 4, t), "outside");
  tide_shard_close(s);
  /* without raw_uint16 a small .bin is refused as shorter than the header */
  ERR(tide_shard_open(path, 0, &s), "header");
  write_bytes(path, b, 7, "wb");
  ERR2(tide_shard_open(path, 1, &s), "even", "7 bytes");
  write_bytes(path, b, 0, "wb");
  OK(tide_shard_open(path, 1, &s));
  CHECK(tide_shard_ntokens(s) == 0);
  tide_shard_close(s);
  tide_shard_close(NULL);
}

/* A shard that shrinks while open (another process truncating it): the next
   read is an error naming the file, not SIGBUS as with the memory mapping
   reads used to go through; a read that stays inside what is left works. */
static void shrinks_while_open(void) {
  const char *path = at("shrinks.bin");
  int64_t n = 50000;
  int32_t *tok = malloc((size_t)n * 4), out[8];
  for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)(i % 60000);
  write_shard(path, 2, tok, n);
  tide_shard *s = NULL;
  OK(tide_shard_open(path, 0, &s));
  CHECK(truncate(path, 1024) == 0);
  ERR2(tide_shard_read(s, 40000, 8, out), "changed while open", path);
  ERR(tide_shard_read(s, 0, 8, out), "now 1024");
  tide_shard_close(s);
  /* raw uint16 too, and a uint32 shard */
  write_shard(path, 4, tok, n);
  OK(tide_shard_open(path, 0, &s));
  CHECK(truncate(path, 2048) == 0);
  OK(tide_shard_read(s, 0, 8, out));
  CHECK(out[7] == 7);
  ERR2(tide_shard_read(s, 255, 2, out), "changed while open", path);
  tide_shard_close(s);
  write_bytes(path, tok, 4000, "wb");
  OK(tide_shard_open(path, 1, &s));
  CHECK(truncate(path, 0) == 0);
  ERR2(tide_shard_read(s, 0, 1, out), "changed while open", path);
  tide_shard_close(s);
  free(tok);
}

static void by_hand(void) {
  /* llm.c's uint32 layout written byte by byte */
  unsigned char b[1024 + 12] = {0};
  int32_t head[3] = {20240801, 7, 3};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++) b[4 * i + k] = (unsigned char)((uint32_t)head[i] >> (8 * k));
  uint32_t tok[3] = {128000, 5, 128255};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++) b[1024 + 4 * i + k] = (unsigned char)(tok[i] >> (8 * k));
  const char *path = at("hand.bin");
  write_bytes(path, b, sizeof b, "wb");
  tide_shard *s = NULL;
  OK(tide_shard_open(path, 0, &s));
  CHECK(tide_shard_ntokens(s) == 3 && tide_shard_token_bytes(s) == 4);
  int32_t t[3] = {0};
  OK(tide_shard_read(s, 0, 3, t));
  CHECK(t[0] == 128000 && t[1] == 5 && t[2] == 128255);
  tide_shard_close(s);

  /* and the GPT-2 layout: 20240520, version 1, two uint16 tokens */
  unsigned char g[1024 + 4] = {0};
  g[0] = 20240520 & 255; g[1] = (20240520 >> 8) & 255; g[2] = (20240520 >> 16) & 255; g[3] = 20240520 >> 24;
  g[4] = 1;
  g[8] = 2;
  g[1024] = 0x50; g[1025] = 0xc4;  /* 50256, GPT-2's <|endoftext|> */
  g[1026] = 0x0f; g[1027] = 0x00;
  write_bytes(path, g, sizeof g, "wb");
  OK(tide_shard_open(path, 0, &s));
  OK(tide_shard_read(s, 0, 2, t));
  CHECK(tide_shard_ntokens(s) == 2 && t[0] == 50256 && t[1] == 15);
  tide_shard_close(s);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/tide_test_shards_XXXXXX");
  if (!mkdtemp(dir)) { printf("FAIL mkdtemp\n"); return 1; }
  round_trip(2);
  round_trip(4);
  out_of_range();
  temp_protocol();
  mismatches();
  raw_nanogpt();
  by_hand();
  shrinks_while_open();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("warning: could not remove %s\n", dir);
  if (failures) {
    printf("%d failure(s)\n", failures);
    return 1;
  }
  printf("test_shards: all checks passed\n");
  return 0;
}
