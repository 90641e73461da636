/* The optimizer's ops: the fused AdamW step (checks here, the arithmetic in
   the backend's adamw_step, whose comment in kernels/cpu/adamw.c spells out
   torch's operation order) and the norm of many tensors that gradient
   clipping takes. */
#include "dispatch.h"
#include "adamw.h"
#include "pointwise.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Byte range [lo, hi) that t's elements occupy; empty when t has none. */
static void extent(const tide_tensor *t, uintptr_t *lo, uintptr_t *hi) {
  int64_t es = tide_dtype_size(t->dtype), a = 0, b = 0;
  if (t->numel == 0) { *lo = *hi = 0; return; }
  for (int32_t i = 0; i < t->ndim; i++) {
    int64_t span = (t->shape[i] - 1) * t->stride[i];
    if (span < 0) a += span; else b += span;
  }
  *lo = (uintptr_t)(t->data + a * es);
  *hi = (uintptr_t)(t->data + (b + 1) * es);
}

int tide_adamw_step_(tide_tensor *param, const tide_tensor *grad, tide_tensor *exp_avg, tide_tensor *exp_avg_sq,
                     double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  static const char *const names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  const tide_tensor *ts[4] = {param, grad, exp_avg, exp_avg_sq};
  char what[48];
  for (int k = 0; k < 4; k++) {
    snprintf(what, sizeof what, "adamw_step_ (%s)", names[k]);
    TIDE_TRY(tide_check_handle(ts[k], what));
  }
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, adamw, "adamw_step_", 4, ts);
  tide_bump_version(param);
  tide_bump_version(exp_avg);
  tide_bump_version(exp_avg_sq);
  int32_t dt = param->dtype;
  if (dt != TIDE_F32 && dt != TIDE_F64)
    return tide_fail("adamw_step_: param has dtype %s; the fused AdamW step supports f32 and f64 parameters",
                     tide_dtype_name(dt));
  for (int k = 1; k < 4; k++) {
    if (ts[k]->dtype != dt)
      return tide_fail("adamw_step_: %s has dtype %s but param has dtype %s; they must match",
                       names[k], tide_dtype_name(ts[k]->dtype), tide_dtype_name(dt));
    if (ts[k]->ndim != param->ndim || memcmp(ts[k]->shape, param->shape, sizeof(int64_t) * (size_t)param->ndim)) {
      char a[160], b[160];
      return tide_fail("adamw_step_: %s has shape %s but param has shape %s; they must match", names[k],
                       tide_shape_str(a, sizeof a, ts[k]->ndim, ts[k]->shape),
                       tide_shape_str(b, sizeof b, param->ndim, param->shape));
    }
  }
  if (step < 1) return tide_fail("adamw_step_: step must be >= 1 (the count after this update), got %lld", (long long)step);
  if (!(lr >= 0) || !isfinite(lr)) return tide_fail("adamw_step_: invalid learning rate %g (expected a finite lr >= 0)", lr);
  if (!(beta1 >= 0 && beta1 < 1)) return tide_fail("adamw_step_: invalid beta1 %g (expected 0 <= beta1 < 1)", beta1);
  if (!(beta2 >= 0 && beta2 < 1)) return tide_fail("adamw_step_: invalid beta2 %g (expected 0 <= beta2 < 1)", beta2);
  if (!(eps >= 0) || !isfinite(eps)) return tide_fail("adamw_step_: invalid eps %g (expected a finite eps >= 0)", eps);
  if (!(weight_decay >= 0) || !isfinite(weight_decay))
    return tide_fail("adamw_step_: invalid weight_decay %g (expected a finite value >= 0)", weight_decay);
  TIDE_TRY(tide_pw_check_writable(param, "adamw_step_ (param)"));
  TIDE_TRY(tide_pw_check_writable(exp_avg, "adamw_step_ (exp_avg)"));
  TIDE_TRY(tide_pw_check_writable(exp_avg_sq, "adamw_step_ (exp_avg_sq)"));
  /* each element reads all four operands before writing three of them;
     overlapping operands would see each other's new values */
  uintptr_t lo[4], hi[4];
  for (int k = 0; k < 4; k++) extent(ts[k], &lo[k], &hi[k]);
  for (int a = 0; a < 4; a++)
    for (int b = a + 1; b < 4; b++)
      if (lo[a] < hi[b] && lo[b] < hi[a])
        return tide_fail("adamw_step_: %s and %s share memory; each needs its own storage", names[a], names[b]);
  if (param->numel == 0) return 0;
  if (!be->adamw->adamw_step) return tide_not_implemented("adamw_step_", be);
  return be->adamw->adamw_step(param->data, grad->data, exp_avg->data, exp_avg_sq->data, dt, param->ndim, param->shape,
                               param->stride, grad->stride, exp_avg->stride, exp_avg_sq->stride, lr, beta1, beta2, eps,
                               weight_decay, step);
}

