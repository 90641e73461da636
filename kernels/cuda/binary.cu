// The binary family on CUDA (kernels/binary.h): the tide_binary_ops, the
// integer operand check and where, with the CPU kernels' semantics
// (kernels/cpu/binary.c): integer arithmetic wraps through the unsigned type,
// a NaN on either side wins maximum/minimum, comparisons and logical ops
// write bool bytes. One kernel per (op, compute type), picked from a table
// once per call.
#include "common.cuh"
#include "pointwise.cuh"
extern "C" {
#include "binary.h"
#include "dtype.h"
}
#include <math.h>
#include <type_traits>

// per-element operations -----------------------------------------------------------

template <class T> struct bin_unsigned;
template <> struct bin_unsigned<int32_t> { typedef uint32_t type; };
template <> struct bin_unsigned<int64_t> { typedef uint64_t type; };
template <> struct bin_unsigned<uint8_t> { typedef uint8_t type; };


static __device__ __forceinline__ float bin_pow(float a, float b) { return powf(a, b); }
static __device__ __forceinline__ double bin_pow(double a, double b) { return pow(a, b); }
static __device__ __forceinline__ float bin_fmod(float a, float b) { return fmodf(a, b); }
static __device__ __forceinline__ double bin_fmod(double a, double b) { return fmod(a, b); }

// Comparisons and logical ops: their result is bool whatever the inputs.
template <int OP, class T> struct bin_out { typedef typename std::conditional<(OP >= TIDE_EQ && OP <= TIDE_XOR), uint8_t, T>::type type; };

template <int OP, class T> __device__ __forceinline__ typename bin_out<OP, T>::type bin_apply(T a, T b) {
  if constexpr (OP == TIDE_EQ) return a == b;
  else if constexpr (OP == TIDE_NE) return a != b;
  else if constexpr (OP == TIDE_LT) return a < b;
  else if constexpr (OP == TIDE_LE) return a <= b;
  else if constexpr (OP == TIDE_GT) return a > b;
  else if constexpr (OP == TIDE_GE) return a >= b;
  else if constexpr (OP == TIDE_AND) return (uint8_t)((a != 0) & (b != 0));
  else if constexpr (OP == TIDE_OR) return (uint8_t)((a != 0) | (b != 0));
  else if constexpr (OP == TIDE_XOR) return (uint8_t)((a != 0) ^ (b != 0));
  else if constexpr (std::is_floating_point<T>::value) {
    if constexpr (OP == TIDE_ADD) return a + b;
    else if constexpr (OP == TIDE_SUB) return a - b;
    else if constexpr (OP == TIDE_MUL) return a * b;
    else if constexpr (OP == TIDE_DIV) return a / b;
    else if constexpr (OP == TIDE_POW) return bin_pow(a, b);
    else if constexpr (OP == TIDE_MAXIMUM) return (a > b || a != a) ? a : b;  // a NaN on either side wins
    else if constexpr (OP == TIDE_MINIMUM) return (a < b || a != a) ? a : b;
    else return bin_fmod(a, b);  // TIDE_FMOD
  } else {
    // through the unsigned type so that overflow wraps (two's complement)
    typedef typename bin_unsigned<T>::type U;
    if constexpr (OP == TIDE_ADD) return (T)((U)a + (U)b);
    else if constexpr (OP == TIDE_SUB) return (T)((U)a - (U)b);
    else if constexpr (OP == TIDE_MUL) return (T)((U)a * (U)b);
    else if constexpr (OP == TIDE_POW) {
      // square-and-multiply; negative exponents were ruled out before the launch
      U r = 1, x = (U)a;
      for (U e = (U)b; e; e >>= 1) {
        if (e & 1) r = (U)(r * x);
        x = (U)(x * x);
      }
      return (T)r;
    } else if constexpr (OP == TIDE_MAXIMUM) return a > b ? a : b;
    else if constexpr (OP == TIDE_MINIMUM) return a < b ? a : b;
    else {
      // TIDE_FMOD: % truncates like fmod; MIN % -1 overflows, so -1 is answered directly (zero
      // divisors were ruled out before the launch)
      if constexpr ((T)-1 < (T)0) return b == (T)-1 ? (T)0 : (T)(a % b);
      else return (T)(a % b);
    }
  }
}

