/* Softmax and log_softmax's op layer: checks, the compute dtype (f64, else
   f32), a contiguous [outer, L, inner] operand and the result on the
   operands' device, then the backend's kernel (kernels/nn_softmax.h). */
#include "dispatch.h"
#include "nn_softmax.h"
#include <string.h>

/* t (NULL or a handle tide_op_device has checked) is a float tensor. */
static int need_float(const tide_tensor *t, const char *op, const char *name) {
  if (!t) return tide_fail("%s: %s is NULL (expected a tensor)", op, name);
  if (!tide_is_float(t->dtype))
    return tide_fail("%s: %s must be a float tensor (f32, f64, bf16 or f16), got %s", op, name, tide_dtype_name(t->dtype));
  return 0;
}

/* t converted to dtype dt (t is released), or t itself when it already is. */
static tide_tensor *to_dtype(tide_tensor *t, int32_t dt) {
  if (!t || t->dtype == dt) return t;
  tide_tensor *r = tide_contiguous_as(t, dt);
  tide_tensor_release(t);
  return r;
}

/* outer / L / inner sizes of t around dim (a 0-d tensor is one element). */
static void split_dims(const tide_tensor *t, int32_t dim, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  *len = t->ndim ? t->shape[dim] : 1;
  for (int32_t d = 0; d < dim && d < t->ndim; d++) *outer *= t->shape[d];
  for (int32_t d = dim + 1; d < t->ndim; d++) *inner *= t->shape[d];
}

int tide_softmax(const tide_tensor *x, int32_t dim, int32_t log, tide_tensor **out) {
  const char *op = log ? "log_softmax" : "softmax";
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, softmax, op, 1, &x);
  TIDE_TRY(need_float(x, op, "x"));
  TIDE_TRY(tide_check_dim(x, dim, op));
  if (!out) return tide_fail("%s: out is NULL", op);
  if (!be->softmax->softmax_forward) return tide_not_implemented(op, be);
  int32_t cd = x->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t outer, L, inner;
  split_dims(x, dim, &outer, &L, &inner);
  tide_tensor *xc = tide_contiguous_as(x, cd), *y = NULL;
  if (!xc) return -1;
  if (!(y = tide_new_on(dev, cd, x->ndim, x->shape))) {
    tide_tensor_release(xc);
    return -1;
  }
  int rc = x->numel > 0 ? be->softmax->softmax_forward(y->data, xc->data, outer, L, inner, log != 0, cd) : 0;
  tide_tensor_release(xc);
  if (rc || !(y = to_dtype(y, x->dtype))) {
    tide_tensor_release(y);
    return -1;
  }
  *out = y;
  return 0;
}

/* dx takes the dtype dout and out promote to. */
int tide_softmax_backward(const tide_tensor *dout, const tide_tensor *out, int32_t dim, int32_t log, tide_tensor **dx) {
  const char *op = log ? "log_softmax_backward" : "softmax_backward";
  const tide_tensor *ts[2] = {dout, out};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, softmax, op, 2, ts);
  TIDE_TRY(need_float(dout, op, "dout"));
  TIDE_TRY(need_float(out, op, "out"));
  TIDE_TRY(tide_check_dim(out, dim, op));
  if (!dx) return tide_fail("%s: dx is NULL", op);
  if (dout->ndim != out->ndim || memcmp(dout->shape, out->shape, sizeof(int64_t) * (size_t)out->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match out of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, out->ndim, out->shape));
  }
  if (!be->softmax->softmax_backward) return tide_not_implemented(op, be);
  int32_t rd = tide_promote_types(dout->dtype, out->dtype), cd = rd == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t outer, L, inner;
  split_dims(out, dim, &outer, &L, &inner);
  tide_tensor *dyc = tide_contiguous_as(dout, cd), *yc = NULL, *g = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if (!(yc = tide_contiguous_as(out, cd)) || !(g = tide_new_on(dev, cd, out->ndim, out->shape))) goto done;
  if (out->numel > 0 && be->softmax->softmax_backward(g->data, dyc->data, yc->data, outer, L, inner, log != 0, cd))
    goto done;
  if (!(g = to_dtype(g, rd))) goto done;
  *dx = g;
  g = NULL;
  rc = 0;
done:
  tide_tensor_release(dyc);
  tide_tensor_release(yc);
  tide_tensor_release(g);
  return rc;
}
