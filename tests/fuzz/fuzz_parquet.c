/* Fuzz target for the Parquet reader (runtime/parquet.c and the Thrift,
   encoding and codec files under it). Any bytes, as a file, must open and
   decode every column of every row group or fail with a message naming the
   file; never crash, hang or read out of bounds. What a successful read
   gives must be consistent: one entry per row, nulls counted as the valid
   flags say, string pointers and lengths inside memory ASan will check (each
   value's bytes are hashed), and reading a chunk whole (tide_parquet_read)
   and page by page (tide_parquet_start/next) must agree: both fail, or both
   give the same rows.

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON: build/tests/fuzz_parquet
   tests/data/parquet) and, with TIDE_FUZZ_REPLAY_MAIN, as tests/fuzz_parquet_replay:
   run on files it replays them; run bare it feeds seeded mutations of the
   golden files of tests/data/parquet (pyarrow's: every codec, encoding and
   page version), which ctest does on every run: byte edits anywhere, and
   overwrites aimed at the pages and at the footer, where most damage would
   otherwise stop at the magic bytes. */
#include "tide.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_parquet: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

static char tmp_path[64];
static long opened, decoded, failed;

/* Checks a decoded column (or page) of rows entries and returns a digest of
   its contents (valid flags, values, string bytes) continuing the digest sum,
   to compare the whole-chunk and page-by-page reads. */
static uint64_t check_column(const tide_parquet_column *c, int64_t rows, uint64_t sum) {
  REQUIRE(c->rows == rows);
  int64_t nulls = 0;
  for (int64_t i = 0; i < rows; i++) {
    int ok = !c->valid || c->valid[i];
    REQUIRE(!c->valid || c->valid[i] <= 1);
    nulls += !ok;
    if (c->type == TIDE_PQ_BYTE_ARRAY) {
      REQUIRE(c->lens[i] >= 0 && c->ptrs[i] != NULL);
      REQUIRE(ok || c->lens[i] == 0);
      for (int32_t k = 0; k < c->lens[i]; k++) sum = sum * 31 + (uint8_t)c->ptrs[i][k];
    } else if (c->type == TIDE_PQ_BOOLEAN) {
      REQUIRE(((const uint8_t *)c->values)[i] <= 1);
      sum = sum * 31 + ((const uint8_t *)c->values)[i];
    } else if (c->type == TIDE_PQ_INT32 || c->type == TIDE_PQ_FLOAT) {
      sum = sum * 31 + ((const uint32_t *)c->values)[i];
    } else {
      REQUIRE(c->type == TIDE_PQ_INT64 || c->type == TIDE_PQ_DOUBLE);
      sum = sum * 31 + ((const uint64_t *)c->values)[i];
    }
    sum = sum * 31 + (uint64_t)ok;
  }
  REQUIRE(nulls == c->nulls);
  return sum;
}

/* Reads every readable column of every row group of the file at path. */
static void read_all(const char *path) {
  tide_parquet *p = NULL;
  if (tide_parquet_open(path, &p) != 0) {
    REQUIRE(p == NULL && strstr(tide_last_error(), path));
    failed++;
    return;
  }
  opened++;
  int32_t nrg = tide_parquet_num_row_groups(p), nc = tide_parquet_num_columns(p);
  REQUIRE(nrg >= 0 && nc >= 0 && tide_parquet_file_size(p) >= 12);
  for (int32_t col = 0; col < nc; col++) {
    const char *name;
    int32_t type;
    REQUIRE(tide_parquet_column_info(p, col, &name, &type) == 0 && name && type >= 0 && type <= TIDE_PQ_GROUP);
    REQUIRE(tide_parquet_find_column(p, name, (int64_t)strlen(name)) <= col);
    if (tide_parquet_check_column(p, col) != 0) {
      REQUIRE(strstr(tide_last_error(), path) && strstr(tide_last_error(), name));
      continue;
    }
    for (int32_t rg = 0; rg < nrg; rg++) {
      /* whole, then page by page: the same rows, or both fail */
      tide_parquet_column c;
      int64_t rows = tide_parquet_row_group_rows(p, rg);
      int whole = tide_parquet_read(p, rg, col, &c);
      REQUIRE(whole == 0 || strstr(tide_last_error(), path));
      uint64_t digest = whole == 0 ? check_column(&c, rows, 0) : 0;
      int rc = tide_parquet_start(p, rg, col);
      uint64_t pdigest = 0;
      int64_t got = 0;
      while (rc == 0) {
        int more = tide_parquet_next(p, col, &c);
        if (more < 0) { rc = -1; break; }
        if (more == 0) break;
        REQUIRE(c.rows >= 0 && c.rows <= rows - got);
        pdigest = check_column(&c, c.rows, pdigest);
        got += c.rows;
      }
      if (rc != 0) REQUIRE(strstr(tide_last_error(), path));
      REQUIRE((rc == 0) == (whole == 0));
      if (whole != 0) { failed++; break; }
      REQUIRE(got == rows && pdigest == digest);
      decoded++;
    }
    tide_parquet_release(p, col);
  }
  tide_parquet_close(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tmp_path[0]) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/tide_fuzz_parquet_%d.parquet", (int)getpid());
  }
  FILE *f = fopen(tmp_path, "wb");
  if (!f) return 0;
  REQUIRE(fwrite(data, 1, size, f) == size);
  fclose(f);
  read_all(tmp_path);
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
#include "fuzz_driver.h"
#include <dirent.h>

