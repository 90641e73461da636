/* The unary ops (tide_unary, tide_unary_, tide_clamp): result and compute
   dtypes, operand conversion and in-place targets; the backend's unary
   kernels (kernels/unary.h) compute. */
#include "pointwise.h"
#include "unary.h"
#include "nn_gelu.h"

/* op names for messages: [0] out of place, [1] in place (trailing _),
   spelled out so the success path formats nothing */
static const char *const un_names[2][TIDE_NUM_UNARY] = {
  {
    "neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu", "logical_not",
    "sin", "cos", "floor", "ceil", "round", "sign", "log1p", "expm1", "square", "reciprocal",
    "isnan", "isinf",
  },
  {
    "neg_", "abs_", "exp_", "log_", "sqrt_", "rsqrt_", "tanh_", "sigmoid_", "relu_", "gelu_",
    "logical_not_", "sin_", "cos_", "floor_", "ceil_", "round_", "sign_", "log1p_", "expm1_",
    "square_", "reciprocal_", "isnan_", "isinf_",
  },
};

/* Ops with no integer form: integer and bool inputs compute and return f32. */
static const uint8_t float_only[TIDE_NUM_UNARY] = {
  [TIDE_EXP] = 1, [TIDE_LOG] = 1, [TIDE_SQRT] = 1, [TIDE_RSQRT] = 1, [TIDE_TANH] = 1, [TIDE_SIGMOID] = 1,
  [TIDE_GELU] = 1, [TIDE_SIN] = 1, [TIDE_COS] = 1, [TIDE_LOG1P] = 1, [TIDE_EXPM1] = 1, [TIDE_RECIPROCAL] = 1,
};

/* bf16 GELU on a backend that computes it from bf16 directly (CUDA): no f32 copy of the input or the result. */
static int gelu_bf16(const tide_backend *be, const tide_tensor *a, tide_tensor *dst, tide_tensor **out, const char *name) {
  if (dst) TIDE_TRY(tide_pw_check_writable(dst, name));
  tide_tensor *res = dst ? dst : tide_new_on(a->device, TIDE_BF16, a->ndim, a->shape);
  if (!res) return -1;
  const tide_tensor *ins[1] = {a};
  tide_pw_args pa;
  int rc = -1;
  if (tide_pw_prepare(&pa, TIDE_BF16, res, a->ndim, a->shape, 1, ins) == 0)
    rc = tide_pw_finish(&pa, be->gelu->gelu_forward_bf16(a->ndim, a->shape, pa.target->data, pa.stride[0], pa.in[0]->data,
                                                         pa.stride[1]));
  if (!dst) {
    if (rc == 0) *out = res;
    else tide_tensor_release(res);
  }
  return rc;
}

/* Shared body of tide_unary and tide_unary_ (dst: the in-place target). */
static int unary_core(const tide_backend *be, int32_t op, const tide_tensor *a, tide_tensor *dst, tide_tensor **out,
                      const char *name) {
  if (op == TIDE_NEG && a->dtype == TIDE_BOOL)
    return tide_fail("%s: negating a bool tensor is not supported; use logical_not", name);
  int fo = float_only[op];
  int predicate = op == TIDE_NOT || op == TIDE_ISNAN || op == TIDE_ISINF;
  if (op == TIDE_GELU && a->dtype == TIDE_BF16 && (!dst || dst->dtype == TIDE_BF16) && be->gelu &&
      be->gelu->gelu_forward_bf16)
    return gelu_bf16(be, a, dst, out, name);
  int32_t cd = fo && !tide_is_float(a->dtype) ? TIDE_F32 : pw_compute_dtype(a->dtype);
  int32_t od = predicate ? TIDE_BOOL : fo && !tide_is_float(a->dtype) ? TIDE_F32 : a->dtype;
  if (dst) TIDE_TRY(tide_pw_check_writable(dst, name));
  tide_tensor *ca = tide_pw_operand(a, cd), *res = NULL;
  if (!ca) return -1;
  int rc = -1;
  if ((res = dst ? dst : tide_new_on(a->device, od, a->ndim, a->shape))) {
    const tide_tensor *ins[1] = {ca};
    tide_pw_args pa;
    if (tide_pw_prepare(&pa, predicate ? TIDE_BOOL : cd, res, a->ndim, a->shape, 1, ins) == 0)
      rc = tide_pw_finish(&pa, be->unary->unary(op, cd, a->ndim, a->shape, pa.target->data, pa.stride[0],
                                                pa.in[0]->data, pa.stride[1]));
    if (!dst) {
      if (rc == 0) *out = res;
      else tide_tensor_release(res);
    }
  }
  tide_tensor_release(ca);
  return rc;
}

/* Checks the op code, writes the op's name and finds the backend for a. */
static inline const tide_backend *unary_start(int32_t op, int inplace, const tide_tensor *a, const char **name) {
  if (op < 0 || op >= TIDE_NUM_UNARY) {
    tide_fail("unary op: invalid op code %d", op);
    return NULL;
  }
  *name = un_names[inplace][op];
  int32_t dev;
  const tide_tensor *ts[1] = {a};
  const tide_backend *be = tide_pw_backend(*name, 1, ts, &dev);
  if (be && (!be->unary || !be->unary->unary)) {
    tide_not_implemented(*name, be);
    return NULL;
  }
  return be;
}

int tide_unary(int32_t op, const tide_tensor *a, tide_tensor **out) {
  const char *name = NULL;
  const tide_backend *be = unary_start(op, 0, a, &name);
  if (!be) return -1;
  return unary_core(be, op, a, NULL, out, name);
}

/* Computed as tide_unary would, then stored into a's dtype. */
int tide_unary_(int32_t op, tide_tensor *a) {
  const char *name = NULL;
  const tide_backend *be = unary_start(op, 1, a, &name);
  if (!be) return -1;
  tide_bump_version(a);
  return unary_core(be, op, a, a, NULL, name);
}

/* The result dtype follows the bounds like a binary op with numbers: an
   integer tensor with a fractional bound gives f32. */
int tide_clamp(const tide_tensor *a, double lo, double hi, tide_tensor **out) {
  int32_t dev;
  const tide_backend *be = tide_pw_backend("clamp", 1, &a, &dev);
  if (!be) return -1;
  if (!be->unary || !be->unary->clamp) return tide_not_implemented("clamp", be);
  int32_t od = a->dtype;
  if (lo == lo) od = pw_scalar_result(od, lo);
  if (hi == hi) od = pw_scalar_result(od, hi);
  int32_t cd = pw_compute_dtype(od);
  tide_tensor *ca = tide_pw_operand(a, cd), *res = NULL;
  if (!ca) return -1;
  int rc = -1;
  if ((res = tide_new_on(dev, od, a->ndim, a->shape))) {
    const tide_tensor *ins[1] = {ca};
    tide_pw_args pa;
    if (tide_pw_prepare(&pa, cd, res, a->ndim, a->shape, 1, ins) == 0)
      rc = tide_pw_finish(&pa, be->unary->clamp(cd, a->ndim, a->shape, pa.target->data, pa.stride[0], pa.in[0]->data,
                                                pa.stride[1], lo, hi));
    if (rc == 0) *out = res;
    else tide_tensor_release(res);
  }
  tide_tensor_release(ca);
  return rc;
}
