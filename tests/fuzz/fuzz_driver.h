/* The parts every fuzz target's replay driver (TIDE_FUZZ_REPLAY_MAIN)
   shares: replaying the files named on the command line (what libFuzzer
   saved), the number of seeded runs, a xorshift generator and byte-level
   mutations of a seed input. Included by one .c file per driver. */
#ifndef TIDE_FUZZ_DRIVER_H
#define TIDE_FUZZ_DRIVER_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* With files on the command line, runs the target on each and returns 0 (or
   1 when one cannot be read); without, returns -1: go on with seeded runs. */
static inline int fuzz_replay_files(int argc, char **argv) {
  if (argc <= 1) return -1;
  static uint8_t data[1 << 20];
  for (int i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", argv[i]); return 1; }
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    LLVMFuzzerTestOneInput(data, n);
  }
  printf("replayed %d inputs\n", argc - 1);
  return 0;
}

/* How many seeded inputs to run: $TIDE_FUZZ_RUNS, else dflt. */
static inline long fuzz_runs(long dflt) {
  const char *env = getenv("TIDE_FUZZ_RUNS");
  return env ? atol(env) : dflt;
}

/* The next value of a xorshift64 stream (state must not be 0). */
static inline uint64_t fuzz_next(uint64_t *s) {
  *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
  return *s;
}

/* One to four edits of data[0..n) (a byte from alphabet replaced or
   inserted, a byte deleted, a cut, a chunk repeated) while n < limit;
   data must hold limit + 16 bytes. Returns the new length. */
static inline size_t fuzz_mutate(uint8_t *data, size_t n, size_t limit, const char *alphabet, size_t alen, uint64_t *rng) {
  int edits = 1 + (int)(fuzz_next(rng) % 4);
  for (int e = 0; e < edits && n < limit; e++) {
    size_t at = n ? fuzz_next(rng) % n : 0;
    switch (fuzz_next(rng) % 5) {
      case 0: if (n) data[at] = (uint8_t)alphabet[fuzz_next(rng) % alen]; break;
      case 1: memmove(data + at + 1, data + at, n - at); data[at] = (uint8_t)alphabet[fuzz_next(rng) % alen]; n++; break;
      case 2: if (n) { memmove(data + at, data + at + 1, n - at - 1); n--; } break;
      case 3: n = at; break;
      case 4: {
        size_t len = 1 + fuzz_next(rng) % 16;
        if (at + len > n) len = n - at;
        memmove(data + at + len, data + at, n - at);
        n += len;
        break;
      }
    }
  }
  return n;
}

#endif