#ifndef TIDE_PARQUET_SEEDS
#define TIDE_PARQUET_SEEDS "tests/data/parquet"
#endif

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return fuzz_next(&rng); }

#define MAX_SEEDS 64
#define CAP (1 << 17)
static uint8_t *seeds[MAX_SEEDS];
static size_t seed_len[MAX_SEEDS];
static int nseeds;

static void load_seeds(void) {
  DIR *d = opendir(TIDE_PARQUET_SEEDS);
  REQUIRE(d);
  struct dirent *e;
  char names[MAX_SEEDS][256];
  while ((e = readdir(d)) && nseeds < MAX_SEEDS) {
    size_t n = strlen(e->d_name);
    if (n < 8 || strcmp(e->d_name + n - 8, ".parquet") != 0) continue;
    snprintf(names[nseeds], sizeof names[0], "%s", e->d_name);
    nseeds++;
  }
  closedir(d);
  /* readdir's order is the file system's: sort, so runs are reproducible */
  qsort(names, (size_t)nseeds, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  for (int i = 0; i < nseeds; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", TIDE_PARQUET_SEEDS, names[i]);
    FILE *f = fopen(path, "rb");
    REQUIRE(f);
    seeds[i] = malloc(CAP + 64);
    seed_len[i] = fread(seeds[i], 1, CAP, f);
    REQUIRE(seed_len[i] < CAP);
    fclose(f);
  }
  REQUIRE(nseeds >= 10);
}

static const char alphabet[] = "\x00\x01\x02\x03\x04\x05\x06\x08\x0c\x0f\x10\x15\x16\x18\x19\x1c\x26\x2c\x7f\x80\xff"
                               "PAR1";

int main(int argc, char **argv) {
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  load_seeds();
  static uint8_t data[CAP + 64];
  long runs = fuzz_runs(3000);
  /* each seed whole first: they must all open */
  for (int i = 0; i < nseeds; i++) LLVMFuzzerTestOneInput(seeds[i], seed_len[i]);
  REQUIRE(opened == nseeds);
  for (long r = 0; r < runs; r++) {
    int s = (int)(next() % (uint64_t)nseeds);
    size_t n = seed_len[s];
    memcpy(data, seeds[s], n);
    uint32_t flen = 0;
    memcpy(&flen, data + n - 8, 4);
    size_t fstart = n - 8 - flen;
    int edits = 1 + (int)(next() % 4);
    switch (next() % 3) {
      case 0: n = fuzz_mutate(data, n, CAP, alphabet, sizeof alphabet - 1, &rng); break;
      case 1:  /* the pages: headers, levels, values */
        for (int e = 0; e < edits; e++) data[4 + next() % (fstart - 4)] = (uint8_t)next();
        break;
      case 2:  /* the footer */
        for (int e = 0; e < edits; e++) data[fstart + next() % flen] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)];
        break;
    }
    LLVMFuzzerTestOneInput(data, n);
  }
  unlink(tmp_path);
  printf("%ld mutated Parquet files ran without a crash (%ld opened, %ld chunks decoded, %ld errors)\n", runs, opened, decoded, failed);
  return 0;
}
#endif
