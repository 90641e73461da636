/* The CPU's binary kernels (kernels/binary.h): elementwise binary ops, the
   integer operand check and where. The macros below generate one loop per
   (op, compute type); the op and dtype are chosen once per call from a
   table, never per element. */
#include "binary.h"
#include "dtype.h"
#include "error.h"
#include "pw_loops.h"
#include <stdatomic.h>

/* per-element operations ----------------------------------------------------- */

#define DEF_FLOAT_BIN(TY, T, SUF)                                                   \
  static inline T add_##TY(T a, T b) { return a + b; }                              \
  static inline T sub_##TY(T a, T b) { return a - b; }                              \
  static inline T mul_##TY(T a, T b) { return a * b; }                              \
  static inline T div_##TY(T a, T b) { return a / b; }                              \
  static inline T pow_##TY(T a, T b) { return pow##SUF(a, b); }                     \
  /* a NaN on either side wins, as in PyTorch */                                    \
  static inline T maximum_##TY(T a, T b) { return (a > b || a != a) ? a : b; }      \
  static inline T minimum_##TY(T a, T b) { return (a < b || a != a) ? a : b; }      \
  static inline T fmod_##TY(T a, T b) { return fmod##SUF(a, b); }

/* Integer arithmetic goes through the unsigned type UT so that overflow wraps
   (two's complement, like PyTorch) instead of being undefined behaviour. */
#define DEF_INT_BIN(TY, T, UT)                                                      \
  static inline T add_##TY(T a, T b) { return (T)((UT)a + (UT)b); }                 \
  static inline T sub_##TY(T a, T b) { return (T)((UT)a - (UT)b); }                 \
  static inline T mul_##TY(T a, T b) { return (T)((UT)a * (UT)b); }                 \
  /* square-and-multiply; negative exponents are rejected before the loop */        \
  static inline T pow_##TY(T a, T b) {                                              \
    UT r = 1, x = (UT)a;                                                            \
    for (UT e = (UT)b; e; e >>= 1) {                                                \
      if (e & 1) r = (UT)(r * x);                                                   \
      x = (UT)(x * x);                                                              \
    }                                                                               \
    return (T)r;                                                                    \
  }                                                                                 \
  static inline T maximum_##TY(T a, T b) { return a > b ? a : b; }                  \
  static inline T minimum_##TY(T a, T b) { return a < b ? a : b; }

/* Comparisons and logical ops write 0/1 bytes (bool). */
#define DEF_CMP_BIN(TY, T)                                                          \
  static inline uint8_t eq_##TY(T a, T b) { return a == b; }                        \
  static inline uint8_t ne_##TY(T a, T b) { return a != b; }                        \
  static inline uint8_t lt_##TY(T a, T b) { return a < b; }                         \
  static inline uint8_t le_##TY(T a, T b) { return a <= b; }                        \
  static inline uint8_t gt_##TY(T a, T b) { return a > b; }                         \
  static inline uint8_t ge_##TY(T a, T b) { return a >= b; }                        \
  static inline uint8_t and_##TY(T a, T b) { return (uint8_t)((a != 0) & (b != 0)); } \
  static inline uint8_t or_##TY(T a, T b) { return (uint8_t)((a != 0) | (b != 0)); }  \
  static inline uint8_t xor_##TY(T a, T b) { return (uint8_t)((a != 0) ^ (b != 0)); }

DEF_FLOAT_BIN(F32, float, f)
DEF_FLOAT_BIN(F64, double, )
DEF_INT_BIN(I32, int32_t, uint32_t)
DEF_INT_BIN(I64, int64_t, uint64_t)
DEF_INT_BIN(U8, uint8_t, uint8_t)
DEF_CMP_BIN(F32, float)
DEF_CMP_BIN(F64, double)
DEF_CMP_BIN(I32, int32_t)
DEF_CMP_BIN(I64, int64_t)
DEF_CMP_BIN(U8, uint8_t)

/* C's % truncates like fmod; INT_MIN % -1 overflows, so -1 is answered
   directly. Zero divisors are rejected before the loop. */
static inline int32_t fmod_I32(int32_t a, int32_t b) { return b == -1 ? 0 : a % b; }
static inline int64_t fmod_I64(int64_t a, int64_t b) { return b == -1 ? 0 : a % b; }
static inline uint8_t fmod_U8(uint8_t a, uint8_t b) { return (uint8_t)(a % b); }

/* loops ------------------------------------------------------------------------- */

