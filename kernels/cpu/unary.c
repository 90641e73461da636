/* The CPU's unary kernels (kernels/unary.h): elementwise unary ops and
   clamp. As in binary.c, macros generate one loop per (op, compute type) and
   the op is picked from a table once per call. */
#include "unary.h"
#include "dtype.h"
#include "error.h"
#include "pw_loops.h"
#include "vmath.h"

/* f32 exp (and sigmoid through it) vectorise; f64 keeps libm's exp */
#define EXP_F32 tide_expf
#define EXP_F64 exp

/* per-element operations ----------------------------------------------------- */

#define DEF_FLOAT_UN(TY, T, SUF)                                                    \
  static inline T neg_##TY(T a) { return -a; }                                      \
  static inline T abs_##TY(T a) { return fabs##SUF(a); }                            \
  static inline T exp_##TY(T a) { return EXP_##TY(a); }                             \
  static inline T log_##TY(T a) { return log##SUF(a); }                             \
  static inline T sqrt_##TY(T a) { return sqrt##SUF(a); }                           \
  static inline T rsqrt_##TY(T a) { return (T)1 / sqrt##SUF(a); }                   \
  static inline T tanh_##TY(T a) { return tanh##SUF(a); }                           \
  /* exp(-a) overflows to inf for very negative a, giving exactly 0 */              \
  static inline T sigmoid_##TY(T a) { return (T)1 / ((T)1 + EXP_##TY(-a)); }        \
  /* NaN passes through, as PyTorch's relu (a clamp at 0) does */                   \
  static inline T relu_##TY(T a) { return (a > 0 || a != a) ? a : (T)0; }           \
  /* 0.5 a (1 + tanh u) = a / (1 + e^(-2u)): one exp, which vectorises for f32 */ \
  static inline T gelu_##TY(T a) {                                                  \
    T u = (T)0.7978845608028654 * (a + (T)0.044715 * a * a * a);                    \
    return a / ((T)1 + EXP_##TY((T)-2 * u));                                        \
  }                                                                                 \
  static inline uint8_t not_##TY(T a) { return a == 0; }                            \
  static inline T sin_##TY(T a) { return sin##SUF(a); }                             \
  static inline T cos_##TY(T a) { return cos##SUF(a); }                             \
  static inline T floor_##TY(T a) { return floor##SUF(a); }                         \
  static inline T ceil_##TY(T a) { return ceil##SUF(a); }                           \
  /* the default rounding mode rounds half to even, like torch.round */             \
  static inline T round_##TY(T a) { return nearbyint##SUF(a); }                     \
  /* 0, -0 and NaN return themselves (NumPy's choice; PyTorch gives 0 for NaN) */   \
  static inline T sign_##TY(T a) { return a > 0 ? (T)1 : a < 0 ? (T)-1 : a; }       \
  static inline T log1p_##TY(T a) { return log1p##SUF(a); }                         \
  static inline T expm1_##TY(T a) { return expm1##SUF(a); }                         \
  static inline T square_##TY(T a) { return a * a; }                               \
  static inline T reciprocal_##TY(T a) { return (T)1 / a; }                         \
  static inline uint8_t isnan_##TY(T a) { return a != a; }                          \
  static inline uint8_t isinf_##TY(T a) { return fabs##SUF(a) == (T)INFINITY; }

/* Integers: negation and squaring wrap through the unsigned type UT; the
   rounding ops are the identity and nothing is NaN or infinite. */
#define DEF_INT_UN(TY, T, UT)                                                       \
  static inline T neg_##TY(T a) { return (T)((UT)0 - (UT)a); }                      \
  static inline T square_##TY(T a) { return (T)((UT)a * (UT)a); }                   \
  static inline T floor_##TY(T a) { return a; }                                     \
  static inline T ceil_##TY(T a) { return a; }                                      \
  static inline T round_##TY(T a) { return a; }                                     \
  static inline uint8_t not_##TY(T a) { return a == 0; }                            \
  static inline uint8_t isnan_##TY(T a) { (void)a; return 0; }                      \
  static inline uint8_t isinf_##TY(T a) { (void)a; return 0; }

/* abs(INT_MIN) wraps to INT_MIN, as in PyTorch. */
#define DEF_SIGNED_UN(TY, T, UT)                                                    \
  static inline T abs_##TY(T a) { return a < 0 ? (T)((UT)0 - (UT)a) : a; }          \
  static inline T sign_##TY(T a) { return (T)((a > 0) - (a < 0)); }                 \
  static inline T relu_##TY(T a) { return a > 0 ? a : 0; }

