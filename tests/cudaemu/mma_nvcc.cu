// Compiles tests/cudaemu/mma.h with nvcc (its PTX branch) in every CUDA build;
// nothing launches it here: on a GPU, test_cudaemu's mma check is the one to port.
#include "mma.h"

__global__ void cudaemu_mma_nvcc_check(const uint16_t *A, const uint16_t *Bt, float *D) {
  alignas(16) __shared__ uint16_t sA[16 * 16];
  alignas(16) __shared__ uint16_t sB[8 * 16];
  int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) sA[i] = A[i];
  for (int i = lane; i < 128; i += 32) sB[i] = Bt[i];
  __syncthreads();
  int j = lane / 8, r = lane % 8;
  uint32_t a[4], bb[4];
  ldmatrix_x4(a, &sA[(r + (j & 1) * 8) * 16 + (j >> 1) * 8]);
  ldmatrix_x4(bb, &sB[r * 16 + (j & 1) * 8]);
  uint32_t b[2] = {bb[0], bb[1]};
  float c[4] = {0, 0, 0, 0}, d[4];
  mma_bf16_16816(d, a, b, c);
  for (int i = 0; i < 4; i++) D[lane * 4 + i] = d[i];
}
