/* Runs the fuzz target without libFuzzer: on the files named on the command
   line (a saved crash or corpus), or else on seeded pseudo-random programs,
   so every ctest run fuzzes a little and a found input can be replayed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern long tide_fuzz_ok[24], tide_fuzz_err[24];

int main(int argc, char **argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; i++) {
      FILE *f = fopen(argv[i], "rb");
      if (!f) { fprintf(stderr, "cannot open %s\n", argv[i]); return 1; }
      static uint8_t buf[1 << 20];
      size_t n = fread(buf, 1, sizeof buf, f);
      fclose(f);
      LLVMFuzzerTestOneInput(buf, n);
    }
    printf("replayed %d inputs\n", argc - 1);
    return 0;
  }
  const char *env = getenv("TIDE_FUZZ_RUNS");
  long runs = env ? atol(env) : 20000;
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint8_t buf[512];
  for (long k = 0; k < runs; k++) {
    size_t n = 1 + (size_t)(k % 500);
    for (size_t i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >> 7; s ^= s << 17;
      buf[i] = (uint8_t)(s >> 24);
    }
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("%ld random programs ran without a crash; calls per op (ok/error):\n", runs);
  for (int op = 0; op < 24; op++) printf("  op %2d: %6ld / %6ld\n", op, tide_fuzz_ok[op], tide_fuzz_err[op]);
  return 0;
}
