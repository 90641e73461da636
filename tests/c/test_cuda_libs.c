/* cuBLAS is loaded on first use, not at startup (runtime/cuda_libs.c): the
   process does not map it until tide_cuda_blas_version asks, and then gets
   a real version. Needs no GPU; without CUDA the version is 0. */
#include "tide.h"
#include <stdio.h>
#include <string.h>

/* Whether a library whose path contains name is mapped into this process. */
static int mapped(const char *name) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
  fclose(f);
  return found;
}

int main(void) {
  int fails = 0;
  if (mapped("libcublas") != 0) { printf("FAIL: cuBLAS is mapped before first use\n"); fails++; }
  int v = tide_cuda_blas_version();
#ifdef TIDE_HAVE_CUDA
  if (v < 10000) { printf("FAIL: cuBLAS version %d (%s)\n", v, tide_last_error()); fails++; }
  if (mapped("libcublas") != 1) { printf("FAIL: cuBLAS is not mapped after use\n"); fails++; }
  if (tide_cuda_blas_version() != v) { printf("FAIL: a second call disagrees\n"); fails++; }
  printf("cuBLAS %d loaded on first use\n", v);
#else
  if (v != 0) { printf("FAIL: a build without CUDA reports cuBLAS %d\n", v); fails++; }
  printf("built without CUDA: cuBLAS version 0\n");
#endif
  return fails != 0;
}
