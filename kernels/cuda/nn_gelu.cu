// The gelu family on CUDA (kernels/nn_gelu.h): the gradient of the
// tanh-approximated GELU, in the CPU kernel's arrangement
// (kernels/cpu/nn_gelu.c): with u = k (x + c x^3) and t = tanh(u),
//   gelu'(x) = 0.5 (1 + t) + 0.5 x (1 + t)(1 - t) k (1 + 3 c x^2),
// where 1 + t and 1 - t come from one exp, each accurate relative to itself
// (so x = +-inf gives NaN as on the CPU and in PyTorch). bf16 operands are
// read and written as bf16 and computed in f32 (no f32 copies), forward and
// backward.
#include "common.cuh"
#include "pointwise.cuh"
extern "C" {
#include "nn_gelu.h"
#include "dtype.h"
}
#include <math.h>

static __device__ __forceinline__ float gelu_exp(float v) { return expf(v); }
static __device__ __forceinline__ double gelu_exp(double v) { return exp(v); }

// 1 + tanh(u) and 1 - tanh(u): with b = e^(-2|u|) <= 1 the smaller is 2b / (1 + b), the larger 2 minus it
template <class T> __device__ __forceinline__ void gelu_one_pm_tanh(T u, T *plus, T *minus) {
  T au = u < 0 ? -u : u;
  T b = gelu_exp(-2 * au), q = 2 * b / (1 + b);
  *plus = u < 0 ? q : 2 - q;
  *minus = u < 0 ? 2 - q : q;
}

template <class T> __device__ __forceinline__ T gelu_grad(T x) {
  const T k = (T)0.7978845608028654, c = (T)0.044715;
  T x2 = x * x, p, m;
  gelu_one_pm_tanh<T>(k * (x + c * x2 * x), &p, &m);
  return (T)0.5 * p + (T)0.5 * x * (p * m) * k * ((T)1 + (T)3 * c * x2);
}

// bf16 is stored as uint16_t and computed in f32; f32 and f64 in their own type
template <class T> struct GeluMath { typedef T type; };
template <> struct GeluMath<uint16_t> { typedef float type; };
static __device__ __forceinline__ float gelu_load(float v) { return v; }
static __device__ __forceinline__ double gelu_load(double v) { return v; }
static __device__ __forceinline__ float gelu_load(uint16_t v) { return tide_bf16_to_f32(v); }
static __device__ __forceinline__ float gelu_cast(float v, float *) { return v; }
static __device__ __forceinline__ double gelu_cast(double v, double *) { return v; }
static __device__ __forceinline__ uint16_t gelu_cast(float v, uint16_t *) { return tide_f32_to_bf16(v); }

template <class T> __global__ void gelu_backward_kernel(T *dx, const T *dout, const T *x, pw_geom<3> g, int64_t n) {
  typedef typename GeluMath<T>::type M;
  TIDE_CUDA_FOR(i, n) {
    int64_t off[3];
    g.offsets(i, off);
    M r = gelu_load(dout[off[1]]) * gelu_grad<M>(gelu_load(x[off[2]]));
    dx[off[0]] = gelu_cast(r, (T *)nullptr);
  }
}

// the forward in the unary kernel's arrangement: 0.5 a (1 + tanh u) = a / (1 + e^(-2u))
__global__ void gelu_forward_bf16_kernel(uint16_t *y, const uint16_t *x, pw_geom<2> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) {
    int64_t off[2];
    g.offsets(i, off);
    float a = tide_bf16_to_f32(x[off[1]]);
    float u = 0.7978845608028654f * (a + 0.044715f * a * a * a);
    y[off[0]] = tide_f32_to_bf16(a / (1.0f + expf(-2.0f * u)));
  }
}

static int gelu_backward(int32_t cd, int32_t ndim, const int64_t *shape, void *dx, const int64_t *dx_stride,
                         const void *dout, const int64_t *dout_stride, const void *x, const int64_t *x_stride) {
  if (cd != TIDE_F32 && cd != TIDE_F64 && cd != TIDE_BF16)
    return tide_fail("gelu_backward kernel: no loop for %s", tide_dtype_name(cd));
  pw_geom<3> g;
  const int64_t *st[3] = {dx_stride, dout_stride, x_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  if (cd == TIDE_F32)
    TIDE_CUDA_LAUNCH("gelu_backward", gelu_backward_kernel<float>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0,
                     (float *)dx, (const float *)dout, (const float *)x, g, n);
  else if (cd == TIDE_F64)
    TIDE_CUDA_LAUNCH("gelu_backward", gelu_backward_kernel<double>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0,
                     (double *)dx, (const double *)dout, (const double *)x, g, n);
  else
    TIDE_CUDA_LAUNCH("gelu_backward", gelu_backward_kernel<uint16_t>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0,
                     (uint16_t *)dx, (const uint16_t *)dout, (const uint16_t *)x, g, n);
  return 0;
}

static int gelu_forward_bf16(int32_t ndim, const int64_t *shape, void *y, const int64_t *y_stride, const void *x,
                             const int64_t *x_stride) {
  pw_geom<2> g;
  const int64_t *st[2] = {y_stride, x_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  TIDE_CUDA_LAUNCH("gelu", gelu_forward_bf16_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (uint16_t *)y,
                   (const uint16_t *)x, g, n);
  return 0;
}

extern "C" const struct tide_gelu_kernels tide_cuda_gelu = {gelu_backward, gelu_forward_bf16, 1};