/* One loop: unit-stride, tensor-with-scalar on either side (stride 0, which
   is also how broadcast rows arrive), and a general strided fallback. */
#define BLOOP(NAME, TY, T, U)                                                                   \
  static void NAME##_##TY##_loop(char **p, const int64_t *st, int64_t n, void *ctx) {           \
    (void)ctx;                                                                                  \
    const int64_t so = st[0], sx = st[1], sy = st[2], eo = (int64_t)sizeof(U), et = (int64_t)sizeof(T); \
    if (so == eo && sx == et && sy == et) {                                                     \
      U *o = (U *)p[0];                                                                         \
      const T *x = (const T *)p[1], *y = (const T *)p[2];                                       \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = NAME##_##TY(x[i], y[i]);                   \
    } else if (so == eo && sx == et && sy == 0) {                                               \
      U *o = (U *)p[0];                                                                         \
      const T *x = (const T *)p[1], y = *(const T *)p[2];                                       \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = NAME##_##TY(x[i], y);                      \
    } else if (so == eo && sx == 0 && sy == et) {                                               \
      U *o = (U *)p[0];                                                                         \
      const T x = *(const T *)p[1], *y = (const T *)p[2];                                       \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = NAME##_##TY(x, y[i]);                      \
    } else {                                                                                    \
      char *o = p[0];                                                                           \
      const char *x = p[1], *y = p[2];                                                          \
      for (int64_t i = 0; i < n; i++)                                                           \
        *(U *)(o + i * so) = NAME##_##TY(*(const T *)(x + i * sx), *(const T *)(y + i * sy));   \
    }                                                                                           \
  }

#define ARITH_LOOPS(TY, T)                                                          \
  BLOOP(add, TY, T, T) BLOOP(sub, TY, T, T) BLOOP(mul, TY, T, T)                    \
  BLOOP(pow, TY, T, T) BLOOP(maximum, TY, T, T) BLOOP(minimum, TY, T, T)            \
  BLOOP(fmod, TY, T, T)
#define CMP_LOOPS(TY, T)                                                            \
  BLOOP(eq, TY, T, uint8_t) BLOOP(ne, TY, T, uint8_t) BLOOP(lt, TY, T, uint8_t)     \
  BLOOP(le, TY, T, uint8_t) BLOOP(gt, TY, T, uint8_t) BLOOP(ge, TY, T, uint8_t)     \
  BLOOP(and, TY, T, uint8_t) BLOOP(or, TY, T, uint8_t) BLOOP(xor, TY, T, uint8_t)

ARITH_LOOPS(F32, float)
ARITH_LOOPS(F64, double)
ARITH_LOOPS(I32, int32_t)
ARITH_LOOPS(I64, int64_t)
ARITH_LOOPS(U8, uint8_t)
CMP_LOOPS(F32, float)
CMP_LOOPS(F64, double)
CMP_LOOPS(I32, int32_t)
CMP_LOOPS(I64, int64_t)
CMP_LOOPS(U8, uint8_t)
BLOOP(div, F32, float, float)
BLOOP(div, F64, double, double)

#define ROW(NAME) {NAME##_F32_loop, NAME##_F64_loop, NAME##_I32_loop, NAME##_I64_loop, NAME##_U8_loop}

/* Integer true division never reaches a loop: it computes in f32. */
static const tide_loop_fn bin_loops[TIDE_NUM_BINARY][PW_NUM_CT] = {
  [TIDE_ADD] = ROW(add), [TIDE_SUB] = ROW(sub), [TIDE_MUL] = ROW(mul),
  [TIDE_DIV] = {div_F32_loop, div_F64_loop, NULL, NULL, NULL},
  [TIDE_POW] = ROW(pow), [TIDE_MAXIMUM] = ROW(maximum), [TIDE_MINIMUM] = ROW(minimum),
  [TIDE_EQ] = ROW(eq), [TIDE_NE] = ROW(ne), [TIDE_LT] = ROW(lt), [TIDE_LE] = ROW(le),
  [TIDE_GT] = ROW(gt), [TIDE_GE] = ROW(ge), [TIDE_AND] = ROW(and), [TIDE_OR] = ROW(or),
  [TIDE_XOR] = ROW(xor), [TIDE_FMOD] = ROW(fmod),
};

/* Comparisons and logical ops: their result is bool whatever the inputs. */
static int is_predicate(int32_t op) { return op >= TIDE_EQ && op <= TIDE_XOR; }

