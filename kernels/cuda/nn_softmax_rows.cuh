// Block-wide reductions in a fixed order, for the row kernels of the softmax,
// loss and norm families (nn_softmax.cu, nn_loss.cu, nn_norm.cu). One block
// reduces one row: each thread folds its elements (t, t + blockDim, ...) in
// order, then a butterfly of xor shuffles inside each warp and one more over
// the warps' results. The shape of that tree depends only on blockDim, never
// on the order in which threads run, so a result has the same bits on every
// run (and every emulator seed). The xor butterfly leaves the same value in
// every lane (a + b == b + a), so every thread gets the result without a
// broadcast.
#ifndef TIDE_CUDA_NN_SOFTMAX_ROWS_CUH
#define TIDE_CUDA_NN_SOFTMAX_ROWS_CUH
#include "common.cuh"
#include <math.h>

// Threads per row block: a multiple of 32, at most 1024 (32 warps).
enum { NN_ROW_THREADS = 256 };

__device__ __forceinline__ float nn_exp(float v) { return expf(v); }
__device__ __forceinline__ double nn_exp(double v) { return exp(v); }

// max that skips NaN in v (as the CPU's `x > m ? x : m`): a NaN reaches the
// sums instead, which is what makes a row holding one NaN throughout
__device__ __forceinline__ float nn_max(float a, float v) { return v > a ? v : a; }
__device__ __forceinline__ double nn_max(double a, double v) { return v > a ? v : a; }

template <class T> __device__ __forceinline__ T nn_warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = nn_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The sum of every thread's v, returned to every thread. Called by all threads of the block.
template <class T> __device__ T nn_block_sum(T v) {
  __shared__ T part[32];
  v = tide_warp_sum(v);
  __syncthreads();  // the previous call's reads of part are over
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  v = (threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : T(0);
  return tide_warp_sum(v);
}

// The maximum of every thread's v (NaN skipped), returned to every thread.
template <class T> __device__ T nn_block_max(T v) {
  __shared__ T part[32];
  v = nn_warp_max(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  v = (threadIdx.x & 31) < (blockDim.x >> 5) ? part[threadIdx.x & 31] : T(-INFINITY);
  return nn_warp_max(v);
}

// Blocks for a launch of one block per row, looping when rows exceed the grid.
static inline unsigned nn_row_blocks(int64_t rows) {
  int64_t b = rows < 1 ? 1 : rows;
  return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

#endif
