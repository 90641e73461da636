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
