/* Layer norm's op layer: checks, the compute dtype (f64 stays, the f32
   family computes in f32 copies and returns its own dtype; on a device the
   f32 family runs in its own dtype through the residual members), contiguous
   operands and results on the operands' device, then the backend's kernel
   (kernels/nn_norm.h). The residual op (x + r, then layer norm) always runs
   in its operands' dtype. */
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

static int residual_forward(const tide_backend *be, int32_t dev, const char *op, const tide_tensor *x,
                            const tide_tensor *r, const tide_tensor *weight, const tide_tensor *bias, double eps,
                            tide_tensor **s, tide_tensor **out, tide_tensor **mean, tide_tensor **rstd);
static int residual_backward(const tide_backend *be, int32_t dev, const char *op, const tide_tensor *ds,
                             const tide_tensor *dout, const tide_tensor *s, const tide_tensor *weight,
                             const tide_tensor *mean, const tide_tensor *rstd, tide_tensor **dx, tide_tensor **dweight,
                             tide_tensor **dbias);

/* On a device, the f32 family goes through the residual members in its own dtype (bf16 read and
   written as bf16, no f32 copies) when every operand shares it; the CPU keeps the f32 copies and
   f64 statistics of the first members, whose bits the models depend on. */
static int native_dtype(int32_t dev, const tide_tensor *x, const tide_tensor *a, const tide_tensor *b) {
  return dev != TIDE_CPU && x->dtype != TIDE_F64 && (!a || a->dtype == x->dtype) && (!b || b->dtype == x->dtype);
}

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
  if (native_dtype(dev, x, weight, bias) && be->norm->residual_layernorm_forward)
    return residual_forward(be, dev, op, x, NULL, weight, bias, eps, NULL, out, mean, rstd);
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
  if (native_dtype(dev, x, dout, weight) && mean->dtype == TIDE_F32 && rstd->dtype == TIDE_F32 &&
      be->norm->residual_layernorm_backward)
    return residual_backward(be, dev, op, NULL, dout, x, weight, mean, rstd, dx, dweight, dbias);
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

/* residual add + layer norm ------------------------------------------------------------ */

/* The dtype the statistics are kept in: f64 for f64, f32 for the f32 family. */
static int32_t stat_dtype(int32_t dt) { return dt == TIDE_F64 ? TIDE_F64 : TIDE_F32; }

/* t (not NULL) has ref's dtype, and ref's shape when same_shape. */
static int need_like(const tide_tensor *t, const tide_tensor *ref, int same_shape, const char *op, const char *name,
                     const char *ref_name) {
  if (t->dtype != ref->dtype)
    return tide_fail("%s: %s has dtype %s but %s has %s (expected the same dtype)", op, name, tide_dtype_name(t->dtype),
                     ref_name, tide_dtype_name(ref->dtype));
  if (same_shape && (t->ndim != ref->ndim || memcmp(t->shape, ref->shape, sizeof(int64_t) * (size_t)ref->ndim))) {
    char b1[160], b2[160];
    return tide_fail("%s: %s of shape %s does not match %s of shape %s", op, name,
                     tide_shape_str(b1, sizeof b1, t->ndim, t->shape), ref_name,
                     tide_shape_str(b2, sizeof b2, ref->ndim, ref->shape));
  }
  return 0;
}

