// The adamw family on CUDA (kernels/adamw.h): the fused AdamW step and the
// 2-norm of gradient clipping.
//
// adamw_step replays kernels/cpu/adamw.c's per-element arithmetic operation
// by operation (torch's single-tensor AdamW: see the comment there), with the
// same double scalars rounded once to the dtype, the same fused
// multiply-adds and nothing else fused: every other product and sum is an
// explicit round-to-nearest intrinsic under nvcc, so contraction cannot move
// a result. Division and sqrt are IEEE (nvcc's default -prec-div and
// -prec-sqrt), so results equal the CPU's bit for bit.
//
// norm2 is a deterministic two-pass tree reduction: a fixed number of blocks
// (a function of n alone) each sum the squares of a grid-stride share in
// double, reduce in a fixed tree, then one block adds the partials the same
// way and rounds sqrt to the dtype. The result is the same bits on every run;
// it agrees with the CPU's torch-ordered f32 sum to rounding (1e-6 relative),
// not bit for bit.
#include "common.cuh"
extern "C" {
#include "adamw.h"
#include "dtype.h"
}
#include <math.h>

// Unfused, correctly rounded products and sums (nvcc would otherwise contract a*b + c).
__device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__device__ __forceinline__ double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
__device__ __forceinline__ float fma_t(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_t(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float sqrt_t(float a) { return sqrtf(a); }
__device__ __forceinline__ double sqrt_t(double a) { return sqrt(a); }

// ---- adamw_step -----------------------------------------------------------------------------

// The step's scalars, already rounded to T (see adamw_step).
template <class T> struct adamw_scalars {
  T decay, w, beta2, c2, bc2s, eps, nss;
  int small;
};

// operands of g: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq (element strides); CONTIG: all four
// contiguous, indexed directly (the usual case, spared the strided offsets' divisions)
template <class T, bool CONTIG>
__global__ void adamw_kernel(T *P, const T *G, T *M, T *V, tide_cuda_strided<4> g, int64_t n, adamw_scalars<T> k) {
  TIDE_CUDA_FOR(i, n) {
    T *p = P + (CONTIG ? i : g.offset(0, i)), *m = M + (CONTIG ? i : g.offset(2, i)), *v = V + (CONTIG ? i : g.offset(3, i));
    T gv = G[CONTIG ? i : g.offset(1, i)], mv = *m;
    T pv = mul_rn(*p, k.decay);
    T d = sub_rn(gv, mv);
    mv = k.small ? fma_t(k.w, d, mv) : fma_t(sub_rn(k.w, (T)1), d, gv);
    T vv = mul_rn(*v, k.beta2);
    vv = fma_t(mul_rn(k.c2, gv), gv, vv);
    T den = add_rn(sqrt_t(vv) / k.bc2s, k.eps);
    *p = add_rn(pv, mul_rn(k.nss, mv) / den);
    *m = mv;
    *v = vv;
  }
}

template <class T>
static int launch_adamw(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, const tide_cuda_strided<4> &g,
                        int64_t n, double decay, double w, double beta2, double c2, double bc2s, double eps, double nss) {
  adamw_scalars<T> k;
  k.decay = (T)decay, k.w = (T)w, k.beta2 = (T)beta2, k.c2 = (T)c2, k.bc2s = (T)bc2s, k.eps = (T)eps, k.nss = (T)nss;
  // torch decides the lerp formula on the weight in the tensor's dtype
  k.small = (k.w < 0 ? -k.w : k.w) < (T)0.5;
  bool contig = true;
  for (int op = 0; op < 4; op++) {
    int64_t s = 1;
    for (int d = g.ndim - 1; d >= 0; d--) {
      if (g.shape[d] != 1 && g.stride[op][d] != s) contig = false;
      s *= g.shape[d];
    }
  }
  void (*kernel)(T *, const T *, T *, T *, tide_cuda_strided<4>, int64_t, adamw_scalars<T>) =
      contig ? adamw_kernel<T, true> : adamw_kernel<T, false>;
  TIDE_CUDA_LAUNCH("adamw_step_", kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)param, (const T *)grad,
                   (T *)exp_avg, (T *)exp_avg_sq, g, n, k);
  return 0;
}

static int adamw_step(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, int32_t dtype, int32_t ndim,
                      const int64_t *shape, const int64_t *param_stride, const int64_t *grad_stride,
                      const int64_t *exp_avg_stride, const int64_t *exp_avg_sq_stride, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int64_t step) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("adamw_step_: the CUDA kernel takes f32 or f64, got %s", tide_dtype_name(dtype));
  tide_cuda_strided<4> g;
  const int64_t *st[4] = {param_stride, grad_stride, exp_avg_stride, exp_avg_sq_stride};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  // the Python-side scalars of torch's _single_tensor_adamw, in double (as kernels/cpu/adamw.c)
  double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  double decay = 1.0 - lr * weight_decay, w = 1.0 - beta1, c2 = 1.0 - beta2, bc2s = sqrt(bc2), nss = -(lr / bc1);
  if (dtype == TIDE_F32)
    return launch_adamw<float>(param, grad, exp_avg, exp_avg_sq, g, n, decay, w, beta2, c2, bc2s, eps, nss);
  return launch_adamw<double>(param, grad, exp_avg, exp_avg_sq, g, n, decay, w, beta2, c2, bc2s, eps, nss);
}

