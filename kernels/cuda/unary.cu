// The unary family on CUDA (kernels/unary.h): the tide_unary_ops and clamp,
// with the CPU kernels' semantics (kernels/cpu/unary.c): integers wrap
// through their unsigned type, NaN passes through relu and sign, round is
// half to even. One kernel per (op, compute type), picked from a table once
// per call, as on the CPU.
#include "common.cuh"
#include "pointwise.cuh"
extern "C" {
#include "unary.h"
#include "dtype.h"
}
#include <math.h>
#include <type_traits>

// per-element operations -----------------------------------------------------------

template <class T> struct un_fp;  // float math by type: the f32 or f64 CUDA functions
template <> struct un_fp<float> {
  static __device__ __forceinline__ float exp_(float a) { return expf(a); }
  static __device__ __forceinline__ float log_(float a) { return logf(a); }
  static __device__ __forceinline__ float sqrt_(float a) { return sqrtf(a); }
  static __device__ __forceinline__ float tanh_(float a) { return tanhf(a); }
  static __device__ __forceinline__ float sin_(float a) { return sinf(a); }
  static __device__ __forceinline__ float cos_(float a) { return cosf(a); }
  static __device__ __forceinline__ float floor_(float a) { return floorf(a); }
  static __device__ __forceinline__ float ceil_(float a) { return ceilf(a); }
  static __device__ __forceinline__ float rint_(float a) { return rintf(a); }
  static __device__ __forceinline__ float log1p_(float a) { return log1pf(a); }
  static __device__ __forceinline__ float expm1_(float a) { return expm1f(a); }
  static __device__ __forceinline__ float fabs_(float a) { return fabsf(a); }
};
template <> struct un_fp<double> {
  static __device__ __forceinline__ double exp_(double a) { return exp(a); }
  static __device__ __forceinline__ double log_(double a) { return log(a); }
  static __device__ __forceinline__ double sqrt_(double a) { return sqrt(a); }
  static __device__ __forceinline__ double tanh_(double a) { return tanh(a); }
  static __device__ __forceinline__ double sin_(double a) { return sin(a); }
  static __device__ __forceinline__ double cos_(double a) { return cos(a); }
  static __device__ __forceinline__ double floor_(double a) { return floor(a); }
  static __device__ __forceinline__ double ceil_(double a) { return ceil(a); }
  static __device__ __forceinline__ double rint_(double a) { return rint(a); }
  static __device__ __forceinline__ double log1p_(double a) { return log1p(a); }
  static __device__ __forceinline__ double expm1_(double a) { return expm1(a); }
  static __device__ __forceinline__ double fabs_(double a) { return fabs(a); }
};

// The unsigned type integer T wraps through.
template <class T> struct un_unsigned;
template <> struct un_unsigned<int32_t> { typedef uint32_t type; };
template <> struct un_unsigned<int64_t> { typedef uint64_t type; };
template <> struct un_unsigned<uint8_t> { typedef uint8_t type; };


// The predicates write bool bytes whatever type they read.
template <int OP, class T> struct un_out { typedef T type; };
template <class T> struct un_out<TIDE_NOT, T> { typedef uint8_t type; };
template <class T> struct un_out<TIDE_ISNAN, T> { typedef uint8_t type; };
template <class T> struct un_out<TIDE_ISINF, T> { typedef uint8_t type; };

// op(a) for a float type T (every op)
template <int OP, class T> __device__ __forceinline__ typename un_out<OP, T>::type un_float(T a) {
  typedef un_fp<T> M;
  if constexpr (OP == TIDE_NEG) return -a;
  else if constexpr (OP == TIDE_ABS) return M::fabs_(a);
  else if constexpr (OP == TIDE_EXP) return M::exp_(a);
  else if constexpr (OP == TIDE_LOG) return M::log_(a);
  else if constexpr (OP == TIDE_SQRT) return M::sqrt_(a);
  else if constexpr (OP == TIDE_RSQRT) return (T)1 / M::sqrt_(a);  // the CPU's 1 / sqrt, not the approximate rsqrt
  else if constexpr (OP == TIDE_TANH) return M::tanh_(a);
  else if constexpr (OP == TIDE_SIGMOID) return (T)1 / ((T)1 + M::exp_(-a));  // exactly 0 and 1 in the tails
  else if constexpr (OP == TIDE_RELU) return (a > 0 || a != a) ? a : (T)0;  // NaN passes through
  else if constexpr (OP == TIDE_GELU) {
    // 0.5 a (1 + tanh u) = a / (1 + e^(-2u)), the CPU's arrangement
    T u = (T)0.7978845608028654 * (a + (T)0.044715 * a * a * a);
    return a / ((T)1 + M::exp_((T)-2 * u));
  } else if constexpr (OP == TIDE_NOT) return a == 0;
  else if constexpr (OP == TIDE_SIN) return M::sin_(a);
  else if constexpr (OP == TIDE_COS) return M::cos_(a);
  else if constexpr (OP == TIDE_FLOOR) return M::floor_(a);
  else if constexpr (OP == TIDE_CEIL) return M::ceil_(a);
  else if constexpr (OP == TIDE_ROUND) return M::rint_(a);  // half to even
  else if constexpr (OP == TIDE_SIGN) return a > 0 ? (T)1 : a < 0 ? (T)-1 : a;  // 0, -0 and NaN return themselves
  else if constexpr (OP == TIDE_LOG1P) return M::log1p_(a);
  else if constexpr (OP == TIDE_EXPM1) return M::expm1_(a);
  else if constexpr (OP == TIDE_SQUARE) return a * a;
  else if constexpr (OP == TIDE_RECIPROCAL) return (T)1 / a;
  else if constexpr (OP == TIDE_ISNAN) return a != a;
  else return M::fabs_(a) == (T)INFINITY;  // TIDE_ISINF
}

