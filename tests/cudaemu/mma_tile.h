// The mma tile kernel of tests/cudaemu: test_cudaemu.cc and kernels/test_mma.cc run it under the
// emulator; gpu_cuda_kernels (kernels/test_mma.cc compiled by nvcc) runs the PTX on a GPU.
#ifndef CUDAEMU_MMA_TILE_H
#define CUDAEMU_MMA_TILE_H
#include "mma.h"

// D = A * B + C for one 16x8 tile, by one warp: A (16x16 bf16, row-major) and
// Bt (B transposed: 8 rows of 16 k, bf16) staged in shared memory, loaded with
// ldmatrix_x4, multiplied with mma_bf16_16816. kSwap takes A's matrices 1 and
// 2 in the wrong order (a[1] and a[2] swapped): a wrong lane mapping.
// Without kSwap, each lane's ldmatrix fragments are also compared with the
// PTX ISA's formulas and the mismatches counted in *bad.
template <bool kSwap>
__global__ void mma_tile(const uint16_t *A, const uint16_t *Bt, const float *C, float *D, unsigned *bad) {
  alignas(16) __shared__ uint16_t sA[16 * 16];
  alignas(16) __shared__ uint16_t sB[8 * 16];
  int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) sA[i] = A[i];
  for (int i = lane; i < 128; i += 32) sB[i] = Bt[i];
  __syncthreads();
  int j = lane / 8, r = lane % 8;
  // matrices 0-3 of A: rows 0-7 / 8-15 (bit 0 of j), columns 0-7 / 8-15 (bit 1)
  int row = r + (kSwap ? (j >> 1) : (j & 1)) * 8, col = (kSwap ? (j & 1) : (j >> 1)) * 8;
  uint32_t a[4], bb[4];
  ldmatrix_x4(a, &sA[row * 16 + col]);
  // matrices 0 and 1 of B: k 0-7 and k 8-15 of the 8 columns (2 and 3 repeat them)
  ldmatrix_x4(bb, &sB[r * 16 + (j & 1) * 8]);
  uint32_t b[2] = {bb[0], bb[1]};
  int g = lane >> 2, t = lane & 3;
  if (!kSwap) {  // ldmatrix gave each lane the fragment the PTX ISA's formulas name
    auto pair = [](const uint16_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 16; };
    uint32_t want[6] = {pair(&sA[g * 16 + 2 * t]), pair(&sA[(g + 8) * 16 + 2 * t]), pair(&sA[g * 16 + 2 * t + 8]),
                        pair(&sA[(g + 8) * 16 + 2 * t + 8]), pair(&sB[g * 16 + 2 * t]), pair(&sB[g * 16 + 2 * t + 8])};
    uint32_t have[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    for (int i = 0; i < 6; i++)
      if (have[i] != want[i]) atomicAdd(bad, 1u);
  }
  float c[4], d[4];
  for (int i = 0; i < 4; i++) c[i] = C[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)];
  mma_bf16_16816(d, a, b, c);
  for (int i = 0; i < 4; i++) D[(g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1)] = d[i];
}

#endif
