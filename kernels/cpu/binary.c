/* Elementwise binary ops (tensor with tensor, or with a number on either
   side, fresh or in place), where, and the shared driver of all elementwise
   kernels. The macros below generate one loop per (op, compute type); the op
   and dtype are chosen once per call from a table, never per element. */
#include "pw_loops.h"
#include "../../runtime/ops/pointwise.h" /* until this family moves under the op layer */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

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

/* op names for messages: [0] out of place, [1] in place (trailing _),
   spelled out so the success path formats nothing */
static const char *const bin_names[2][TIDE_NUM_BINARY] = {
  {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
    "logical_and", "logical_or", "logical_xor", "fmod",
  },
  {
    "add_", "sub_", "mul_", "div_", "pow_", "maximum_", "minimum_", "eq_", "ne_", "lt_", "le_",
    "gt_", "ge_", "logical_and_", "logical_or_", "logical_xor_", "fmod_",
  },
};

/* Comparisons and logical ops: their result is bool whatever the inputs. */
static int is_predicate(int32_t op) { return op >= TIDE_EQ && op <= TIDE_XOR; }

/* A Lua number as a 0-d tensor that lives on the caller's stack: a small op
   called in a loop from Lua should not pay heap allocations for its scalar.
   Its refcount starts at 1 and only balanced retain/release pairs touch it. */
typedef struct {
  tide_storage storage;
  tide_tensor t;
  union { float f32; double f64; int32_t i32; int64_t i64; uint8_t u8; } v;
} scalar_tensor;

/* Sets up sc as a 0-d tensor of compute dtype cd holding s; integers wrap
   like a C cast from int64, so u8 + -1 subtracts one as in PyTorch. */
static tide_tensor *scalar_init(scalar_tensor *sc, int32_t cd, double s) {
  memset(sc, 0, sizeof *sc);
  uint64_t u = (uint64_t)tide_f64_to_i64(s);
  switch (cd) {
    case TIDE_F32: sc->v.f32 = (float)s; break;
    case TIDE_F64: sc->v.f64 = s; break;
    case TIDE_I32: sc->v.i32 = (int32_t)(uint32_t)u; break;
    case TIDE_I64: sc->v.i64 = (int64_t)u; break;
    default: sc->v.u8 = (uint8_t)u; break;
  }
  sc->storage.data = (char *)&sc->v;
  sc->storage.nbytes = sizeof sc->v;
  sc->storage.refcount = 1;
  sc->storage.device = -1;
  sc->t.storage = &sc->storage;
  sc->t.data = (char *)&sc->v;
  sc->t.numel = 1;
  sc->t.dtype = cd;
  sc->t.device = -1;
  sc->t.refcount = 1;
  return &sc->t;
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
   they fail before anything is written, naming the op. */
static int check_integer_operand(int32_t op, const tide_tensor *b, int32_t cd, const char *name) {
  if (tide_is_float(cd) || (op != TIDE_FMOD && op != TIDE_POW)) return 0;
  scan_ctx c = {cd, op == TIDE_POW, 0};
  const tide_tensor *ops[1] = {b};
  tide_iter it;
  tide_iter_init(&it, b->ndim, b->shape, 1, ops);
  tide_iter_run(&it, scan_loop, &c, TIDE_GRAIN);
  if (!atomic_load(&c.found)) return 0;
  if (op == TIDE_FMOD) return tide_fail("%s: integer division by zero (a divisor is 0)", name);
  return tide_fail("%s: integers to negative integer powers are not allowed (an exponent is negative); "
                   "use a float tensor", name);
}

/* entry points --------------------------------------------------------------------- */

/* Result dtype (out) and compute dtype of op for operands promoted to p. */
static void binary_types(int32_t op, int32_t p, int32_t *od, int32_t *cd) {
  if (is_predicate(op)) {
    *od = TIDE_BOOL;
    *cd = pw_compute_dtype(p);
    return;
  }
  if (op == TIDE_DIV && !tide_is_float(p)) p = TIDE_F32;  /* true division, as in PyTorch */
  *od = p;
  *cd = pw_compute_dtype(p);
}

/* Shared body: a OP b where either may be a 0-d scalar tensor, p is their
   promoted dtype, dst the in-place target (NULL: a fresh result in *out).
   Bool arithmetic follows PyTorch: add/mul/maximum/minimum/pow/fmod of two
   bools are computed in u8 and stored as bool (so add is a logical or), sub
   of two bools is an error, div gives f32. */
static int binary_core(int32_t op, const tide_tensor *a, const tide_tensor *b, int32_t p, tide_tensor *dst,
                       tide_tensor **out, const char *name) {
  int32_t nd, od, cd;
  int64_t shape[TIDE_MAX_DIMS];
  TIDE_TRY(tide_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &nd, shape, name));
  if (dst && (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd))) {
    char sd[160], sr[160];
    return tide_fail("%s: the in-place target of shape %s cannot hold the broadcast result of shape %s", name,
                     tide_shape_str(sd, sizeof sd, dst->ndim, dst->shape), tide_shape_str(sr, sizeof sr, nd, shape));
  }
  if (dst) TIDE_TRY(tide_pw_check_writable(dst, name));
  if (op == TIDE_SUB && p == TIDE_BOOL)
    return tide_fail("%s: subtracting bool tensors is not supported; use logical_xor", name);
  binary_types(op, p, &od, &cd);
  tide_tensor *ca = NULL, *cb = NULL, *res = NULL;
  int rc = -1;
  if (!(ca = tide_pw_operand(a, cd)) || !(cb = tide_pw_operand(b, cd))) goto done;
  if (tide_shape_numel(nd, shape, name) > 0 && check_integer_operand(op, cb, cd, name)) goto done;
  if (!(res = dst ? dst : tide_new(od, nd, shape))) goto done;
  const tide_tensor *ins[2] = {ca, cb};
  rc = tide_pw_run(bin_loops[op][pw_ct(cd)], NULL, is_predicate(op) ? TIDE_BOOL : cd, res, nd, shape, 2, ins);
  if (!dst) {
    if (rc == 0) *out = res;
    else tide_tensor_release(res);
  }
