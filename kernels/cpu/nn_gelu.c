/* The CPU's gelu kernel (kernels/nn_gelu.h): the gradient of the
   tanh-approximated GELU (the forward is TIDE_GELU in unary.c). With
   u = k (x + 0.044715 x^3), k = sqrt(2/pi), t = tanh(u),
     gelu(x)  = 0.5 x (1 + t)
     gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2),
   the same arrangement as PyTorch's GeluBackward (so x = +-inf gives NaN as
   there). t enters only through 1 + t and 1 - t^2 = (1 + t)(1 - t), which
   are computed directly from one exp (vmath.h's vectorised tide_expf for
   f32, libm for f64), accurate to a few ulp even where t is within 1e-7 of
   -1 or 1; PyTorch forms them from tanh(u) and loses that accuracy. */
#include "nn_gelu.h"
#include "dtype.h"
#include "error.h"
#include "pw_loops.h"
#include "vmath.h"

#define GELU_K 0.7978845608028654   /* sqrt(2/pi) */
#define GELU_C 0.044715

/* 1 + tanh(u) and 1 - tanh(u), each accurate relative to itself: with
   b = e^(-2|u|) <= 1 the smaller of the two is 2b / (1 + b) and the larger
   2 minus that. (1 + t, formed from a rounded t, would lose every digit in
   the left tail, where it is about 4e^(2u).) */
#define ONE_PM_TANH(T, EXP)                                                                       \
  static inline void one_pm_tanh_##T(T u, T *plus, T *minus) {                                    \
    T au = u < 0 ? -u : u;                                                                        \
    T b = EXP(-2 * au), q = 2 * b / (1 + b);                                                      \
    *plus = u < 0 ? q : 2 - q;                                                                    \
    *minus = u < 0 ? 2 - q : q;                                                                   \
  }
static inline double exp_f64(double v) { return exp(v); }
ONE_PM_TANH(float, tide_expf)
ONE_PM_TANH(double, exp_f64)

#define GELU_BWD_LOOP(T, SUF)                                                                     \
  static inline T dgelu_##SUF(T x) {                                                              \
    const T k = (T)GELU_K, c = (T)GELU_C;                                                         \
    T x2 = x * x, p, m;                                                                           \
    one_pm_tanh_##T(k * (x + c * x2 * x), &p, &m);                                                \
    return (T)0.5 * p + (T)0.5 * x * (p * m) * k * ((T)1 + (T)3 * c * x2);                        \
  }                                                                                               \
  /* operands: dx, dout, x */                                                                     \
  static void gelu_bwd_##SUF(char **p, const int64_t *st, int64_t n, void *ctx) {                 \
    (void)ctx;                                                                                    \
    const int64_t es = (int64_t)sizeof(T);                                                        \
    if (st[0] == es && st[1] == es && st[2] == es) {                                              \
      T *o = (T *)p[0];                                                                           \
      const T *dy = (const T *)p[1], *x = (const T *)p[2];                                        \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = dy[i] * dgelu_##SUF(x[i]);                   \
    } else {                                                                                      \
      for (int64_t i = 0; i < n; i++)                                                             \
        *(T *)(p[0] + i * st[0]) = *(const T *)(p[1] + i * st[1]) * dgelu_##SUF(*(const T *)(p[2] + i * st[2])); \
    }                                                                                             \
  }

GELU_BWD_LOOP(float, f32)
GELU_BWD_LOOP(double, f64)

static int gelu_backward(int32_t cd, int32_t ndim, const int64_t *shape, void *dx, const int64_t *dx_stride,
                         const void *dout, const int64_t *dout_stride, const void *x, const int64_t *x_stride) {
  if (cd != TIDE_F32 && cd != TIDE_F64) return tide_fail("gelu_backward kernel: no loop for %s", tide_dtype_name(cd));
  int64_t e = pw_size(cd);
  char *data[3] = {dx, (char *)dout, (char *)x};
  const int64_t *st[3] = {dx_stride, dout_stride, x_stride};
  const int64_t es[3] = {e, e, e};
  pw_run(cd == TIDE_F32 ? gelu_bwd_f32 : gelu_bwd_f64, NULL, ndim, shape, 3, data, st, es);
  return 0;
}

const struct tide_gelu_kernels tide_cpu_gelu = {
  .gelu_backward = gelu_backward,
};
