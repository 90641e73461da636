/* Layer norm's op layer: checks, the compute dtype (f64 stays, the f32
   family computes in f32 copies and returns its own dtype), contiguous
   operands and results on the operands' device, then the backend's kernel
   (kernels/nn_norm.h). */
#include "dispatch.h"
#include "nn_norm.h"
#include <string.h>

/* t (NULL or a handle tide_op_device has checked) is a float tensor. */
static int need_float(const tide_tensor *t, const char *op, const char *name) {
  if (!t) return tide_fail("%s: %s is NULL (expected a tensor)", op, name);
  if (!tide_is_float(t->dtype))
    return tide_fail("%s: %s must be a float tensor (f32, f64, bf16 or f16), got %s", op, name, tide_dtype_name(t->dtype));
  return 0;
}

/* weight / bias: 1-d of size C. */
static int need_affine(const tide_tensor *t, int64_t C, const char *op, const char *name) {
  TIDE_TRY(need_float(t, op, name));
  if (t->ndim != 1 || t->shape[0] != C) {
    char b[160];
    return tide_fail("%s: %s must have shape [%lld] (the size of the last dimension of x), got %s", op, name,
                     (long long)C, tide_shape_str(b, sizeof b, t->ndim, t->shape));
  }
  return 0;
}

/* A float dtype's compute dtype: f64 stays, the f32 family computes in f32. */
static int32_t compute_dtype(int32_t dt) { return dt == TIDE_F64 ? TIDE_F64 : TIDE_F32; }

/* t converted to dtype dt (t is released), or t itself when it already is. */
static tide_tensor *to_dtype(tide_tensor *t, int32_t dt) {
  if (!t || t->dtype == dt) return t;
  tide_tensor *r = tide_contiguous_as(t, dt);
  tide_tensor_release(t);
  return r;
}

static const void *data_or_null(const tide_tensor *t) { return t ? t->data : NULL; }

/* mean and rstd may be NULL when not wanted (inference). */
int tide_layer_norm(const tide_tensor *x, const tide_tensor *weight, const tide_tensor *bias, double eps,
                    tide_tensor **out, tide_tensor **mean, tide_tensor **rstd) {
  const char *op = "layer_norm";
  const tide_tensor *ts[3] = {x, weight, bias};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, norm, op, 3, ts);
  TIDE_TRY(need_float(x, op, "x"));
  if (!out) return tide_fail("%s: out is NULL", op);
  if (x->ndim < 1) return tide_fail("%s: x must have at least 1 dimension (normalised over the last), got a 0-d tensor", op);
  if (!(eps >= 0) || isinf(eps)) return tide_fail("%s: eps must be finite and >= 0, got %g", op, eps);
  int64_t C = x->shape[x->ndim - 1], rows = 1;
  for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  if (weight) TIDE_TRY(need_affine(weight, C, op, "weight"));
  if (bias) TIDE_TRY(need_affine(bias, C, op, "bias"));
  if (!be->norm->layernorm_forward) return tide_not_implemented(op, be);
  int32_t cd = compute_dtype(x->dtype), sd = cd;
  tide_tensor *xc = tide_contiguous_as(x, cd), *wc = NULL, *bc = NULL, *y = NULL, *mt = NULL, *rt = NULL;
  int rc = -1;
  if (!xc) return -1;
  if (weight && !(wc = tide_contiguous_as(weight, cd))) goto done;
  if (bias && !(bc = tide_contiguous_as(bias, cd))) goto done;
  if (!(y = tide_new_on(dev, cd, x->ndim, x->shape))) goto done;
  if (!(mt = tide_new_on(dev, TIDE_F64, x->ndim - 1, x->shape)) || !(rt = tide_new_on(dev, TIDE_F64, x->ndim - 1, x->shape)))
    goto done;
  if (be->norm->layernorm_forward(y->data, (double *)mt->data, (double *)rt->data, xc->data, data_or_null(wc),
                                  data_or_null(bc), rows, C, eps, cd))
    goto done;
  if (!(y = to_dtype(y, x->dtype)) || !(mt = to_dtype(mt, sd)) || !(rt = to_dtype(rt, sd))) goto done;
  *out = y;
  y = NULL;
  if (mean) { *mean = mt; mt = NULL; }
  if (rstd) { *rstd = rt; rt = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(wc);
  tide_tensor_release(bc);
  tide_tensor_release(y);
  tide_tensor_release(mt);
  tide_tensor_release(rt);
  return rc;
}