// op(a) for an integer type T (the ops integers have; the float-only ones compute in f32)
template <int OP, class T> __device__ __forceinline__ typename un_out<OP, T>::type un_int(T a) {
  typedef typename un_unsigned<T>::type U;
  constexpr bool is_signed = (T)-1 < (T)0;
  if constexpr (OP == TIDE_NEG) return (T)((U)0 - (U)a);
  else if constexpr (OP == TIDE_ABS) {
    if constexpr (is_signed) return a < 0 ? (T)((U)0 - (U)a) : a;  // abs(INT_MIN) wraps to INT_MIN
    else return a;
  } else if constexpr (OP == TIDE_RELU) {
    if constexpr (is_signed) return a > 0 ? a : (T)0;
    else return a;
  } else if constexpr (OP == TIDE_SIGN) {
    if constexpr (is_signed) return (T)((a > 0) - (a < 0));
    else return (T)(a != 0);
  } else if constexpr (OP == TIDE_SQUARE) return (T)((U)a * (U)a);
  else if constexpr (OP == TIDE_NOT) return a == 0;
  else if constexpr (OP == TIDE_ISNAN || OP == TIDE_ISINF) return 0;
  else return a;  // floor, ceil, round: the identity
}

template <int OP, class T> __device__ __forceinline__ typename un_out<OP, T>::type un_apply(T a) {
  if constexpr (std::is_floating_point<T>::value) return un_float<OP, T>(a);
  else return un_int<OP, T>(a);
}

// kernels ------------------------------------------------------------------------------

template <int OP, class T>
__global__ void unary_kernel(char *out, const char *x, pw_geom<2> g, int64_t n) {
  typedef typename un_out<OP, T>::type U;
  TIDE_CUDA_FOR(i, n) {
    int64_t off[2];
    g.offsets(i, off);
    ((U *)out)[off[0]] = un_apply<OP, T>(((const T *)x)[off[1]]);
  }
}

typedef void (*un_launcher)(char *, const char *, const pw_geom<2> &, int64_t);

template <int OP, class T> static void launch_unary(char *out, const char *x, const pw_geom<2> &g, int64_t n) {
  void (*kernel)(char *, const char *, pw_geom<2>, int64_t) = unary_kernel<OP, T>;  // no comma inside LAUNCH
  LAUNCH(kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, out, x, g, n);
}

// compute types in table order
enum { UN_F32 = 0, UN_F64, UN_I32, UN_I64, UN_U8, UN_NUM_CT };
static int un_ct(int32_t cd) {
  switch (cd) {
    case TIDE_F32: return UN_F32;
    case TIDE_F64: return UN_F64;
    case TIDE_I32: return UN_I32;
    case TIDE_I64: return UN_I64;
    case TIDE_U8: case TIDE_BOOL: return UN_U8;
    default: return -1;
  }
}

#define UN_ALL(OP) {launch_unary<OP, float>, launch_unary<OP, double>, launch_unary<OP, int32_t>, \
                    launch_unary<OP, int64_t>, launch_unary<OP, uint8_t>}
#define UN_FLT(OP) {launch_unary<OP, float>, launch_unary<OP, double>, NULL, NULL, NULL}

