/* Fuzz target for safetensors reading and writing (runtime/safetensors.c).
   The first input byte picks how the rest becomes a file: raw bytes (mode 0),
   or a header given as text, whose length prefix and data section (size from
   the next two bytes) are made to fit, so the fuzzer spends its time inside
   the header checks (mode 1). Opening must either fail with a
   "safetensors: ..." message or give tensors whose info and data are
   consistent; those are then saved, reopened and compared byte for byte.

   Built as a libFuzzer binary with clang (-DTIDE_FUZZ=ON:
   build/tests/fuzz_safetensors) and, with TIDE_FUZZ_REPLAY_MAIN, as
   tests/fuzz_safetensors_replay, which replays files given to it or else
   feeds seeded mutations of valid files (ctest runs it). Files are written
   under $TMPDIR (else /dev/shm or /tmp) with the process id in their names. */
#include "tensor.h"
#include "json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REQUIRE(cond) do { if (!(cond)) { fprintf(stderr, "fuzz_safetensors: %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

/* Files go to $TMPDIR, else /dev/shm where it exists (saves fsync, which
   costs milliseconds on a disk), else /tmp. */
static void temp_path(char *out, size_t cap, const char *what) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !dir[0]) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(out, cap, "%s/tide_fuzz_st_%ld_%s", dir, (long)getpid(), what);
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  REQUIRE(f);
  REQUIRE(fwrite(p, 1, n, f) == n);
  REQUIRE(fclose(f) == 0);
}

/* Loads every tensor of f, saves them to a second file and checks it reads
   back the same. */
static void exercise(tide_st_file *f) {
  int64_t n = tide_st_count(f);
  REQUIRE(n >= 0 && tide_st_name(f, n) == NULL && tide_st_name(f, -1) == NULL);
  tide_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
  const char **names = calloc((size_t)n + 1, sizeof *names);
  REQUIRE(ts && names);
  int32_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    const char *name = tide_st_name(f, i);
    REQUIRE(name);
    int32_t dt = -1, nd = -1;
    int64_t shape[TIDE_MAX_DIMS];
    if (tide_st_info(f, i, &dt, &nd, shape) != 0) {
      REQUIRE(strstr(tide_last_error(), "unsupported dtype"));
      tide_tensor *t = NULL;
      REQUIRE(tide_st_load(f, i, &t) == -1 && t == NULL);
      continue;
    }
    REQUIRE(tide_dtype_valid(dt) && nd >= 0 && nd <= TIDE_MAX_DIMS);
    tide_tensor *t = NULL;
    if (tide_st_load(f, i, &t) != 0) {
      REQUIRE(t == NULL && tide_last_error()[0]);  /* e.g. out of memory for a huge shape */
      continue;
    }
    REQUIRE(t->dtype == dt && t->ndim == nd && tide_is_contiguous(t));
    for (int32_t d = 0; d < nd; d++) REQUIRE(t->shape[d] == shape[d]);
    if (dt == TIDE_BOOL)
      for (int64_t k = 0; k < t->numel; k++) REQUIRE(t->data[k] == 0 || t->data[k] == 1);
    names[kept] = name;
    ts[kept++] = t;
  }
  char out[512];
  temp_path(out, sizeof out, "out.safetensors");
  if (tide_st_save(out, kept, names, ts, tide_st_metadata(f)) == 0) {
    tide_st_file *g = NULL;
    if (tide_st_open(out, &g) != 0) {
      fprintf(stderr, "fuzz_safetensors: a file tide wrote does not open: %s\n", tide_last_error());
      abort();
    }
    REQUIRE(tide_st_count(g) == kept);
    REQUIRE(strcmp(tide_st_metadata(g), tide_st_metadata(f)) == 0);
    for (int64_t i = 0; i < kept; i++) {
      const char *name = tide_st_name(g, i);
      int32_t j = 0;
      while (j < kept && strcmp(names[j], name) != 0) j++;
      REQUIRE(j < kept);
      tide_tensor *t = NULL;
      REQUIRE(tide_st_load(g, i, &t) == 0);
      REQUIRE(t->dtype == ts[j]->dtype && t->numel == ts[j]->numel);
      REQUIRE(memcmp(t->data, ts[j]->data, (size_t)t->numel * (size_t)tide_dtype_size(t->dtype)) == 0);
      tide_tensor_release(t);
    }
    tide_st_close(g);
  } else {
    /* the names came from a valid header, so only resources can fail here */
    REQUIRE(strncmp(tide_last_error(), "safetensors", 11) == 0 || strstr(tide_last_error(), "memory"));
  }
  unlink(out);
  for (int32_t i = 0; i < kept; i++) tide_tensor_release(ts[i]);
  free(ts);
  free(names);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  char path[512];
  temp_path(path, sizeof path, "in.safetensors");
  if (data[0] & 1) {
    /* mode 1: [mode][data size: 2 bytes][header text] */
    if (size < 3) return 0;
    size_t ndata = ((size_t)data[1] | (size_t)data[2] << 8) % 4096, hl = size - 3;
    uint8_t *img = malloc(8 + hl + ndata + 1);
    REQUIRE(img);
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, data + 3, hl);
    for (size_t i = 0; i < ndata; i++) img[8 + hl + i] = (uint8_t)(i * 37 + 11);
    write_file(path, img, 8 + hl + ndata);
    free(img);
  } else {
    write_file(path, data + 1, size - 1);
  }
  tide_st_file *f = (tide_st_file *)&size;  /* must be reset to NULL on failure */
  if (tide_st_open(path, &f) != 0) {
    REQUIRE(f == NULL);
    REQUIRE(strncmp(tide_last_error(), "safetensors: ", 13) == 0);
  } else {
    REQUIRE(f != NULL);
    exercise(f);
    tide_st_close(f);
  }
  unlink(path);
  return 0;
}