/* dweight is computed when both weight and dweight are given (else *dweight is
   set to NULL); dbias whenever dbias is given, in weight's dtype (x's when
   there is no weight). dx has x's dtype. */
int tide_layer_norm_backward(const tide_tensor *dout, const tide_tensor *x, const tide_tensor *weight,
                             const tide_tensor *mean, const tide_tensor *rstd,
                             tide_tensor **dx, tide_tensor **dweight, tide_tensor **dbias) {
  const char *op = "layer_norm_backward";
  const tide_tensor *ts[5] = {dout, x, weight, mean, rstd};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, norm, op, 5, ts);
  TIDE_TRY(need_float(dout, op, "dout"));
  TIDE_TRY(need_float(x, op, "x"));
  TIDE_TRY(need_float(mean, op, "mean"));
  TIDE_TRY(need_float(rstd, op, "rstd"));
  if (!dx) return tide_fail("%s: dx is NULL", op);
  if (x->ndim < 1) return tide_fail("%s: x must have at least 1 dimension, got a 0-d tensor", op);
  char b1[160], b2[160], b3[160];
  if (dout->ndim != x->ndim || memcmp(dout->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
    return tide_fail("%s: dout of shape %s does not match x of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, x->ndim, x->shape));
  int64_t C = x->shape[x->ndim - 1], rows = 1;
  for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  if (mean->numel != rows || rstd->numel != rows)
    return tide_fail("%s: mean and rstd must hold one value per row of x (%lld rows for x of shape %s), got shapes %s and %s", op,
                     (long long)rows, tide_shape_str(b1, sizeof b1, x->ndim, x->shape),
                     tide_shape_str(b2, sizeof b2, mean->ndim, mean->shape), tide_shape_str(b3, sizeof b3, rstd->ndim, rstd->shape));
  if (weight) TIDE_TRY(need_affine(weight, C, op, "weight"));
  if (dweight) *dweight = NULL;
  if (dbias) *dbias = NULL;
  if (!be->norm->layernorm_backward) return tide_not_implemented(op, be);
  int want_w = weight && dweight, want_b = dbias != NULL;
  int32_t cd = compute_dtype(x->dtype == TIDE_F64 || dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32);
  int32_t pd = weight ? weight->dtype : x->dtype;
  tide_tensor *xc = NULL, *dyc = NULL, *wc = NULL, *mc = NULL, *rc_ = NULL, *g = NULL, *gw = NULL, *gb = NULL;
  int rc = -1;
  if (!(xc = tide_contiguous_as(x, cd)) || !(dyc = tide_contiguous_as(dout, cd))) goto done;
  if (weight && !(wc = tide_contiguous_as(weight, cd))) goto done;
  if (!(mc = tide_contiguous_as(mean, TIDE_F64)) || !(rc_ = tide_contiguous_as(rstd, TIDE_F64))) goto done;
  if (!(g = tide_new_on(dev, cd, x->ndim, x->shape))) goto done;
  if (want_w && !(gw = tide_new_on(dev, TIDE_F64, 1, &C))) goto done;
  if (want_b && !(gb = tide_new_on(dev, TIDE_F64, 1, &C))) goto done;
  if (be->norm->layernorm_backward(g->data, gw ? (double *)gw->data : NULL, gb ? (double *)gb->data : NULL, dyc->data,
                                   xc->data, data_or_null(wc), (const double *)mc->data, (const double *)rc_->data, rows,
                                   C, cd))
    goto done;
  if (want_w && !(gw = to_dtype(gw, pd))) goto done;
  if (want_b && !(gb = to_dtype(gb, pd))) goto done;
  if (!(g = to_dtype(g, x->dtype))) goto done;
  *dx = g;
  g = NULL;
  if (want_w) { *dweight = gw; gw = NULL; }
  if (want_b) { *dbias = gb; gb = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(dyc);
  tide_tensor_release(wc);
  tide_tensor_release(mc);
  tide_tensor_release(rc_);
  tide_tensor_release(g);
  tide_tensor_release(gw);
  tide_tensor_release(gb);
  return rc;
}