static int binary(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                  const void *a, const int64_t *a_stride, const void *b, const int64_t *b_stride) {
  tide_loop_fn fn = op >= 0 && op < TIDE_NUM_BINARY ? bin_loops[op][pw_ct(cd)] : NULL;
  if (!fn) return tide_fail("binary kernel: no loop for op %d in %s", op, tide_dtype_name(cd));
  int64_t e = pw_size(cd);
  char *data[3] = {out, (char *)a, (char *)b};
  const int64_t *st[3] = {out_stride, a_stride, b_stride};
  const int64_t es[3] = {is_predicate(op) ? 1 : e, e, e};
  pw_run(fn, NULL, ndim, shape, 3, data, st, es);
  return 0;
}

/* integer edge cases -------------------------------------------------------------- */

typedef struct {
  int32_t cd;
  int negative;  /* look for negative values; else for zeros */
  atomic_int found;
} scan_ctx;

#define SCAN_CASE(DT, T)                                                            \
  case DT:                                                                          \
    for (int64_t i = 0; i < n; i++) {                                               \
      T v = *(const T *)(x + i * s);                                                \
      bad |= c->negative ? v < 0 : v == 0;                                          \
    }                                                                               \
    break;

static void scan_loop(char **p, const int64_t *st, int64_t n, void *vctx) {
  scan_ctx *c = vctx;
  const char *x = p[0];
  int64_t s = st[0];
  int bad = 0;
  switch (c->cd) {
    SCAN_CASE(TIDE_I32, int32_t)
    SCAN_CASE(TIDE_I64, int64_t)
    default:
      for (int64_t i = 0; i < n; i++) bad |= !c->negative && *(const uint8_t *)(x + i * s) == 0;
      break;
  }
  if (bad) atomic_store_explicit(&c->found, 1, memory_order_relaxed);
}

/* Integer fmod by zero and negative integer powers have no integer answer:
   the op layer asks before anything is written. */
static int find_zero_or_negative(int32_t cd, int32_t negative, int32_t ndim, const int64_t *shape, const void *x,
                                 const int64_t *x_stride, int32_t *found) {
  scan_ctx c = {cd, negative != 0, 0};
  char *data[1] = {(char *)x};
  const int64_t *st[1] = {x_stride};
  const int64_t es[1] = {pw_size(cd)};
  pw_run(scan_loop, &c, ndim, shape, 1, data, st, es);
  *found = atomic_load(&c.found) != 0;
  return 0;
}

/* where ---------------------------------------------------------------------------- */

/* Selection moves elements whole, so one loop per element size serves every dtype. */
#define WLOOP(ES, T)                                                                            \
  static void where_##ES##_loop(char **p, const int64_t *st, int64_t n, void *ctx) {            \
    (void)ctx;                                                                                  \
    if (st[0] == ES && st[1] == 1 && st[2] == ES && st[3] == ES) {                              \
      T *o = (T *)p[0];                                                                         \
      const uint8_t *c = (const uint8_t *)p[1];                                                 \
      const T *x = (const T *)p[2], *y = (const T *)p[3];                                       \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = c[i] ? x[i] : y[i];                        \
    } else {                                                                                    \
      for (int64_t i = 0; i < n; i++)                                                           \
        *(T *)(p[0] + i * st[0]) = *(const uint8_t *)(p[1] + i * st[1]) ? *(const T *)(p[2] + i * st[2]) \
                                                                        : *(const T *)(p[3] + i * st[3]); \
    }                                                                                           \
  }

WLOOP(1, uint8_t)
WLOOP(2, uint16_t)
WLOOP(4, uint32_t)
WLOOP(8, uint64_t)

static int where(int32_t dtype, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                 const void *cond, const int64_t *cond_stride, const void *a, const int64_t *a_stride, const void *b,
                 const int64_t *b_stride) {
  int64_t e = tide_dtype_size(dtype);
  tide_loop_fn fn;
  switch (e) {
    case 1: fn = where_1_loop; break;
    case 2: fn = where_2_loop; break;
    case 4: fn = where_4_loop; break;
    default: fn = where_8_loop; break;
  }
  char *data[4] = {out, (char *)cond, (char *)a, (char *)b};
  const int64_t *st[4] = {out_stride, cond_stride, a_stride, b_stride};
  const int64_t es[4] = {e, 1, e, e};
  pw_run(fn, NULL, ndim, shape, 4, data, st, es);
  return 0;
}

const struct tide_binary_kernels tide_cpu_binary = {
  .binary = binary,
  .find_zero_or_negative = find_zero_or_negative,
  .where = where,
};