// kernels ------------------------------------------------------------------------------

template <int OP, class T>
__global__ void binary_kernel(char *out, const char *a, const char *b, pw_geom<3> g, int64_t n) {
  typedef typename bin_out<OP, T>::type U;
  TIDE_CUDA_FOR(i, n) {
    int64_t off[3];
    g.offsets(i, off);
    ((U *)out)[off[0]] = bin_apply<OP, T>(((const T *)a)[off[1]], ((const T *)b)[off[2]]);
  }
}

typedef void (*bin_launcher)(char *, const char *, const char *, const pw_geom<3> &, int64_t);

template <int OP, class T>
static void launch_binary(char *out, const char *a, const char *b, const pw_geom<3> &g, int64_t n) {
  void (*kernel)(char *, const char *, const char *, pw_geom<3>, int64_t) = binary_kernel<OP, T>;
  LAUNCH(kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, out, a, b, g, n);
}

enum { BIN_F32 = 0, BIN_F64, BIN_I32, BIN_I64, BIN_U8, BIN_NUM_CT };
static int bin_ct(int32_t cd) {
  switch (cd) {
    case TIDE_F32: return BIN_F32;
    case TIDE_F64: return BIN_F64;
    case TIDE_I32: return BIN_I32;
    case TIDE_I64: return BIN_I64;
    case TIDE_U8: case TIDE_BOOL: return BIN_U8;
    default: return -1;
  }
}

#define BIN_ALL(OP) {launch_binary<OP, float>, launch_binary<OP, double>, launch_binary<OP, int32_t>, \
                     launch_binary<OP, int64_t>, launch_binary<OP, uint8_t>}

// indexed by tide_binary_op (the enum's order); integer true division computes in f32 and never
// reaches a kernel
static const bin_launcher bin_table[TIDE_NUM_BINARY][BIN_NUM_CT] = {
  BIN_ALL(TIDE_ADD), BIN_ALL(TIDE_SUB), BIN_ALL(TIDE_MUL),
  {launch_binary<TIDE_DIV, float>, launch_binary<TIDE_DIV, double>, NULL, NULL, NULL},
  BIN_ALL(TIDE_POW), BIN_ALL(TIDE_MAXIMUM), BIN_ALL(TIDE_MINIMUM), BIN_ALL(TIDE_EQ), BIN_ALL(TIDE_NE),
  BIN_ALL(TIDE_LT), BIN_ALL(TIDE_LE), BIN_ALL(TIDE_GT), BIN_ALL(TIDE_GE), BIN_ALL(TIDE_AND), BIN_ALL(TIDE_OR),
  BIN_ALL(TIDE_XOR), BIN_ALL(TIDE_FMOD),
};
static_assert(TIDE_NUM_BINARY == 17 && TIDE_DIV == 3 && TIDE_FMOD == 16, "bin_table follows tide_binary_op");

