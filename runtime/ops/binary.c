/* The binary ops (tensor with tensor, or with a number on either side, fresh
   or in place) and where: promotion, broadcasting, result dtypes, operand
   conversion and in-place targets; the backend's binary kernels
   (kernels/binary.h) compute. */
#include "pointwise.h"
#include "binary.h"
#include <string.h>

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

/* Integer fmod by zero and negative integer powers have no integer answer:
   they fail before anything is written, naming the op. */
static int check_integer_operand(const tide_backend *be, int32_t op, const tide_tensor *b, int32_t cd,
                                 const char *name) {
  if (tide_is_float(cd) || (op != TIDE_FMOD && op != TIDE_POW)) return 0;
  int32_t found = 0;
  TIDE_TRY(be->binary->find_zero_or_negative(cd, op == TIDE_POW, b->ndim, b->shape, b->data, b->stride, &found));
  if (!found) return 0;
  if (op == TIDE_FMOD) return tide_fail("%s: integer division by zero (a divisor is 0)", name);
  return tide_fail("%s: integers to negative integer powers are not allowed (an exponent is negative); "
                   "use a float tensor", name);
}

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
static int binary_core(const tide_backend *be, int32_t dev, int32_t op, const tide_tensor *a, const tide_tensor *b,
                       int32_t p, tide_tensor *dst, tide_tensor **out, const char *name) {
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
  if (tide_shape_numel(nd, shape, name) > 0 && check_integer_operand(be, op, cb, cd, name)) goto done;
  if (!(res = dst ? dst : tide_new_on(dev, od, nd, shape))) goto done;
  const tide_tensor *ins[2] = {ca, cb};
  tide_pw_args pa;
  if (tide_pw_prepare(&pa, is_predicate(op) ? TIDE_BOOL : cd, res, nd, shape, 2, ins) == 0)
    rc = tide_pw_finish(&pa, be->binary->binary(op, cd, nd, shape, pa.target->data, pa.stride[0], pa.in[0]->data,
                                                pa.stride[1], pa.in[1]->data, pa.stride[2]));
  if (!dst) {
    if (rc == 0) *out = res;
    else tide_tensor_release(res);
  }
done:
  tide_tensor_release(ca);
  tide_tensor_release(cb);
  return rc;
}

/* Checks the op code, writes the op's name (with a trailing _ for in-place
   forms) and finds the backend for the n operands ts. */
static inline const tide_backend *binary_start(int32_t op, int inplace, int32_t n, const tide_tensor *const *ts,
                                        int32_t *dev, const char **name) {
  if (op < 0 || op >= TIDE_NUM_BINARY) {
    tide_fail("binary op: invalid op code %d", op);
    return NULL;
  }
  *name = bin_names[inplace][op];
  const tide_backend *be = tide_pw_backend(*name, n, ts, dev);
  if (be && (!be->binary || !be->binary->binary || !be->binary->find_zero_or_negative)) {
    tide_not_implemented(*name, be);
    return NULL;
  }
  return be;
}

int tide_binary(int32_t op, const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  const char *name = NULL;
  int32_t dev;
  const tide_tensor *ts[2] = {a, b};
  const tide_backend *be = binary_start(op, 0, 2, ts, &dev, &name);
  if (!be) return -1;
  return binary_core(be, dev, op, a, b, tide_pw_result_type(a, b), NULL, out, name);
}

/* The result is computed in the promoted dtype, then stored into a's dtype. */
int tide_binary_(int32_t op, tide_tensor *a, const tide_tensor *b) {
  const char *name = NULL;
  int32_t dev;
  const tide_tensor *ts[2] = {a, b};
  const tide_backend *be = binary_start(op, 1, 2, ts, &dev, &name);
  if (!be) return -1;
  tide_bump_version(a);
  return binary_core(be, dev, op, a, b, tide_pw_result_type(a, b), a, NULL, name);
}

/* The scalar becomes a 0-d tensor of the compute dtype, which the kernels
   read with stride 0, so scalar forms share the tensor loops' fast paths. */
static int binary_scalar(const tide_backend *be, int32_t dev, int32_t op, tide_tensor *a, double s, int scalar_first,
                         tide_tensor *dst, tide_tensor **out, const char *name) {
  int32_t p = pw_scalar_result(a->dtype, s), od, cd;
  binary_types(op, p, &od, &cd);
  scalar_tensor sc;
  tide_tensor *st = scalar_init(&sc, cd, s);
  if (dev == TIDE_CPU)
    return scalar_first ? binary_core(be, dev, op, st, a, p, dst, out, name)
                        : binary_core(be, dev, op, a, st, p, dst, out, name);
  /* A kernel on another device cannot read the stack: the scalar becomes a 0-d tensor there,
     filled with the value scalar_init settled on (exact in a double for every compute dtype,
     so the fill stores the same bits, wrapped integers included). */
  double v;
  switch (cd) {
    case TIDE_F32: v = sc.v.f32; break;
    case TIDE_F64: v = sc.v.f64; break;
    case TIDE_I32: v = sc.v.i32; break;
    case TIDE_I64: v = (double)sc.v.i64; break;
    default: v = sc.v.u8; break;
  }
  tide_tensor *ds = NULL;
  TIDE_TRY(tide_full(cd, 0, NULL, v, dev, &ds));
  int rc = scalar_first ? binary_core(be, dev, op, ds, a, p, dst, out, name)
                        : binary_core(be, dev, op, a, ds, p, dst, out, name);
  tide_tensor_release(ds);
  return rc;
}

int tide_binary_scalar(int32_t op, const tide_tensor *a, double s, int32_t scalar_first, tide_tensor **out) {
  const char *name = NULL;
  int32_t dev;
  const tide_tensor *ts[1] = {a};
  const tide_backend *be = binary_start(op, 0, 1, ts, &dev, &name);
  if (!be) return -1;
  return binary_scalar(be, dev, op, (tide_tensor *)a, s, scalar_first, NULL, out, name);
}

int tide_binary_scalar_(int32_t op, tide_tensor *a, double s) {
  const char *name = NULL;
  int32_t dev;
  const tide_tensor *ts[1] = {a};
  const tide_backend *be = binary_start(op, 1, 1, ts, &dev, &name);
  if (!be) return -1;
  tide_bump_version(a);
  return binary_scalar(be, dev, op, a, s, 0, a, NULL, name);
}

int tide_where(const tide_tensor *cond, const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  int32_t dev;
  const tide_tensor *ts[3] = {cond, a, b};
  const tide_backend *be = tide_pw_backend("where", 3, ts, &dev);
  if (!be) return -1;
  if (!be->binary || !be->binary->where) return tide_not_implemented("where", be);
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
  if (!(res = tide_new_on(dev, od, nd, shape))) goto done;
  const tide_tensor *ins[3] = {cc, ca, cb};
  tide_pw_args pa;
  if (tide_pw_prepare(&pa, od, res, nd, shape, 3, ins) == 0)
    rc = tide_pw_finish(&pa, be->binary->where(od, nd, shape, pa.target->data, pa.stride[0], pa.in[0]->data,
                                               pa.stride[1], pa.in[1]->data, pa.stride[2], pa.in[2]->data,
                                               pa.stride[3]));
  if (rc == 0) *out = res;
  else tide_tensor_release(res);
done:
  tide_tensor_release(cc);
  tide_tensor_release(ca);
  tide_tensor_release(cb);
  return rc;
}
