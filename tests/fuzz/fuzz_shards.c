/* Fuzz target for the token shard reader (runtime/shards.c). The input is
   written to a temp file and opened both as an llm.c shard and as a raw
   nanoGPT uint16 file. Any input must either fail with a "shard PATH: ..."
   message, or open with a token count that accounts for the file's size
   exactly (1024 + ntok * token_bytes, or size / 2 raw), and then every read
   inside the shard must succeed and agree with the file's bytes while every
   read outside it fails; then the file is cut short under the open shard,
   and every read past its new end must fail naming the file.

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON: build/tests/fuzz_shards)
   and, with TIDE_FUZZ_REPLAY_MAIN, as tests/fuzz_shards_replay: run on files it
   replays them (a crash libFuzzer found); run bare it feeds seeded mutations
   of valid small shards, which ctest does on every run. */
#include "tide.h"
#include "error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_shards: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

/* One temp file per process, reused for every input; in memory where /dev/shm exists. */
static const char *temp_path(void) {
  static char path[64];
  if (!path[0])
    snprintf(path, sizeof path, "%s/tide_fuzz_shards_%d.bin", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (int)getpid());
  return path;
}

static uint32_t token_at(const uint8_t *p, int32_t tb) {
  return tb == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                 : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Returns whether the file opened. */
static int check(const char *path, const uint8_t *data, size_t size, int raw) {
  tide_shard *s = (tide_shard *)&size;  /* must be reset to NULL on failure */
  if (tide_shard_open(path, raw, &s) != 0) {
    REQUIRE(s == NULL);
    REQUIRE(strncmp(tide_last_error(), "shard ", 6) == 0);
    REQUIRE(strstr(tide_last_error(), path) != NULL);
    return 0;
  }
  REQUIRE(s != NULL);
  int64_t n = tide_shard_ntokens(s);
  int32_t tb = tide_shard_token_bytes(s);
  size_t header = raw ? 0 : 1024;
  REQUIRE(tb == 2 || tb == 4);
  if (raw) REQUIRE(tb == 2);
  REQUIRE(n >= 0 && (uint64_t)header + (uint64_t)n * (uint64_t)tb == (uint64_t)size);
  const uint8_t *tok = data + header;
  int32_t out[64];
  /* ranges picked from the input's own bytes: deterministic per input */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size && i < 64; i++) h = (h ^ data[i]) * 16777619u;
  for (int k = 0; k < 16; k++) {
    h = h * 1664525u + 1013904223u;
    int64_t start = n ? (int64_t)(h % (uint32_t)(n + 1)) : 0;
    int64_t len = (int64_t)((h >> 16) % 65);
    if (len > n - start) len = n - start;
    int rc = tide_shard_read(s, start, len, out);
    int fits = 1;
    for (int64_t i = 0; i < len && tb == 4; i++) fits &= token_at(tok + (start + i) * 4, 4) <= 0x7fffffffu;
    if (!fits) {
      REQUIRE(rc == -1);
      continue;
    }
    REQUIRE(rc == 0);
    for (int64_t i = 0; i < len; i++) REQUIRE((uint32_t)out[i] == token_at(tok + (start + i) * tb, tb));
  }
  REQUIRE(tide_shard_read(s, n, 1, out) == -1);
  REQUIRE(tide_shard_read(s, -1, 1, out) == -1);
  REQUIRE(tide_shard_read(s, 0, n + 1, out) == -1);
  REQUIRE(tide_shard_read(s, INT64_MAX, INT64_MAX, out) == -1);
  REQUIRE(tide_shard_read(s, n, 0, out) == 0);
  /* the file shrinks while open (reads once went through a mapping and died
     of SIGBUS): a read inside what is left still agrees with the bytes, one
     past it fails naming the file */
  h = h * 1664525u + 1013904223u;
  size_t left = size ? h % (uint32_t)(size + 1) : 0;
  REQUIRE(truncate(path, (off_t)left) == 0);
  for (int k = 0; k < 8; k++) {
    h = h * 1664525u + 1013904223u;
    int64_t start = n ? (int64_t)(h % (uint32_t)(n + 1)) : 0;
    int64_t len = (int64_t)((h >> 16) % 65);
    if (len > n - start) len = n - start;
    int rc = tide_shard_read(s, start, len, out);
    int inside = len == 0 || header + (uint64_t)(start + len) * (uint64_t)tb <= left;
    if (!inside) {
      REQUIRE(rc == -1 && strstr(tide_last_error(), "changed while open") && strstr(tide_last_error(), path));
    } else if (rc == 0) {
      for (int64_t i = 0; i < len; i++) REQUIRE((uint32_t)out[i] == token_at(tok + (start + i) * tb, tb));
    } else {
      REQUIRE(tb == 4 && strstr(tide_last_error(), "does not fit int32"));
    }
  }
  tide_shard_close(s);
  return 1;
}

