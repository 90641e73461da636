// What every kernels/cuda/*.cu file shares: the emulator-or-CUDA header, the
// launch check, strided indexing and block sizes. A kernel file includes
// this first; it compiles under nvcc (the GPU) and under g++ with
// tests/cudaemu (the CPU emulator), unchanged.
#ifndef TIDE_CUDA_COMMON_CUH
#define TIDE_CUDA_COMMON_CUH

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include "../../tests/cudaemu/cudaemu.h"  // cuda_runtime.h under nvcc; the CPU emulator under g++
#include <stdint.h>

extern "C" {
#include "tide.h"
#include "error.h"
#include "cuda_rt.h"  // runtime/cuda.h: scratch memory, the current device
}

// The stream every kernel runs on: the device's default stream, so the order
// of launches is the order of ops and the caching allocator may reuse a
// freed block for the next op without an event. While tide.cuda.graph
// captures the current device it is the capture stream instead (runtime.cu).
extern "C" cudaStream_t tide_cuda_stream(void);
#define TIDE_CUDA_STREAM (tide_cuda_stream())

// Checks a launch (configuration errors at once; in debug-sync mode the kernel's
// own faults too), records op among the recent ops named when an
// asynchronous fault surfaces later, and counts the launch for
// tide.cuda.launch_stats. Returns 0 or -1 with an error naming op.
extern "C" int tide_cuda_after_launch(const char *op);

// Launches kernel on the stream, then returns -1 from the calling function if the launch failed.
#define TIDE_CUDA_LAUNCH(op, kernel, grid, block, smem, ...)                  \
  do {                                                                        \
    LAUNCH(kernel, grid, block, smem, TIDE_CUDA_STREAM, ##__VA_ARGS__);       \
    if (tide_cuda_after_launch(op) != 0) return -1;                           \
  } while (0)

// Copies n bytes of device memory to the host, waiting for the work before it; 0 or -1 with an error.
extern "C" int tide_cuda_to_host(void *dst, const void *src, size_t n, const char *op);
// Copies n bytes of host memory to the device (the host buffer may be reused at once); 0 or -1.
extern "C" int tide_cuda_to_device(void *dst, const void *src, size_t n, const char *op);

// Sum over a warp by xor butterflies (all 32 lanes present): every lane ends with the same bits,
// as each step adds the same two values in either order, so the result is schedule-independent.
template <class T> __device__ __forceinline__ T tide_warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Threads per block of the elementwise kernels, and a grid that covers n
// elements with grid-stride loops (capped so huge tensors loop instead).
enum { TIDE_CUDA_THREADS = 256 };
static inline unsigned tide_cuda_blocks(int64_t n, int threads = TIDE_CUDA_THREADS) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)b;
}

// An ndim-d shape and the element strides of up to 4 operands over it, passed
// to kernels by value. offset(k, i) is operand k's element offset of the
// row-major linear index i.
template <int K> struct tide_cuda_strided {
  int32_t ndim;
  int64_t shape[TIDE_MAX_DIMS];
  int64_t stride[K][TIDE_MAX_DIMS];
  __host__ __device__ __forceinline__ int64_t offset(int k, int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; d--) {
      int64_t q = i / shape[d];
      off += (i - q * shape[d]) * stride[k][d];
      i = q;
    }
    return off;
  }
};

// Fills a tide_cuda_strided from host arrays (strides[k] may be NULL: contiguous); returns the element count.
template <int K>
static inline int64_t tide_cuda_strided_init(tide_cuda_strided<K> *g, int32_t ndim, const int64_t *shape,
                                             const int64_t *const *strides) {
  int64_t n = 1;
  g->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    g->shape[d] = shape[d];
    n *= shape[d];
  }
  for (int k = 0; k < K; k++) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      g->stride[k][d] = strides[k] ? strides[k][d] : s;
      s *= shape[d];
    }
  }
  return n;
}

// Grid-stride loop over [0, n).
#define TIDE_CUDA_FOR(i, n)                                                            \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);            \
       i += (int64_t)gridDim.x * blockDim.x)

#endif