done:
  tide_tensor_release(ca);
  tide_tensor_release(cb);
  return rc;
}

/* Checks the op code and writes the op's name (with a trailing _ for in-place forms). */
static int binary_name(int32_t op, int inplace, const char **name) {
  if (op < 0 || op >= TIDE_NUM_BINARY) return tide_fail("binary op: invalid op code %d", op);
  *name = bin_names[inplace][op];
  return 0;
}

int tide_binary(int32_t op, const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  const char *name = NULL;
  TIDE_TRY(binary_name(op, 0, &name));
  TIDE_TRY(tide_check_tensor(a, name));
  TIDE_TRY(tide_check_tensor(b, name));
  return binary_core(op, a, b, tide_pw_result_type(a, b), NULL, out, name);
}

/* The result is computed in the promoted dtype, then stored into a's dtype. */
int tide_binary_(int32_t op, tide_tensor *a, const tide_tensor *b) {
  const char *name = NULL;
  TIDE_TRY(binary_name(op, 1, &name));
  TIDE_TRY(tide_check_tensor(a, name));
  TIDE_TRY(tide_check_tensor(b, name));
  tide_bump_version(a);
  return binary_core(op, a, b, tide_pw_result_type(a, b), a, NULL, name);
}

/* The scalar becomes a 0-d tensor of the compute dtype, which the loops
   read with stride 0, so scalar forms share the tensor loops' fast paths. */
static int binary_scalar(int32_t op, tide_tensor *a, double s, int scalar_first, tide_tensor *dst, tide_tensor **out,
                         const char *name) {
  int32_t p = pw_scalar_result(a->dtype, s), od, cd;
  binary_types(op, p, &od, &cd);
  scalar_tensor sc;
  tide_tensor *st = scalar_init(&sc, cd, s);
  return scalar_first ? binary_core(op, st, a, p, dst, out, name) : binary_core(op, a, st, p, dst, out, name);
}

int tide_binary_scalar(int32_t op, const tide_tensor *a, double s, int32_t scalar_first, tide_tensor **out) {
  const char *name = NULL;
  TIDE_TRY(binary_name(op, 0, &name));
  TIDE_TRY(tide_check_tensor(a, name));
  return binary_scalar(op, (tide_tensor *)a, s, scalar_first, NULL, out, name);
}

int tide_binary_scalar_(int32_t op, tide_tensor *a, double s) {
  const char *name = NULL;
  TIDE_TRY(binary_name(op, 1, &name));
  TIDE_TRY(tide_check_tensor(a, name));
  tide_bump_version(a);
  return binary_scalar(op, a, s, 0, a, NULL, name);
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

int tide_where(const tide_tensor *cond, const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  TIDE_TRY(tide_check_tensor(cond, "where"));
  TIDE_TRY(tide_check_tensor(a, "where"));
  TIDE_TRY(tide_check_tensor(b, "where"));
  int32_t nd1, nd;
  int64_t s1[TIDE_MAX_DIMS], shape[TIDE_MAX_DIMS];
  TIDE_TRY(tide_broadcast_shapes(cond->ndim, cond->shape, a->ndim, a->shape, &nd1, s1, "where"));
  TIDE_TRY(tide_broadcast_shapes(nd1, s1, b->ndim, b->shape, &nd, shape, "where"));
  int32_t od = tide_pw_result_type(a, b);
  tide_tensor *cc = NULL, *ca = NULL, *cb = NULL, *res = NULL;
  int rc = -1;
  /* any dtype is a condition: nonzero (NaN included) is true */
  if (cond->dtype == TIDE_BOOL || cond->dtype == TIDE_U8) {
    tide_tensor_retain((tide_tensor *)cond);
    cc = (tide_tensor *)cond;
  } else if (!(cc = tide_contiguous_as(cond, TIDE_BOOL))) {
    goto done;
  }
  if (!(ca = tide_pw_operand(a, od)) || !(cb = tide_pw_operand(b, od))) goto done;
  if (!(res = tide_new(od, nd, shape))) goto done;
  tide_loop_fn fn;
  switch (tide_dtype_size(od)) {
    case 1: fn = where_1_loop; break;
    case 2: fn = where_2_loop; break;
    case 4: fn = where_4_loop; break;
    default: fn = where_8_loop; break;
  }
  const tide_tensor *ins[3] = {cc, ca, cb};
  rc = tide_pw_run(fn, NULL, od, res, nd, shape, 3, ins);
  if (rc == 0) *out = res;
  else tide_tensor_release(res);
done:
  tide_tensor_release(cc);
  tide_tensor_release(ca);
  tide_tensor_release(cb);
  return rc;
}