static int binary(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                  const void *a, const int64_t *a_stride, const void *b, const int64_t *b_stride) {
  int ct = bin_ct(cd);
  bin_launcher fn = op >= 0 && op < TIDE_NUM_BINARY && ct >= 0 ? bin_table[op][ct] : NULL;
  if (!fn) return tide_fail("binary kernel: no loop for op %d in %s", op, tide_dtype_name(cd));
  pw_geom<3> g;
  const int64_t *st[3] = {out_stride, a_stride, b_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  fn((char *)out, (const char *)a, (const char *)b, g, n);
  return tide_cuda_after_launch("binary");
}

// integer edge cases ---------------------------------------------------------------------

// Sets *found to 1 when an element is negative (negative) or zero; threads that find one all
// store the same 1, so the result does not depend on their order.
template <class T>
__global__ void scan_kernel(const T *x, pw_geom<1> g, int64_t n, int32_t negative, int32_t *found) {
  bool bad = false;
  TIDE_CUDA_FOR(i, n) {
    int64_t off[1];
    g.offsets(i, off);
    T v = x[off[0]];
    if constexpr (std::is_signed<T>::value) bad |= negative ? v < (T)0 : v == (T)0;
    else bad |= !negative && v == (T)0;  // u8 has no negative values
  }
  if (bad) *found = 1;
}

__global__ void scan_clear(int32_t *found) { *found = 0; }

template <class T>
static int launch_scan(const void *x, const pw_geom<1> &g, int64_t n, int32_t negative, int32_t *found_dev) {
  TIDE_CUDA_LAUNCH("find_zero_or_negative", scan_clear, 1, 1, 0, found_dev);
  TIDE_CUDA_LAUNCH("find_zero_or_negative", scan_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0,
                   (const T *)x, g, n, negative, found_dev);
  return 0;
}

// Integer fmod by zero and negative integer powers have no integer answer: the op layer asks
// before anything is written. The answer is a host value, so this waits for the scan.
static int find_zero_or_negative(int32_t cd, int32_t negative, int32_t ndim, const int64_t *shape, const void *x,
                                 const int64_t *x_stride, int32_t *found) {
  pw_geom<1> g;
  const int64_t *st[1] = {x_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  *found = 0;
  if (n == 0) return 0;
  if (cd != TIDE_I32 && cd != TIDE_I64 && cd != TIDE_U8 && cd != TIDE_BOOL)
    return tide_fail("find_zero_or_negative kernel: no loop for %s", tide_dtype_name(cd));
  if ((cd == TIDE_U8 || cd == TIDE_BOOL) && negative) return 0;  // u8 has no negative values
  int32_t *dev = (int32_t *)tide_cuda_scratch(sizeof(int32_t));
  if (!dev) return -1;
  int rc;
  switch (cd) {
    case TIDE_I32: rc = launch_scan<int32_t>(x, g, n, negative, dev); break;
    case TIDE_I64: rc = launch_scan<int64_t>(x, g, n, negative, dev); break;
    default: rc = launch_scan<uint8_t>(x, g, n, negative, dev); break;
  }
  int32_t h = 0;
  if (rc == 0) rc = tide_cuda_to_host(&h, dev, sizeof h, "find_zero_or_negative");
  tide_cuda_scratch_free(dev, sizeof(int32_t));
  if (rc == 0) *found = h != 0;
  return rc;
}

// where ----------------------------------------------------------------------------------

// Selection moves elements whole, so one kernel per element size serves every dtype.
template <class T>
__global__ void where_kernel(T *out, const uint8_t *cond, const T *a, const T *b, pw_geom<4> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) {
    int64_t off[4];
    g.offsets(i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <class T>
static int launch_where(void *out, const void *cond, const void *a, const void *b, const pw_geom<4> &g, int64_t n) {
  TIDE_CUDA_LAUNCH("where", where_kernel<T>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)out,
                   (const uint8_t *)cond, (const T *)a, (const T *)b, g, n);
  return 0;
}

static int where(int32_t dtype, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                 const void *cond, const int64_t *cond_stride, const void *a, const int64_t *a_stride, const void *b,
                 const int64_t *b_stride) {
  pw_geom<4> g;
  const int64_t *st[4] = {out_stride, cond_stride, a_stride, b_stride};
  int64_t n = pw_geom_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  switch (tide_dtype_size(dtype)) {
    case 1: return launch_where<uint8_t>(out, cond, a, b, g, n);
    case 2: return launch_where<uint16_t>(out, cond, a, b, g, n);
    case 4: return launch_where<uint32_t>(out, cond, a, b, g, n);
    default: return launch_where<uint64_t>(out, cond, a, b, g, n);
  }
}

extern "C" const struct tide_binary_kernels tide_cuda_binary = {binary, find_zero_or_negative, where};
