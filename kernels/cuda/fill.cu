// The fill family on CUDA (kernels/fill.h): constants into strided views and
// arithmetic ranges, with the CPU backend's conversions (runtime/dtype.h).
#include "common.cuh"
extern "C" {
#include "fill.h"
#include "dtype.h"
}

// value's bytes, converted on the host once, moved whole per element
template <class T> __global__ void fill_kernel(char *dst, tide_cuda_strided<1> g, int64_t n, T v) {
  TIDE_CUDA_FOR(i, n) *(T *)(dst + g.offset(0, i) * (int64_t)sizeof(T)) = v;
}

template <class T> static int launch_fill(char *dst, const tide_cuda_strided<1> &g, int64_t n, const char *bytes) {
  T v;
  memcpy(&v, bytes, sizeof v);
  TIDE_CUDA_LAUNCH("fill", fill_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, dst, g, n, v);
  return 0;
}

static int fill(void *dst, int32_t dtype, const int64_t *stride, int32_t ndim, const int64_t *shape, double value) {
  tide_cuda_strided<1> g;
  const int64_t *st[1] = {stride};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  char bytes[8] = {0};
  tide_store_f64(bytes, dtype, value);
  switch (tide_dtype_size(dtype)) {
    case 1: return launch_fill<uint8_t>((char *)dst, g, n, bytes);
    case 2: return launch_fill<uint16_t>((char *)dst, g, n, bytes);
    case 4: return launch_fill<uint32_t>((char *)dst, g, n, bytes);
    default: return launch_fill<uint64_t>((char *)dst, g, n, bytes);
  }
}

__global__ void arange_i64(int64_t *dst, int64_t n, uint64_t start, uint64_t step) {
  TIDE_CUDA_FOR(i, n) dst[i] = (int64_t)(start + (uint64_t)i * step);
}

// start + i * step in double, as the CPU computes it, then stored in dtype
__global__ void arange_f64(char *dst, int32_t dtype, int32_t es, int64_t n, double start, double step) {
  TIDE_CUDA_FOR(i, n) {
#if defined(__CUDA_ARCH__)
    double v = __dadd_rn(start, __dmul_rn((double)i, step));  // no fused multiply-add: the CPU's rounding
#else
    double v = start + (double)i * step;
#endif
    tide_store_f64(dst + i * es, dtype, v);
  }
}

static int arange(void *dst, int32_t dtype, int64_t n, double start, double step) {
  if (n <= 0) return 0;
  if (dtype == TIDE_I64) {
    TIDE_CUDA_LAUNCH("arange", arange_i64, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (int64_t *)dst, n,
                     (uint64_t)tide_f64_to_i64(start), (uint64_t)tide_f64_to_i64(step));
  } else {
    TIDE_CUDA_LAUNCH("arange", arange_f64, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, dtype,
                     (int32_t)tide_dtype_size(dtype), n, start, step);
  }
  return 0;
}

extern "C" const struct tide_fill_kernels tide_cuda_fill = {fill, arange};
