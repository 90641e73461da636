/* Runs the fuzz target without libFuzzer: on the files named on the command
   line (a saved crash or corpus), or else on seeded pseudo-random programs,
   so every ctest run fuzzes a little and a found input can be replayed. */
#include "fuzz_driver.h"
extern long tide_fuzz_ok[24], tide_fuzz_err[24];

int main(int argc, char **argv) {
  int replayed = fuzz_replay_files(argc, argv);
  if (replayed >= 0) return replayed;
  long runs = fuzz_runs(20000);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  uint8_t buf[512];
  for (long k = 0; k < runs; k++) {
    size_t n = 1 + (size_t)(k % 500);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(fuzz_next(&s) >> 24);
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("%ld random programs ran without a crash; calls per op (ok/error):\n", runs);
  for (int op = 0; op < 24; op++) printf("  op %2d: %6ld / %6ld\n", op, tide_fuzz_ok[op], tide_fuzz_err[op]);
  return 0;
}
