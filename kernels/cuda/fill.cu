// The first CUDA kernel: a fill, so the CUDA build path (nvcc, cudart) is
// exercised from day one. Real kernels arrive with the GPU issues.
#include "../../tests/cudaemu/cudaemu.h"  // cuda_runtime.h under nvcc; the CPU emulator under g++
#include <stdint.h>

extern "C" {
#include "error.h"
}

__global__ static void fill_f32(float *p, int64_t n, float v) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (; i < n; i += stride) p[i] = v;
}

extern "C" int tide_cuda_fill_f32(float *p, int64_t n, float value) {
  if (n <= 0) return 0;
  int blocks = (int)((n + 255) / 256);
  if (blocks > 65535) blocks = 65535;
  LAUNCH(fill_f32, blocks, 256, 0, 0, p, n, value);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return tide_fail("cuda fill: %s", cudaGetErrorString(e));
  return 0;
}
