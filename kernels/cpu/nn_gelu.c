/* Gradient of the tanh-approximated GELU (the forward is TIDE_GELU in
   unary.c): with u = k (x + 0.044715 x^3), k = sqrt(2/pi), t = tanh(u),
     gelu(x)  = 0.5 x (1 + t)
     gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2),
   the same arrangement as PyTorch's GeluBackward (so x = +-inf gives NaN as
   there). t enters only through 1 + t and 1 - t^2 = (1 + t)(1 - t), which
   are computed directly from one exp (vmath.h's vectorised tide_expf for
   f32, libm for f64), accurate to a few ulp even where t is within 1e-7 of
   -1 or 1; PyTorch forms them from tanh(u) and loses that accuracy. */
#include "pw_loops.h"
#include "../../runtime/ops/pointwise.h" /* until this family moves under the op layer */
#include "vmath.h"
#include <string.h>

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

/* dx takes the dtype dout and x promote to. */
int tide_gelu_backward(const tide_tensor *dout, const tide_tensor *x, tide_tensor **dx) {
  const char *op = "gelu_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!x) return tide_fail("%s: x is NULL (expected a tensor)", op);
  if (!dx) return tide_fail("%s: dx is NULL", op);
  TIDE_TRY(tide_check_tensor(dout, op));
  TIDE_TRY(tide_check_tensor(x, op));
  if (!tide_is_float(dout->dtype) || !tide_is_float(x->dtype))
    return tide_fail("%s: dout and x must be float tensors (f32, f64, bf16 or f16), got %s and %s", op,
                     tide_dtype_name(dout->dtype), tide_dtype_name(x->dtype));
  if (dout->ndim != x->ndim || memcmp(dout->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match x of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, x->ndim, x->shape));
  }
  int32_t rd = tide_promote_types(dout->dtype, x->dtype), cd = rd == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  tide_tensor *dyc = tide_pw_operand(dout, cd), *xc = NULL, *res = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if (!(xc = tide_pw_operand(x, cd)) || !(res = tide_new(rd, x->ndim, x->shape))) goto done;
  const tide_tensor *ins[2] = {dyc, xc};
  rc = tide_pw_run(cd == TIDE_F32 ? gelu_bwd_f32 : gelu_bwd_f64, NULL, cd, res, x->ndim, x->shape, 2, ins);
  if (rc == 0) {
    *dx = res;
    res = NULL;
  }
done:
  tide_tensor_release(dyc);
  tide_tensor_release(xc);
  tide_tensor_release(res);
  return rc;
}