// indexed by tide_unary_op (the enum's order)
static const un_launcher un_table[TIDE_NUM_UNARY][UN_NUM_CT] = {
  UN_ALL(TIDE_NEG), UN_ALL(TIDE_ABS), UN_FLT(TIDE_EXP), UN_FLT(TIDE_LOG), UN_FLT(TIDE_SQRT),
  UN_FLT(TIDE_RSQRT), UN_FLT(TIDE_TANH), UN_FLT(TIDE_SIGMOID), UN_ALL(TIDE_RELU), UN_FLT(TIDE_GELU),
  UN_ALL(TIDE_NOT), UN_FLT(TIDE_SIN), UN_FLT(TIDE_COS), UN_ALL(TIDE_FLOOR), UN_ALL(TIDE_CEIL),
  UN_ALL(TIDE_ROUND), UN_ALL(TIDE_SIGN), UN_FLT(TIDE_LOG1P), UN_FLT(TIDE_EXPM1), UN_ALL(TIDE_SQUARE),
  UN_FLT(TIDE_RECIPROCAL), UN_ALL(TIDE_ISNAN), UN_ALL(TIDE_ISINF),
};
static_assert(TIDE_NUM_UNARY == 23 && TIDE_ISINF == 22 && TIDE_RECIPROCAL == 20, "un_table follows tide_unary_op");

static int unary(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                 const void *x, const int64_t *x_stride) {
  int ct = un_ct(cd);
  un_launcher fn = op >= 0 && op < TIDE_NUM_UNARY && ct >= 0 ? un_table[op][ct] : NULL;
  if (!fn) return tide_fail("unary kernel: no loop for op %d in %s", op, tide_dtype_name(cd));
  pw_geom<2> g;
  const int64_t *st[2] = {out_stride, x_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  fn((char *)out, (const char *)x, g, n);
  return tide_cuda_after_launch("unary");
}

// clamp ----------------------------------------------------------------------------------

// lo first, so lo > hi gives hi; a NaN element fails both comparisons and stays NaN
template <class T> __global__ void clamp_kernel(T *out, const T *x, pw_geom<2> g, int64_t n, T lo, T hi) {
  TIDE_CUDA_FOR(i, n) {
    int64_t off[2];
    g.offsets(i, off);
    T v = x[off[1]];
    v = v < lo ? lo : v;
    out[off[0]] = v > hi ? hi : v;
  }
}

template <class T> static int launch_clamp(void *out, const void *x, const pw_geom<2> &g, int64_t n, T lo, T hi) {
  TIDE_CUDA_LAUNCH("clamp", clamp_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)out, (const T *)x, g, n,
                   lo, hi);
  return 0;
}

// A bound as an integer of [lo, hi]: bounds outside the range saturate (and clamp nothing).
static int64_t clamp_sat(double v, int64_t lo, int64_t hi) {
  int64_t i = tide_f64_to_i64(v);
  return i < lo ? lo : i > hi ? hi : i;
}

static int clamp(int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride, const void *x,
                 const int64_t *x_stride, double lo, double hi) {
  pw_geom<2> g;
  const int64_t *st[2] = {out_stride, x_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  // the bounds in cd, as the CPU converts them: a NaN bound is no bound
  bool nlo = lo != lo, nhi = hi != hi;
  switch (cd) {
    case TIDE_F32:
      return launch_clamp<float>(out, x, g, n, nlo ? -INFINITY : (float)lo, nhi ? INFINITY : (float)hi);
    case TIDE_F64:
      return launch_clamp<double>(out, x, g, n, nlo ? -INFINITY : lo, nhi ? INFINITY : hi);
    case TIDE_I32:
      return launch_clamp<int32_t>(out, x, g, n, nlo ? INT32_MIN : (int32_t)clamp_sat(lo, INT32_MIN, INT32_MAX),
                                   nhi ? INT32_MAX : (int32_t)clamp_sat(hi, INT32_MIN, INT32_MAX));
    case TIDE_I64:
      return launch_clamp<int64_t>(out, x, g, n, nlo ? INT64_MIN : clamp_sat(lo, INT64_MIN, INT64_MAX),
                                   nhi ? INT64_MAX : clamp_sat(hi, INT64_MIN, INT64_MAX));
    case TIDE_U8: case TIDE_BOOL:
      return launch_clamp<uint8_t>(out, x, g, n, nlo ? 0 : (uint8_t)clamp_sat(lo, 0, UINT8_MAX),
                                   nhi ? UINT8_MAX : (uint8_t)clamp_sat(hi, 0, UINT8_MAX));
    default: return tide_fail("clamp kernel: no loop for %s", tide_dtype_name(cd));
  }
}

extern "C" const struct tide_unary_kernels tide_cuda_unary = {unary, clamp};
