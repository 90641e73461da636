/* GPU check of the first CUDA kernel: fill device memory and read it back.
   Exits 77 (reported by ctest as skipped) where no GPU is present. */
#include "cuda.h"
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  if (tide_cuda_device_count() == 0) {
    printf("skipped: no CUDA device on this machine\n");
    return 77;
  }
  const int64_t n = 1 << 20;
  float *d = NULL;
  if (cudaMalloc((void **)&d, (size_t)n * sizeof(float)) != cudaSuccess) {
    printf("FAIL: cudaMalloc\n");
    return 1;
  }
  float *h = malloc((size_t)n * sizeof(float));
  int bad = 0;
  if (!h || tide_cuda_fill_f32(d, n, 2.5f) != 0 ||
      cudaMemcpy(h, d, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
    printf("FAIL: %s\n", tide_last_error());
    bad = 1;
  }
  for (int64_t i = 0; !bad && i < n; i++)
    if (h[i] != 2.5f) { printf("FAIL: element %lld is %g\n", (long long)i, h[i]); bad = 1; }
  printf("cuBLAS version %d\n", tide_cuda_blas_version());
  free(h);
  cudaFree(d);
  printf("%s\n", bad ? "FAIL" : "ok: 1M floats filled on the GPU");
  return bad;
}
