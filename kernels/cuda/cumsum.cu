// The cumsum family on CUDA (kernels/cumsum.h): inclusive prefix sums of a
// contiguous (outer, len, inner) input along len. As on the CPU
// (kernels/cpu/cumsum.c), floats accumulate in double and each prefix is
// rounded once into the input's dtype; integers and bool give i64 with
// wrapping 64-bit adds.
//
// Two shapes, both deterministic (a fixed order that depends on the shape only):
// - columns (inner > 1 or short rows): a thread per (outer, inner) column scans
//   it in order, the CPU's exact sequence of adds; neighbouring threads read
//   neighbouring columns, so rows stream;
// - long rows (inner == 1): a block per row; each chunk of THREADS * ITEMS
//   elements is split into per-thread runs, the run totals are scanned through
//   shared memory in a fixed tree, and each thread then rescans its run from
//   its offset. Integer results are exact; float prefixes differ from the
//   CPU's sequential ones only by double rounding.
#include "common.cuh"
extern "C" {
#include "cumsum.h"
#include "dtype.h"
}

namespace {

enum { THREADS = 256, ITEMS = 8, LONG_ROW = 1024 };

// The accumulator of a dtype: double for floats, wrapping uint64 for integers and bool.
template <bool F> struct Acc;
template <> struct Acc<true> {
  typedef double T;
  static __device__ __forceinline__ double load(const char *p, int32_t dt) { return tide_load_f64(p, dt); }
  static __device__ __forceinline__ void store(char *p, int32_t odt, double v) { tide_store_f64(p, odt, v); }
};
template <> struct Acc<false> {
  typedef uint64_t T;
  static __device__ __forceinline__ uint64_t load(const char *p, int32_t dt) {
    int64_t v = tide_load_i64(p, dt);
    return (uint64_t)(dt == TIDE_BOOL ? (int64_t)(v != 0) : v);
  }
  static __device__ __forceinline__ void store(char *p, int32_t, uint64_t v) { *(int64_t *)p = (int64_t)v; }
};

template <bool F>
__global__ void scan_columns(char *out, const char *in, int32_t dt, int32_t odt, int32_t es, int32_t oes,
                             int64_t outer, int64_t R, int64_t inner) {
  typedef typename Acc<F>::T A;
  TIDE_CUDA_FOR(c, outer * inner) {
    int64_t o = c / inner, col = c - o * inner;
    int64_t off = o * R * inner + col;
    A s = 0;
    for (int64_t i = 0; i < R; i++, off += inner) {
      s += Acc<F>::load(in + off * es, dt);
      Acc<F>::store(out + off * oes, odt, s);
    }
  }
}

template <bool F>
__global__ void scan_rows(char *out, const char *in, int32_t dt, int32_t odt, int32_t es, int32_t oes, int64_t rows,
                          int64_t R) {
  typedef typename Acc<F>::T A;
  __shared__ A tot[THREADS];
  const int t = threadIdx.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const char *x = in + r * R * es;
    char *y = out + r * R * oes;
    A carry = 0;  // the sum of the chunks before this one; the same in every thread
    for (int64_t c0 = 0; c0 < R; c0 += (int64_t)THREADS * ITEMS) {
      int64_t b = c0 + (int64_t)t * ITEMS, e = b + ITEMS < R ? b + ITEMS : R;
      A s = 0;
      for (int64_t i = b; i < e; i++) s += Acc<F>::load(x + i * es, dt);
      tot[t] = s;
      __syncthreads();
      // inclusive scan of the run totals (Hillis-Steele: fixed adds for every thread)
      for (int d = 1; d < THREADS; d <<= 1) {
        A v = t >= d ? tot[t - d] : (A)0;
        __syncthreads();
        tot[t] += v;
        __syncthreads();
      }
      A run = carry + (t > 0 ? tot[t - 1] : (A)0);
      for (int64_t i = b; i < e; i++) {
        run += Acc<F>::load(x + i * es, dt);
        Acc<F>::store(y + i * oes, odt, run);
      }
      carry += tot[THREADS - 1];
      __syncthreads();  // tot is rewritten by the next chunk
    }
  }
}

int cumsum(void *out, const void *inp, int32_t dtype, int64_t outer, int64_t R, int64_t inner) {
  if (outer <= 0 || R <= 0 || inner <= 0) return 0;
  int32_t odt = tide_is_float(dtype) ? dtype : TIDE_I64;
  int32_t es = (int32_t)tide_dtype_size(dtype), oes = (int32_t)tide_dtype_size(odt);
  char *y = (char *)out;
  const char *x = (const char *)inp;
  bool f = tide_is_float(dtype);
  if (inner == 1 && R >= LONG_ROW) {
    unsigned grid = (unsigned)(outer < 65535 * 8 ? outer : 65535 * 8);
    if (f) TIDE_CUDA_LAUNCH("cumsum", scan_rows<true>, grid, THREADS, 0, y, x, dtype, odt, es, oes, outer, R);
    else TIDE_CUDA_LAUNCH("cumsum", scan_rows<false>, grid, THREADS, 0, y, x, dtype, odt, es, oes, outer, R);
    return 0;
  }
  unsigned grid = tide_cuda_blocks(outer * inner);
  if (f) TIDE_CUDA_LAUNCH("cumsum", scan_columns<true>, grid, THREADS, 0, y, x, dtype, odt, es, oes, outer, R, inner);
  else TIDE_CUDA_LAUNCH("cumsum", scan_columns<false>, grid, THREADS, 0, y, x, dtype, odt, es, oes, outer, R, inner);
  return 0;
}

}  // namespace

extern "C" const struct tide_cumsum_kernels tide_cuda_cumsum = {cumsum};
