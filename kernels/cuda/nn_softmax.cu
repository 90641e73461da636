// The softmax family on CUDA (kernels/nn_softmax.h): softmax and log_softmax
// along one dimension of a contiguous [outer, L, inner] block, forward and
// backward, with the CPU backend's arithmetic (kernels/cpu/nn_softmax.c):
// the max in the compute type T, exps in T summed in double, softmax scaled
// by 1/sum in T (rows) or in double (columns), log_softmax and the backward
// formed in double and rounded once.
// - inner == 1 (the last dimension): one block per row, block reductions in
//   a fixed tree (nn_softmax_rows.cuh), so the same bits on every run;
// - inner > 1: one thread per column (o, j), which walks its L entries in
//   order: adjacent threads read adjacent memory, and the sums are sequential.
#include "nn_softmax_rows.cuh"
extern "C" {
#include "nn_softmax.h"
#include "dtype.h"
}

// Threads per row block: enough warps to cover a short row, at most NN_ROW_THREADS.
static int row_threads(int64_t L) {
  int64_t t = (L + 31) / 32 * 32;
  return t < 32 ? 32 : t > NN_ROW_THREADS ? NN_ROW_THREADS : (int)t;
}

template <class T> __global__ void softmax_rows(T *y, const T *x, int64_t rows, int64_t L, int lg) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * L;
    T *yr = y + r * L;
    T m = -INFINITY;
    for (int64_t i = threadIdx.x; i < L; i += blockDim.x) m = nn_max(m, xr[i]);
    m = nn_block_max(m);
    double s = 0;
    if (lg) {
      for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += (double)nn_exp(xr[i] - m);
    } else {
      for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
        T e = nn_exp(xr[i] - m);
        yr[i] = e;  // read back below by this same thread
        s += (double)e;
      }
    }
    s = nn_block_sum(s);
    if (lg) {
      const double lse = (double)m + log(s);
      for (int64_t i = threadIdx.x; i < L; i += blockDim.x) yr[i] = (T)((double)xr[i] - lse);
    } else {
      const T inv = (T)(1.0 / s);
      for (int64_t i = threadIdx.x; i < L; i += blockDim.x) yr[i] *= inv;
    }
  }
}

template <class T> __global__ void softmax_cols(T *y, const T *x, int64_t outer, int64_t L, int64_t inner, int lg) {
  TIDE_CUDA_FOR(u, outer * inner) {
    int64_t o = u / inner, j = u - o * inner;
    const T *xc = x + o * L * inner + j;
    T *yc = y + o * L * inner + j;
    T m = -INFINITY;
    for (int64_t l = 0; l < L; l++) m = nn_max(m, xc[l * inner]);
    double s = 0;
    for (int64_t l = 0; l < L; l++) {
      T e = nn_exp(xc[l * inner] - m);
      if (!lg) yc[l * inner] = e;
      s += (double)e;
    }
    const double k = lg ? (double)m + log(s) : 1.0 / s;
    for (int64_t l = 0; l < L; l++)
      yc[l * inner] = lg ? (T)((double)xc[l * inner] - k) : (T)((double)yc[l * inner] * k);
  }
}

// dx = y * (dy - sum(dy * y)), or dy - exp(y) * sum(dy) for log_softmax, in double
template <class T> __device__ __forceinline__ T softmax_grad(T dy, T y, double s, int lg) {
  return lg ? (T)((double)dy - (double)nn_exp(y) * s) : (T)((double)y * ((double)dy - s));
}

template <class T> __global__ void softmax_bwd_rows(T *dx, const T *dy, const T *y, int64_t rows, int64_t L, int lg) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *dr = dy + r * L, *yr = y + r * L;
    T *xr = dx + r * L;
    double s = 0;
    for (int64_t i = threadIdx.x; i < L; i += blockDim.x) s += lg ? (double)dr[i] : (double)dr[i] * (double)yr[i];
    s = nn_block_sum(s);
    for (int64_t i = threadIdx.x; i < L; i += blockDim.x) xr[i] = softmax_grad(dr[i], yr[i], s, lg);
  }
}

template <class T>
__global__ void softmax_bwd_cols(T *dx, const T *dy, const T *y, int64_t outer, int64_t L, int64_t inner, int lg) {
  TIDE_CUDA_FOR(u, outer * inner) {
    int64_t o = u / inner, j = u - o * inner, base = o * L * inner + j;
    double s = 0;
    for (int64_t l = 0; l < L; l++) {
      int64_t k = base + l * inner;
      s += lg ? (double)dy[k] : (double)dy[k] * (double)y[k];
    }
    for (int64_t l = 0; l < L; l++) {
      int64_t k = base + l * inner;
      dx[k] = softmax_grad(dy[k], y[k], s, lg);
    }
  }
}

template <class T> static int run_forward(T *y, const T *x, int64_t outer, int64_t L, int64_t inner, int lg) {
  const char *op = lg ? "log_softmax" : "softmax";
  if (inner == 1)
    TIDE_CUDA_LAUNCH(op, softmax_rows<T>, nn_row_blocks(outer), row_threads(L), 0, y, x, outer, L, lg);
  else
    TIDE_CUDA_LAUNCH(op, softmax_cols<T>, tide_cuda_blocks(outer * inner), TIDE_CUDA_THREADS, 0, y, x, outer, L,
                     inner, lg);
  return 0;
}

template <class T>
static int run_backward(T *dx, const T *dy, const T *y, int64_t outer, int64_t L, int64_t inner, int lg) {
  const char *op = lg ? "log_softmax_backward" : "softmax_backward";
  if (inner == 1)
    TIDE_CUDA_LAUNCH(op, softmax_bwd_rows<T>, nn_row_blocks(outer), row_threads(L), 0, dx, dy, y, outer, L, lg);
  else
    TIDE_CUDA_LAUNCH(op, softmax_bwd_cols<T>, tide_cuda_blocks(outer * inner), TIDE_CUDA_THREADS, 0, dx, dy, y,
                     outer, L, inner, lg);
  return 0;
}

static int softmax_forward(void *out, const void *inp, int64_t outer, int64_t L, int64_t inner, int log,
                           int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("%s: no kernel for dtype %s", log ? "log_softmax" : "softmax", tide_dtype_name(dtype));
  if (outer * L * inner == 0) return 0;
  if (dtype == TIDE_F32) return run_forward((float *)out, (const float *)inp, outer, L, inner, log != 0);
  return run_forward((double *)out, (const double *)inp, outer, L, inner, log != 0);
}

static int softmax_backward(void *dinp, const void *dout, const void *out, int64_t outer, int64_t L, int64_t inner,
                            int log, int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("%s: no kernel for dtype %s", log ? "log_softmax_backward" : "softmax_backward",
                     tide_dtype_name(dtype));
  if (outer * L * inner == 0) return 0;
  if (dtype == TIDE_F32)
    return run_backward((float *)dinp, (const float *)dout, (const float *)out, outer, L, inner, log != 0);
  return run_backward((double *)dinp, (const double *)dout, (const double *)out, outer, L, inner, log != 0);
}

extern "C" const struct tide_softmax_kernels tide_cuda_softmax = {softmax_forward, softmax_backward};
