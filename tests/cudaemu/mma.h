/* Tensor-core warp instructions that also run under cudaemu.

   mma_bf16_16816: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, D = A*B + C
   ldmatrix_x4:    ldmatrix.sync.aligned.m8n8.x4.shared.b16

   Under nvcc (device pass) each is the one PTX instruction. Under g++ each is a
   warp collective (cudaemu::warp_gather): all 32 lanes arrive, then every
   lane's result is computed from every lane's inputs, with the per-lane
   fragment layouts of the PTX ISA (section "Matrix Fragments for
   mma.m16n8k16 with floating point type", and "ldmatrix"):

     groupID g = lane >> 2, threadID_in_group t = lane % 4; a .b32 register
     holds two 16-bit elements, the lower-numbered one in the low half.
     A (16x16, row): a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
                     a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
     B (16x8, col):  b[0] = B[2t..2t+1][g]    b[1] = B[2t+8..2t+9][g]
     C, D (16x8 f32): c[0..1] = C[g][2t..2t+1]  c[2..3] = C[g+8][2t..2t+1]
     ldmatrix .x4: lanes 8j..8j+7 give the addresses of rows 0-7 of matrix j
                   (16 bytes each); r[j] of lane i = matrix j, row i/4,
                   elements 2(i%4) and 2(i%4)+1.

   Every lane of the warp must call (the mask is full). The emulated mma sums,
   for each D element, C first, then the 16 products in k order 0..15, each
   addition rounded to f32 (a bf16*bf16 product is exact in f32). The hardware
   does not document its order or internal precision: compare with a
   tolerance unless the values make every partial sum exact. */
#ifndef TIDE_CUDAEMU_MMA_H
#define TIDE_CUDAEMU_MMA_H

#include "cudaemu.h"
#include <stdint.h>

#if defined(__CUDACC__)

__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
        "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row_ptr) {
#if defined(__CUDA_ARCH__)
  unsigned addr = (unsigned)__cvta_generic_to_shared(smem_row_ptr);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}

#else /* the emulator */

namespace cudaemu {
inline float bf16_bits_to_float(uint32_t h) {
  uint32_t u = h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
} // namespace cudaemu

inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                           CUDAEMU_SITE_) {
  struct Frag { uint32_t a[4], b[2]; };
  Frag mine, all[32];
  for (int i = 0; i < 4; i++) mine.a[i] = a[i];
  for (int i = 0; i < 2; i++) mine.b[i] = b[i];
  float cin[4] = {c[0], c[1], c[2], c[3]};  // d may alias c
  ::cudaemu::warp_gather(0xffffffffu, &mine, sizeof mine, all, file_, line_);
  // the whole A and B from the warp's fragments, by the layouts above
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; l++) {
    int g = l >> 2, t = l & 3;
    for (int h = 0; h < 2; h++) {
      int sh = 16 * h;
      A[g][2 * t + h] = ::cudaemu::bf16_bits_to_float(all[l].a[0] >> sh & 0xFFFF);
      A[g + 8][2 * t + h] = ::cudaemu::bf16_bits_to_float(all[l].a[1] >> sh & 0xFFFF);
      A[g][2 * t + 8 + h] = ::cudaemu::bf16_bits_to_float(all[l].a[2] >> sh & 0xFFFF);
      A[g + 8][2 * t + 8 + h] = ::cudaemu::bf16_bits_to_float(all[l].a[3] >> sh & 0xFFFF);
      B[2 * t + h][g] = ::cudaemu::bf16_bits_to_float(all[l].b[0] >> sh & 0xFFFF);
      B[2 * t + 8 + h][g] = ::cudaemu::bf16_bits_to_float(all[l].b[1] >> sh & 0xFFFF);
    }
  }
  int lane = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31;
  int g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; i++) {
    int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    volatile float acc = cin[i];  // volatile: one f32 rounding per addition, whatever the flags
    for (int k = 0; k < 16; k++) acc = acc + A[row][k] * B[k][col];
    d[i] = acc;
  }
}

inline void ldmatrix_x4(uint32_t r[4], const void *smem_row_ptr, CUDAEMU_SITE_) {
  unsigned char rows[32][16];  // lane j's 16 bytes: row j % 8 of matrix j / 8
  ::cudaemu::warp_gather(0xffffffffu, smem_row_ptr, 16, rows, file_, line_);
  int lane = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31;
  for (int j = 0; j < 4; j++) memcpy(&r[j], &rows[8 * j + lane / 4][4 * (lane % 4)], 4);
}

#endif /* __CUDACC__ */
#endif
