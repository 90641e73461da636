// What the elementwise kernel files (unary.cu, binary.cu, nn_gelu.cu) share:
// a shape with the strides of K operands over it, simplified on the host so
// that the common layouts (contiguous, a scalar or a broadcast row at stride
// 0, a transposed view) cost a kernel few or no integer divisions per element.
#ifndef TIDE_CUDA_POINTWISE_CUH
#define TIDE_CUDA_POINTWISE_CUH
#include "common.cuh"

// Dims after pw_geom_init: size-1 dims dropped and neighbours that every
// operand walks as one merged, so a contiguous (or stride-0) operand set has
// ndim 1 and offsets are i * stride with no division at all.
template <int K> struct pw_geom {
  int32_t ndim;
  int32_t small;  // the element count fits 32 bits: divide in 32 bits (several times cheaper on a GPU)
  int64_t shape[TIDE_MAX_DIMS];
  int64_t stride[K][TIDE_MAX_DIMS];
  // off[k] = operand k's element offset of row-major linear index i
  __device__ __forceinline__ void offsets(int64_t i, int64_t off[K]) const {
    for (int k = 0; k < K; k++) off[k] = 0;
    for (int d = ndim - 1; d > 0; d--) {
      int64_t q = small ? (int64_t)((uint32_t)i / (uint32_t)shape[d]) : i / shape[d];
      int64_t r = i - q * shape[d];
      for (int k = 0; k < K; k++) off[k] += r * stride[k][d];
      i = q;
    }
    for (int k = 0; k < K; k++) off[k] += i * stride[k][0];  // i < shape[0]: no division needed
  }
};

// Fills g from ndim, shape and K stride arrays (in elements; a NULL array is contiguous) and
// returns the element count (0: nothing to launch).
template <int K>
static inline int64_t pw_geom_init(pw_geom<K> *g, int32_t ndim, const int64_t *shape,
                                   const int64_t *const *strides) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  // full strides first (a NULL array: row-major contiguous)
  int64_t st[K][TIDE_MAX_DIMS];
  for (int k = 0; k < K; k++) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      st[k][d] = strides[k] ? strides[k][d] : s;
      s *= shape[d];
    }
  }
  // walk from the innermost dim outwards, dropping size-1 dims and merging a dim into the one
  // inside it when every operand steps across both as across one
  int32_t m = 0;  // dims kept, innermost first (reversed below)
  int64_t sh[TIDE_MAX_DIMS], ss[K][TIDE_MAX_DIMS];
  for (int d = ndim - 1; d >= 0; d--) {
    if (shape[d] == 1) continue;
    int merge = m > 0;
    for (int k = 0; k < K && merge; k++) merge = st[k][d] == ss[k][m - 1] * sh[m - 1];
    if (merge) {
      sh[m - 1] *= shape[d];
    } else {
      sh[m] = shape[d];
      for (int k = 0; k < K; k++) ss[k][m] = st[k][d];
      m++;
    }
  }
  if (m == 0) {  // a single element (or ndim 0)
    sh[0] = 1;
    for (int k = 0; k < K; k++) ss[k][0] = 0;
    m = 1;
  }
  g->ndim = m;
  g->small = n <= (int64_t)UINT32_MAX;
  for (int d = 0; d < m; d++) {
    g->shape[d] = sh[m - 1 - d];
    for (int k = 0; k < K; k++) g->stride[k][d] = ss[k][m - 1 - d];
  }
  return n;
}

#endif