DEF_FLOAT_UN(F32, float, f)
DEF_FLOAT_UN(F64, double, )
DEF_INT_UN(I32, int32_t, uint32_t)
DEF_INT_UN(I64, int64_t, uint64_t)
DEF_INT_UN(U8, uint8_t, uint8_t)
DEF_SIGNED_UN(I32, int32_t, uint32_t)
DEF_SIGNED_UN(I64, int64_t, uint64_t)
static inline uint8_t abs_U8(uint8_t a) { return a; }
static inline uint8_t sign_U8(uint8_t a) { return a != 0; }
static inline uint8_t relu_U8(uint8_t a) { return a; }

/* loops ------------------------------------------------------------------------- */

#define ULOOP(NAME, TY, T, U)                                                                   \
  static void NAME##_##TY##_loop(char **p, const int64_t *st, int64_t n, void *ctx) {           \
    (void)ctx;                                                                                  \
    if (st[0] == (int64_t)sizeof(U) && st[1] == (int64_t)sizeof(T)) {                           \
      U *o = (U *)p[0];                                                                         \
      const T *x = (const T *)p[1];                                                             \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = NAME##_##TY(x[i]);                         \
    } else {                                                                                    \
      for (int64_t i = 0; i < n; i++) *(U *)(p[0] + i * st[0]) = NAME##_##TY(*(const T *)(p[1] + i * st[1])); \
    }                                                                                           \
  }

/* ops every compute type has */
#define COMMON_LOOPS(TY, T)                                                         \
  ULOOP(neg, TY, T, T) ULOOP(abs, TY, T, T) ULOOP(relu, TY, T, T)                   \
  ULOOP(floor, TY, T, T) ULOOP(ceil, TY, T, T) ULOOP(round, TY, T, T)               \
  ULOOP(sign, TY, T, T) ULOOP(square, TY, T, T) ULOOP(not, TY, T, uint8_t)          \
  ULOOP(isnan, TY, T, uint8_t) ULOOP(isinf, TY, T, uint8_t)
/* ops that only floats have (integer inputs are computed in f32) */
#define FLOAT_LOOPS(TY, T)                                                          \
  ULOOP(exp, TY, T, T) ULOOP(log, TY, T, T) ULOOP(sqrt, TY, T, T)                   \
  ULOOP(rsqrt, TY, T, T) ULOOP(tanh, TY, T, T) ULOOP(sigmoid, TY, T, T)             \
  ULOOP(gelu, TY, T, T) ULOOP(sin, TY, T, T) ULOOP(cos, TY, T, T)                   \
  ULOOP(log1p, TY, T, T) ULOOP(expm1, TY, T, T) ULOOP(reciprocal, TY, T, T)

COMMON_LOOPS(F32, float)
COMMON_LOOPS(F64, double)
COMMON_LOOPS(I32, int32_t)
COMMON_LOOPS(I64, int64_t)
COMMON_LOOPS(U8, uint8_t)
FLOAT_LOOPS(F32, float)
FLOAT_LOOPS(F64, double)

#define ALL(NAME) {NAME##_F32_loop, NAME##_F64_loop, NAME##_I32_loop, NAME##_I64_loop, NAME##_U8_loop}
#define FLT(NAME) {NAME##_F32_loop, NAME##_F64_loop, NULL, NULL, NULL}

static const tide_loop_fn un_loops[TIDE_NUM_UNARY][PW_NUM_CT] = {
  [TIDE_NEG] = ALL(neg), [TIDE_ABS] = ALL(abs), [TIDE_EXP] = FLT(exp), [TIDE_LOG] = FLT(log),
  [TIDE_SQRT] = FLT(sqrt), [TIDE_RSQRT] = FLT(rsqrt), [TIDE_TANH] = FLT(tanh), [TIDE_SIGMOID] = FLT(sigmoid),
  [TIDE_RELU] = ALL(relu), [TIDE_GELU] = FLT(gelu), [TIDE_NOT] = ALL(not), [TIDE_SIN] = FLT(sin),
  [TIDE_COS] = FLT(cos), [TIDE_FLOOR] = ALL(floor), [TIDE_CEIL] = ALL(ceil), [TIDE_ROUND] = ALL(round),
  [TIDE_SIGN] = ALL(sign), [TIDE_LOG1P] = FLT(log1p), [TIDE_EXPM1] = FLT(expm1), [TIDE_SQUARE] = ALL(square),
  [TIDE_RECIPROCAL] = FLT(reciprocal), [TIDE_ISNAN] = ALL(isnan), [TIDE_ISINF] = ALL(isinf),
};