#ifdef TIDE_FUZZ_REPLAY_MAIN
/* Valid headers to mutate (the data sizes they need follow each). */
static const struct { const char *hdr; size_t ndata; } seeds[] = {
  {"{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
   "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},\"c\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[16,20]},"
   "\"d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[20,20]}}", 20},
  {"{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[12,15]},"
   "\"q\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[15,16]}}   ", 16},
  {"{\"x\":{\"dtype\":\"F64\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,16]},\"y\":{\"dtype\":\"U16\",\"shape\":[4],\"data_offsets\":[16,24]},"
   "\"z\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]},\"__metadata__\":{\"k\":\"v\\u00e9\"}}", 28},
  {"{}", 0},
};

#include "fuzz_driver.h"
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { return fuzz_next(&rng); }

static const char alphabet[] = "{}[]\",:0123456789-. eFIUBL_\\u\xff";

int main(int argc, char **argv) {
  static uint8_t data[1 << 16];
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(10000), opened = 0;
  size_t nseeds = sizeof seeds / sizeof seeds[0];
  for (long r = 0; r < runs; r++) {
    size_t s = next() % nseeds, hl = strlen(seeds[s].hdr), n;
    size_t ndata = seeds[s].ndata;
    if (next() % 4 == 0) ndata = next() % 40;
    int raw = next() % 3 == 0;
    if (raw) {
      /* a whole file image, then byte-level damage anywhere in it */
      data[0] = 0;
      for (int i = 0; i < 8; i++) data[1 + i] = (uint8_t)((uint64_t)hl >> (8 * i));
      memcpy(data + 9, seeds[s].hdr, hl);
      for (size_t i = 0; i < ndata; i++) data[9 + hl + i] = (uint8_t)next();
      n = 9 + hl + ndata;
    } else {
      data[0] = 1;
      data[1] = (uint8_t)ndata;
      data[2] = (uint8_t)(ndata >> 8);
      memcpy(data + 3, seeds[s].hdr, hl);
      n = 3 + hl;
    }
    size_t lo = raw ? 1 : 3;
    int edits = (int)(next() % 4);
    for (int e = 0; e < edits && n > lo && n < sizeof data - 64; e++) {
      size_t at = lo + next() % (n - lo);
      switch (next() % 5) {
        case 0: data[at] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)]; break;
        case 1: data[at] = (uint8_t)next(); break;
        case 2: memmove(data + at + 1, data + at, n - at); data[at] = (uint8_t)alphabet[next() % (sizeof alphabet - 1)]; n++; break;
        case 3: memmove(data + at, data + at + 1, n - at - 1); n--; break;
        case 4: n = at; break;  /* truncate */
      }
    }
    char path[512];
    LLVMFuzzerTestOneInput(data, n);
    /* count how many mutated files were still valid, to show both paths run */
    temp_path(path, sizeof path, "count.safetensors");
    if (!raw) {
      size_t hl2 = n - 3, nd = ((size_t)data[1] | (size_t)data[2] << 8) % 4096;
      uint8_t *img = calloc(8 + hl2 + nd + 1, 1);
      for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hl2 >> (8 * i));
      memcpy(img + 8, data + 3, hl2);
      write_file(path, img, 8 + hl2 + nd);
      free(img);
    } else {
      write_file(path, data + 1, n - 1);
    }
    tide_st_file *f = NULL;
    if (tide_st_open(path, &f) == 0) opened++;
    tide_st_close(f);
    unlink(path);
  }
  printf("%ld mutated files ran without a crash (%ld valid, %ld rejected)\n", runs, opened, runs - opened);
  return 0;
}
#endif