/* Returns whether the input opened as an llm.c shard. */
static int one_input(const uint8_t *data, size_t size) {
  const char *path = temp_path();
  int ok = 0;
  for (int raw = 0; raw < 2; raw++) {  /* written afresh for each: check() truncates it */
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(size == 0 || fwrite(data, 1, size, f) == size);
    REQUIRE(fclose(f) == 0);
    int opened = check(path, data, size, raw);
    if (!raw) ok = opened;
  }
  unlink(path);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  one_input(data, size);
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
#include "fuzz_driver.h"
static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t next(void) { return fuzz_next(&rng); }

static void put32(uint8_t *p, uint32_t v) {
  for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* A valid shard of n tokens (uint16 or uint32) in data; returns its size. */
static size_t make_seed(uint8_t *data, int32_t tb, uint32_t n) {
  memset(data, 0, 1024);
  put32(data, tb == 2 ? 20240520u : 20240801u);
  put32(data + 4, tb == 2 ? 1u : 7u);
  put32(data + 8, n);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t v = (uint32_t)next();
    if (tb == 2) {
      data[1024 + 2 * i] = (uint8_t)v;
      data[1024 + 2 * i + 1] = (uint8_t)(v >> 8);
    } else {
      put32(data + 1024 + 4 * i, v % 3 == 0 ? v : v & 0x1ffff);  /* sometimes past INT32_MAX */
    }
  }
  return 1024 + (size_t)n * (size_t)tb;
}

int main(int argc, char **argv) {
  static uint8_t data[1 << 16];
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(20000), ok = 0;
  for (long r = 0; r < runs; r++) {
    int32_t tb = next() % 2 ? 2 : 4;
    size_t n = make_seed(data, tb, (uint32_t)(next() % 200));
    int edits = (int)(next() % 4);  /* zero edits: the seed itself must open */
    for (int e = 0; e < edits; e++) {
      size_t at = n ? next() % n : 0;
      switch (next() % 7) {
        case 0: if (n) data[at] ^= (uint8_t)(1u << (next() % 8)); break;  /* a bit flip, anywhere */
        case 1: data[next() % 12] = (uint8_t)next(); break;             /* a header byte */
        case 2: put32(data + 8, (uint32_t)next() % 300); break;          /* another count */
        case 3: n = at; break;                                           /* truncate */
        case 4: if (n < sizeof data - 8) { size_t k = 1 + next() % 7; memset(data + n, 0, k); n += k; } break;
        case 5: put32(data + 4, (uint32_t)(next() % 9)); break;          /* another version */
        case 6: put32(data, next() % 2 ? 20240520u : 20240801u); break;  /* the other magic */
      }
    }
    int opened = one_input(data, n);
    if (edits == 0) REQUIRE(opened);  /* the seed itself is valid */
    ok += opened;
  }
  /* short files of every length below the header, and empty */
  for (size_t n = 0; n <= 1025; n += 1 + n / 8) {
    make_seed(data, 2, 0);
    LLVMFuzzerTestOneInput(data, n);
  }
  unlink(temp_path());
  printf("%ld mutated shards ran without a crash (%ld opened, %ld were refused)\n", runs, ok, runs - ok);
  return 0;
}
#endif
