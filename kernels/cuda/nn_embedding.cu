// The embedding family on CUDA (kernels/nn_embedding.h), matching
// kernels/cpu/nn_embedding.c.
//
// check_ids finds the first bad id on the device (an integer atomicMin of its
// position, so the id reported is the first, as on the CPU) and brings it
// back to the host: the op layer checks before any lookup.
//
// The backward is deterministic without float atomics and adds each row's
// gradients in the order of i, as the CPU does, bit for bit: a block owns a
// tile of columns (one per thread) and a range of rows of dweight; it zeroes
// them, then walks all ids in order (staged in shared memory, so the
// comparisons are block-uniform) and each thread adds dout[i, c] into its own
// column when ids[i] falls in the block's rows. Every element has exactly one
// owner thread, which adds its sources in i order.
#include "common.cuh"
extern "C" {
#include "nn_embedding.h"
#include "dtype.h"
}

// ---- check_ids ------------------------------------------------------------------------------

__global__ void embedding_check_kernel(unsigned long long *first, const int64_t *ids, int64_t n, int64_t V) {
  TIDE_CUDA_FOR(i, n) {
    int64_t v = ids[i];
    if (v < 0 || v >= V) atomicMin(first, (unsigned long long)i);
  }
}

static int embedding_check_ids(const int64_t *ids, int64_t n, int64_t V, int64_t *bad) {
  const char *what = "embedding";
  if (n <= 0) return 0;
  unsigned long long *first = (unsigned long long *)tide_cuda_scratch(sizeof *first);
  if (!first) return -1;
  unsigned long long pos = ~0ull;
  // "none yet": all bits set (an async memset, ordered before the check on the stream)
  cudaError_t e = cudaMemsetAsync(first, 0xFF, sizeof *first, TIDE_CUDA_STREAM);
  int rc = e == cudaSuccess ? 0 : tide_fail("%s on cuda: %s", what, cudaGetErrorString(e));
  if (rc == 0) {
    LAUNCH(embedding_check_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, first, ids, n, V);
    rc = tide_cuda_after_launch(what);
  }
  if (rc == 0) rc = tide_cuda_to_host(&pos, first, sizeof pos, what);
  tide_cuda_scratch_free(first, sizeof *first);
  if (rc) return -1;
  if (pos == ~0ull) return 0;
  if (tide_cuda_to_host(bad, ids + pos, sizeof *bad, what)) return -1;
  return 1;
}

// ---- forward --------------------------------------------------------------------------------

// one thread per output element; elements move whole (any float dtype: bytes are copied)
template <class T>
__global__ void embedding_forward_kernel(T *out, const T *w, const int64_t *ids, int64_t C, int64_t rs, int64_t cs,
                                         int64_t total) {
  TIDE_CUDA_FOR(e, total) {
    int64_t i = e / C, c = e - i * C;
    out[e] = w[ids[i] * rs + c * cs];
  }
}

template <class T>
static int launch_forward(void *out, const void *w, const int64_t *ids, int64_t C, int64_t rs, int64_t cs, int64_t total) {
  TIDE_CUDA_LAUNCH("embedding", embedding_forward_kernel<T>, tide_cuda_blocks(total), TIDE_CUDA_THREADS, 0, (T *)out,
                   (const T *)w, ids, C, rs, cs, total);
  return 0;
}

static int embedding_forward(void *out, const void *weight, const int64_t *ids, int64_t n, int64_t C,
                             int64_t w_row_stride, int64_t w_col_stride, int32_t dtype) {
  int64_t total = n * C;
  if (total <= 0) return 0;
  switch (tide_dtype_size(dtype)) {
    case 1: return launch_forward<uint8_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    case 2: return launch_forward<uint16_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    case 4: return launch_forward<uint32_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    default: return launch_forward<uint64_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
  }
}

// ---- backward -------------------------------------------------------------------------------

enum { EMB_THREADS = 128 };

// grid: x = column tiles of EMB_THREADS, y = row ranges of rows_per rows.
template <class T>
__global__ void embedding_backward_kernel(T *dw, const T *g, const int64_t *ids, int64_t n, int64_t V, int64_t C,
                                          int64_t rows_per) {
  __shared__ int64_t tile[EMB_THREADS];
  int64_t c = (int64_t)blockIdx.x * EMB_THREADS + threadIdx.x;
  int64_t r0 = (int64_t)blockIdx.y * rows_per, r1 = r0 + rows_per < V ? r0 + rows_per : V;
  bool mine = c < C;
  if (mine)
    for (int64_t r = r0; r < r1; r++) dw[r * C + c] = (T)0;
  for (int64_t base = 0; base < n; base += EMB_THREADS) {
    int64_t m = n - base < (int64_t)EMB_THREADS ? n - base : (int64_t)EMB_THREADS;
    __syncthreads();  // the previous chunk is read by every thread before it is replaced
    if ((int64_t)threadIdx.x < m) tile[threadIdx.x] = ids[base + threadIdx.x];
    __syncthreads();
    if (!mine) continue;
    for (int64_t k = 0; k < m; k++) {
      int64_t v = tile[k];
      if (v >= r0 && v < r1) {
        T *d = dw + v * C + c;
        *d = *d + g[(base + k) * C + c];
      }
    }
  }
}

template <class T>
static int launch_backward(void *dweight, const void *dout, const int64_t *ids, int64_t n, int64_t V, int64_t C) {
  // about 512 blocks in all: enough to fill a GPU; each block reads all n ids
  int64_t ctiles = (C + EMB_THREADS - 1) / EMB_THREADS;
  int64_t ranges = 512 / ctiles;
  if (ranges < 1) ranges = 1;
  if (ranges > V) ranges = V;
  if (ranges > 65535) ranges = 65535;
  int64_t rows_per = (V + ranges - 1) / ranges;
  ranges = (V + rows_per - 1) / rows_per;
  if (ctiles > 0x7fffffff) return tide_fail("embedding_backward: %lld columns are too many", (long long)C);
  dim3 grid((unsigned)ctiles, (unsigned)ranges);
  TIDE_CUDA_LAUNCH("embedding_backward", embedding_backward_kernel<T>, grid, EMB_THREADS, 0, (T *)dweight,
                   (const T *)dout, ids, n, V, C, rows_per);
  return 0;
}

static int embedding_backward(void *dweight, const void *dout, const int64_t *ids, int64_t n, int64_t V, int64_t C,
                              int32_t cd) {
  if (cd != TIDE_F32 && cd != TIDE_F64)
    return tide_fail("embedding_backward: the CUDA kernel sums in f32 or f64, got %s", tide_dtype_name(cd));
  if (V <= 0 || C <= 0) return 0;
  if (cd == TIDE_F32) return launch_backward<float>(dweight, dout, ids, n, V, C);
  return launch_backward<double>(dweight, dout, ids, n, V, C);
}

extern "C" const struct tide_embedding_kernels tide_cuda_embedding = {embedding_check_ids, embedding_forward,
                                                                      embedding_backward};