// ---- norm2 ----------------------------------------------------------------------------------

enum { NORM_THREADS = 256, NORM_MAX_BLOCKS = 1024 };

// Block-wide sum of each thread's v in a fixed tree; the total is returned to thread 0.
__device__ double block_sum(double v) {
  __shared__ double buf[NORM_THREADS];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = NORM_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + s];
    __syncthreads();
  }
  double r = buf[0];
  __syncthreads();  // buf may be reused by the caller's next call
  return r;
}

// partial[b] = the sum of squares of block b's grid-stride share, in double
template <class T> __global__ void norm2_partial(double *partial, const T *x, int64_t n) {
  double acc = 0;
  TIDE_CUDA_FOR(i, n) {
    double v = (double)x[i];
    acc = fma(v, v, acc);
  }
  double s = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// *out = sqrt of the sum of the nb partials, rounded to T
template <class T> __global__ void norm2_final(T *out, const double *partial, int nb) {
  double acc = 0;
  for (int b = threadIdx.x; b < nb; b += NORM_THREADS) acc = acc + partial[b];
  double s = block_sum(acc);
  if (threadIdx.x == 0) *out = (T)sqrt(s);
}

template <class T> static int launch_norm2(void *out, const void *x, int64_t n) {
  int64_t nb = (n + NORM_THREADS * 4 - 1) / (NORM_THREADS * 4);  // a function of n only: same bits everywhere
  if (nb < 1) nb = 1;
  if (nb > NORM_MAX_BLOCKS) nb = NORM_MAX_BLOCKS;
  double *partial = (double *)tide_cuda_scratch((size_t)nb * sizeof(double));
  if (!partial) return -1;
  int rc = 0;
  LAUNCH(norm2_partial<T>, (unsigned)nb, NORM_THREADS, 0, TIDE_CUDA_STREAM, partial, (const T *)x, n);
  rc = tide_cuda_after_launch("multi_norm");
  if (rc == 0) {
    LAUNCH(norm2_final<T>, 1, NORM_THREADS, 0, TIDE_CUDA_STREAM, (T *)out, (const double *)partial, (int)nb);
    rc = tide_cuda_after_launch("multi_norm");
  }
  // freed in stream order: a later user of the block runs after these kernels
  tide_cuda_scratch_free(partial, (size_t)nb * sizeof(double));
  return rc;
}

static int norm2(void *out, const void *x, int64_t n, int32_t dtype) {
  if (dtype == TIDE_F32) return launch_norm2<float>(out, x, n);
  if (dtype == TIDE_F64) return launch_norm2<double>(out, x, n);
  return tide_fail("multi_norm: the CUDA 2-norm takes f32 or f64, got %s", tide_dtype_name(dtype));
}

extern "C" const struct tide_adamw_kernels tide_cuda_adamw = {adamw_step, norm2};