/* The predicates write bool bytes whatever compute dtype they read. */
static int is_predicate(int32_t op) { return op == TIDE_NOT || op == TIDE_ISNAN || op == TIDE_ISINF; }

static int unary(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                 const void *x, const int64_t *x_stride) {
  tide_loop_fn fn = op >= 0 && op < TIDE_NUM_UNARY ? un_loops[op][pw_ct(cd)] : NULL;
  if (!fn) return tide_fail("unary kernel: no loop for op %d in %s", op, tide_dtype_name(cd));
  char *data[2] = {out, (char *)x};
  const int64_t *st[2] = {out_stride, x_stride};
  const int64_t e = pw_size(cd), es[2] = {is_predicate(op) ? 1 : e, e};
  pw_run(fn, NULL, ndim, shape, 2, data, st, es);
  return 0;
}

/* clamp ---------------------------------------------------------------------------- */

typedef struct { double lo, hi; } clamp_ctx;

/* lo is applied first, so lo > hi gives hi everywhere (as PyTorch); a NaN
   element fails both comparisons and stays NaN. */
#define CLAMP_LOOP(TY, T, LO, HI)                                                   \
  static void clamp_##TY##_loop(char **p, const int64_t *st, int64_t n, void *vctx) { \
    const clamp_ctx *c = vctx;                                                      \
    const T lo = LO(c->lo), hi = HI(c->hi);                                         \
    if (st[0] == (int64_t)sizeof(T) && st[1] == (int64_t)sizeof(T)) {               \
      T *o = (T *)p[0];                                                             \
      const T *x = (const T *)p[1];                                                 \
      PW_SIMD for (int64_t i = 0; i < n; i++) {                                     \
        T v = x[i] < lo ? lo : x[i];                                                \
        o[i] = v > hi ? hi : v;                                                     \
      }                                                                             \
    } else {                                                                        \
      for (int64_t i = 0; i < n; i++) {                                             \
        T v = *(const T *)(p[1] + i * st[1]);                                       \
        v = v < lo ? lo : v;                                                        \
        *(T *)(p[0] + i * st[0]) = v > hi ? hi : v;                                 \
      }                                                                             \
    }                                                                               \
  }

/* A NaN bound is no bound; integer bounds saturate to the type's range (a
   bound outside it clamps nothing). */
static inline int64_t sat(double v, int64_t lo, int64_t hi) {
  int64_t i = tide_f64_to_i64(v);
  return i < lo ? lo : i > hi ? hi : i;
}
#define LO_F32(v) ((v) != (v) ? -INFINITY : (float)(v))
#define HI_F32(v) ((v) != (v) ? INFINITY : (float)(v))
#define LO_F64(v) ((v) != (v) ? -INFINITY : (v))
#define HI_F64(v) ((v) != (v) ? INFINITY : (v))
#define LO_I32(v) (int32_t)((v) != (v) ? INT32_MIN : sat(v, INT32_MIN, INT32_MAX))
#define HI_I32(v) (int32_t)((v) != (v) ? INT32_MAX : sat(v, INT32_MIN, INT32_MAX))
#define LO_I64(v) ((v) != (v) ? INT64_MIN : sat(v, INT64_MIN, INT64_MAX))
#define HI_I64(v) ((v) != (v) ? INT64_MAX : sat(v, INT64_MIN, INT64_MAX))
#define LO_U8(v) (uint8_t)((v) != (v) ? 0 : sat(v, 0, UINT8_MAX))
#define HI_U8(v) (uint8_t)((v) != (v) ? UINT8_MAX : sat(v, 0, UINT8_MAX))

CLAMP_LOOP(F32, float, LO_F32, HI_F32)
CLAMP_LOOP(F64, double, LO_F64, HI_F64)
CLAMP_LOOP(I32, int32_t, LO_I32, HI_I32)
CLAMP_LOOP(I64, int64_t, LO_I64, HI_I64)
CLAMP_LOOP(U8, uint8_t, LO_U8, HI_U8)

static const tide_loop_fn clamp_loops[PW_NUM_CT] = ALL(clamp);

static int clamp(int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride, const void *x,
                 const int64_t *x_stride, double lo, double hi) {
  clamp_ctx c = {lo, hi};
  char *data[2] = {out, (char *)x};
  const int64_t *st[2] = {out_stride, x_stride};
  const int64_t es[2] = {pw_size(cd), pw_size(cd)};
  pw_run(clamp_loops[pw_ct(cd)], &c, ndim, shape, 2, data, st, es);
  return 0;
}

const struct tide_unary_kernels tide_cpu_unary = {
  .unary = unary,
  .clamp = clamp,
};