/* ---- the norm of many tensors ------------------------------------------------------- */

/* Writes the p-norm of t into the 0-d dst (t's norm dtype: f64 for f64, else f32), as
   clip_grad_norm has always taken it: the 2-norm by the backend's norm2, the others through
   ops (abs/max/min, ne/sum, or |x|^p summed in f64 and its p-th root), rounded once to dst. */
static int norm_into(const tide_backend *be, const tide_tensor *t, double p, tide_tensor *dst) {
  int32_t dt = dst->dtype;
  tide_tensor *x = tide_contiguous_as(t, dt), *a = NULL, *r = NULL, *s = NULL;
  if (!x) return -1;
  int rc = -1;
  if (p == 2) {
    rc = be->adamw->norm2 ? be->adamw->norm2(dst->data, x->data, x->numel, dt) : tide_not_implemented("multi_norm", be);
    goto done;
  }
  if ((p == INFINITY || p == -INFINITY) && x->numel == 0) {
    rc = tide_fill_(dst, p == INFINITY ? 0.0 : INFINITY);
    goto done;
  }
  if (p == INFINITY || p == -INFINITY) {
    if (tide_unary(TIDE_ABS, x, &a) || tide_reduce(p > 0 ? TIDE_MAX : TIDE_MIN, a, -1, 0, &r, NULL)) goto done;
  } else if (p == 0) {
    if (tide_binary_scalar(TIDE_NE, x, 0.0, 0, &a) || tide_reduce(TIDE_SUM, a, -1, 0, &r, NULL)) goto done;
  } else {
    /* sum |x|^p in f64, then the p-th root (not bit-equal to torch) */
    tide_tensor *y = NULL;
    if (dt != TIDE_F64 && tide_cast(x, TIDE_F64, &y)) goto done;
    if (y) {
      tide_tensor_release(x);
      x = y;
    }
    if (tide_unary(TIDE_ABS, x, &a)) goto done;
    if (tide_binary_scalar(TIDE_POW, a, p, 0, &s)) goto done;
    tide_tensor_release(a);
    a = NULL;
    if (tide_reduce(TIDE_SUM, s, -1, 0, &a, NULL) || tide_binary_scalar(TIDE_POW, a, 1.0 / p, 0, &r)) goto done;
  }
  rc = tide_copy_into(dst, r);
done:
  tide_tensor_release(x);
  tide_tensor_release(a);
  tide_tensor_release(r);
  tide_tensor_release(s);
  return rc;
}

int tide_multi_norm(int32_t n, const tide_tensor *const *ts, double p, tide_tensor **out) {
  const char *op = "multi_norm";
  if (!out) return tide_fail("%s: out is NULL", op);
  if (n < 0 || (n > 0 && !ts)) return tide_fail("%s: expected a list of tensors, got %d at %p", op, n, (const void *)ts);
  if (p != p) return tide_fail("%s: the norm order is NaN", op);
  char what[48];
  for (int32_t i = 0; i < n; i++) {
    snprintf(what, sizeof what, "%s (tensor %d)", op, i + 1);
    TIDE_TRY(tide_check_handle(ts[i], what));
  }
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, adamw, op, n, ts);
  int32_t total_dt = TIDE_F32;
  for (int32_t i = 0; i < n; i++)
    if (ts[i]->dtype == TIDE_F64) total_dt = TIDE_F64;
  tide_tensor *res = tide_new_on(dev, total_dt, 0, NULL);
  if (!res) return -1;
  if (n == 0) {
    if (tide_fill_(res, 0.0)) goto fail;
    *out = res;
    return 0;
  }
  /* the per-tensor norms side by side, each rounded to its own dtype first */
  int64_t nn = n;
  tide_tensor *norms = tide_new_on(dev, total_dt, 1, &nn);
  if (!norms) goto fail;
  for (int32_t i = 0; i < n; i++) {
    int32_t dt = ts[i]->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
    tide_tensor *slot = tide_new_view(norms, 0, NULL, NULL, i), *tmp = NULL;
    int rc = -1;
    if (slot && dt == total_dt) rc = norm_into(be, ts[i], p, slot);
    else if (slot && (tmp = tide_new_on(dev, dt, 0, NULL))) rc = norm_into(be, ts[i], p, tmp) || tide_copy_into(slot, tmp);
    tide_tensor_release(slot);
    tide_tensor_release(tmp);
    if (rc) {
      tide_tensor_release(norms);
      goto fail;
    }
  }
  int rc = norm_into(be, norms, p, res);
  tide_tensor_release(norms);
  if (rc) goto fail;
  *out = res;
  return 0;
fail:
  tide_tensor_release(res);
  return -1;
}