/* The forward through the residual member in x's own dtype; r may be NULL (then *s stays NULL). */
static int residual_forward(const tide_backend *be, int32_t dev, const char *op, const tide_tensor *x,
                            const tide_tensor *r, const tide_tensor *weight, const tide_tensor *bias, double eps,
                            tide_tensor **s, tide_tensor **out, tide_tensor **mean, tide_tensor **rstd) {
  int64_t C = x->shape[x->ndim - 1], rows = 1;
  for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  int32_t dt = x->dtype, sd = stat_dtype(dt);
  tide_tensor *xc = NULL, *rc_ = NULL, *wc = NULL, *bc = NULL, *st = NULL, *y = NULL, *mt = NULL, *rt = NULL;
  int rc = -1;
  if (!(xc = tide_contiguous_as(x, dt))) goto done;
  if (r && !(rc_ = tide_contiguous_as(r, dt))) goto done;
  if (weight && !(wc = tide_contiguous_as(weight, dt))) goto done;
  if (bias && !(bc = tide_contiguous_as(bias, dt))) goto done;
  if (r && !(st = tide_new_on(dev, dt, x->ndim, x->shape))) goto done;
  if (!(y = tide_new_on(dev, dt, x->ndim, x->shape))) goto done;
  if (!(mt = tide_new_on(dev, sd, x->ndim - 1, x->shape)) || !(rt = tide_new_on(dev, sd, x->ndim - 1, x->shape))) goto done;
  if (be->norm->residual_layernorm_forward(st ? st->data : NULL, y->data, mt->data, rt->data, xc->data,
                                           rc_ ? rc_->data : NULL, data_or_null(wc), data_or_null(bc), rows, C, eps, dt))
    goto done;
  if (s) { *s = st; st = NULL; }
  *out = y;
  y = NULL;
  if (mean) { *mean = mt; mt = NULL; }
  if (rstd) { *rstd = rt; rt = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(rc_);
  tide_tensor_release(wc);
  tide_tensor_release(bc);
  tide_tensor_release(st);
  tide_tensor_release(y);
  tide_tensor_release(mt);
  tide_tensor_release(rt);
  return rc;
}

int tide_residual_layer_norm(const tide_tensor *x, const tide_tensor *r, const tide_tensor *weight, const tide_tensor *bias,
                             double eps, tide_tensor **s, tide_tensor **out, tide_tensor **mean, tide_tensor **rstd) {
  const char *op = "residual_layer_norm";
  const tide_tensor *ts[4] = {x, r, weight, bias};
  const tide_backend *be;
  int32_t dev;
  if (s) *s = NULL;
  TIDE_OP_BACKEND(be, dev, norm, op, 4, ts);
  TIDE_TRY(need_float(x, op, "x"));
  if (!out) return tide_fail("%s: out is NULL", op);
  if (r && !s) return tide_fail("%s: s is NULL (r is given, so x + r is returned)", op);
  if (x->ndim < 1) return tide_fail("%s: x must have at least 1 dimension (normalised over the last), got a 0-d tensor", op);
  if (!(eps >= 0) || isinf(eps)) return tide_fail("%s: eps must be finite and >= 0, got %g", op, eps);
  int64_t C = x->shape[x->ndim - 1];
  if (r) TIDE_TRY(need_like(r, x, 1, op, "r", "x"));
  if (weight) {
    TIDE_TRY(need_affine(weight, C, op, "weight"));
    TIDE_TRY(need_like(weight, x, 0, op, "weight", "x"));
  }
  if (bias) {
    TIDE_TRY(need_affine(bias, C, op, "bias"));
    TIDE_TRY(need_like(bias, x, 0, op, "bias", "x"));
  }
  if (!be->norm->residual_layernorm_forward) return tide_not_implemented(op, be);
  return residual_forward(be, dev, op, x, r, weight, bias, eps, s, out, mean, rstd);
}

/* The backward through the residual member; every operand checked, dout not NULL. */
static int residual_backward(const tide_backend *be, int32_t dev, const char *op, const tide_tensor *ds,
                             const tide_tensor *dout, const tide_tensor *s, const tide_tensor *weight,
                             const tide_tensor *mean, const tide_tensor *rstd, tide_tensor **dx, tide_tensor **dweight,
                             tide_tensor **dbias) {
  int64_t C = s->shape[s->ndim - 1], rows = 1;
  for (int32_t d = 0; d < s->ndim - 1; d++) rows *= s->shape[d];
  int32_t dt = s->dtype, sd = stat_dtype(dt);
  int want_w = weight && dweight, want_b = dbias != NULL;
  tide_tensor *sc = NULL, *dsc = NULL, *dyc = NULL, *wc = NULL, *mc = NULL, *rc_ = NULL, *g = NULL, *gw = NULL, *gb = NULL;
  int rc = -1;
  if (!(sc = tide_contiguous_as(s, dt)) || !(dyc = tide_contiguous_as(dout, dt))) goto done;
  if (ds && !(dsc = tide_contiguous_as(ds, dt))) goto done;
  if (weight && !(wc = tide_contiguous_as(weight, dt))) goto done;
  if (!(mc = tide_contiguous_as(mean, sd)) || !(rc_ = tide_contiguous_as(rstd, sd))) goto done;
  if (!(g = tide_new_on(dev, dt, s->ndim, s->shape))) goto done;
  if (want_w && !(gw = tide_new_on(dev, dt, 1, &C))) goto done;
  if (want_b && !(gb = tide_new_on(dev, dt, 1, &C))) goto done;
  if (be->norm->residual_layernorm_backward(g->data, gw ? gw->data : NULL, gb ? gb->data : NULL, dsc ? dsc->data : NULL,
                                            dyc->data, sc->data, data_or_null(wc), mc->data, rc_->data, rows, C, dt))
    goto done;
  *dx = g;
  g = NULL;
  if (want_w) { *dweight = gw; gw = NULL; }
  if (want_b) { *dbias = gb; gb = NULL; }
  rc = 0;
done:
  tide_tensor_release(sc);
  tide_tensor_release(dsc);
  tide_tensor_release(dyc);
  tide_tensor_release(wc);
  tide_tensor_release(mc);
  tide_tensor_release(rc_);
  tide_tensor_release(g);
  tide_tensor_release(gw);
  tide_tensor_release(gb);
  return rc;
}

/* With dout NULL, *dx is ds itself (a new reference: the gradient of s passes to x and r unchanged)
   and dweight/dbias are NULL. */
int tide_residual_layer_norm_backward(const tide_tensor *ds, const tide_tensor *dout, const tide_tensor *s,
                                      const tide_tensor *weight, const tide_tensor *mean, const tide_tensor *rstd,
                                      tide_tensor **dx, tide_tensor **dweight, tide_tensor **dbias) {
  const char *op = "residual_layer_norm_backward";
  const tide_tensor *ts[6] = {ds, dout, s, weight, mean, rstd};
  const tide_backend *be;
  int32_t dev;
  if (dweight) *dweight = NULL;
  if (dbias) *dbias = NULL;
  TIDE_OP_BACKEND(be, dev, norm, op, 6, ts);
  if (!dx) return tide_fail("%s: dx is NULL", op);
  TIDE_TRY(need_float(s, op, "s"));
  if (s->ndim < 1) return tide_fail("%s: s must have at least 1 dimension, got a 0-d tensor", op);
  if (!ds && !dout) return tide_fail("%s: ds and dout are both NULL (expected the gradient of s, of out, or both)", op);
  if (ds) TIDE_TRY(need_like(ds, s, 1, op, "ds", "s"));
  if (!dout) {
    tide_tensor_retain((tide_tensor *)ds);
    *dx = (tide_tensor *)ds;
    return 0;
  }
  TIDE_TRY(need_like(dout, s, 1, op, "dout", "s"));
  TIDE_TRY(need_float(mean, op, "mean"));
  TIDE_TRY(need_float(rstd, op, "rstd"));
  int64_t C = s->shape[s->ndim - 1], rows = 1;
  for (int32_t d = 0; d < s->ndim - 1; d++) rows *= s->shape[d];
  char b1[160], b2[160], b3[160];
  if (mean->numel != rows || rstd->numel != rows)
    return tide_fail("%s: mean and rstd must hold one value per row of s (%lld rows for s of shape %s), got shapes %s and %s",
                     op, (long long)rows, tide_shape_str(b1, sizeof b1, s->ndim, s->shape),
                     tide_shape_str(b2, sizeof b2, mean->ndim, mean->shape),
                     tide_shape_str(b3, sizeof b3, rstd->ndim, rstd->shape));
  int32_t sd = stat_dtype(s->dtype);
  if (mean->dtype != sd || rstd->dtype != sd)
    return tide_fail("%s: mean and rstd must be %s for s of dtype %s (as residual_layer_norm returns them), got %s and %s",
                     op, tide_dtype_name(sd), tide_dtype_name(s->dtype), tide_dtype_name(mean->dtype),
                     tide_dtype_name(rstd->dtype));
  if (weight) {
    TIDE_TRY(need_affine(weight, C, op, "weight"));
    TIDE_TRY(need_like(weight, s, 0, op, "weight", "s"));
  }
  if (!be->norm->residual_layernorm_backward) return tide_not_implemented(op, be);
  return residual_backward(be, dev, op, ds, dout, s, weight, mean, rstd, dx, dweight, dbias);
}
