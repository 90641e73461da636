/* The optimizer's ops: the fused AdamW step (checks here, the arithmetic in
   the backend's adamw_step, whose comment in kernels/cpu/adamw.c spells out
   torch's operation order) and the norm of many tensors that gradient
   clipping takes. */
#include "dispatch.h"
#include "adamw.h"
#include "pointwise.h"
#include "device.h"
#include "dtype.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- the multi-tensor step ------------------------------------------------------------- */

/* An operand's byte range, with who it is (entry i, role r) and whether the op writes it. */
typedef struct {
  uintptr_t lo, hi;
  int32_t entry, role, written;
} span;

static int span_cmp(const void *a, const void *b) {
  uintptr_t x = ((const span *)a)->lo, y = ((const span *)b)->lo;
  return x < y ? -1 : x > y;
}

/* Fails when two of the m spans overlap and one of them is written (two read-only operands may
   share memory): sorted by start, a span overlaps an earlier one exactly when that one ends past
   its start, so the furthest-reaching earlier span (and written span) settle it in O(m log m). */
static int check_disjoint(const char *op, span *s, int64_t m, const char *const *role) {
  qsort(s, (size_t)m, sizeof *s, span_cmp);
  int64_t all = -1, wr = -1;  /* the earlier spans reaching furthest: any, and written */
  for (int64_t k = 0; k < m; k++) {
    int64_t hit = -1;
    if (all >= 0 && s[all].hi > s[k].lo && (s[k].written || s[all].written)) hit = all;
    else if (wr >= 0 && s[wr].hi > s[k].lo) hit = wr;
    if (hit >= 0)
      return tide_fail("%s: %s %d and %s %d share memory; each tensor the op writes needs its own storage", op,
                       role[s[hit].role], s[hit].entry + 1, role[s[k].role], s[k].entry + 1);
    if (all < 0 || s[k].hi > s[all].hi) all = k;
    if (s[k].written && (wr < 0 || s[k].hi > s[wr].hi)) wr = k;
  }
  return 0;
}

static int same_shape(const tide_tensor *a, const tide_tensor *b) {
  return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

static int all_contiguous(const tide_tensor *p, const tide_tensor *g, const tide_tensor *m, const tide_tensor *v) {
  return tide_is_contiguous(p) && tide_is_contiguous(g) && tide_is_contiguous(m) && tide_is_contiguous(v);
}

int tide_adamw_multi_step_(int32_t n, tide_tensor *const *params, const tide_tensor *const *grads,
                           tide_tensor *const *exp_avgs, tide_tensor *const *exp_avg_sqs, tide_tensor *const *shadows,
                           const int64_t *steps, double lr, double beta1, double beta2, double eps, double weight_decay) {
  static const char *const role[5] = {"param", "grad", "exp_avg", "exp_avg_sq", "shadow"};
  const char *op = "adamw_multi_step_";
  if (n < 0) return tide_fail("%s: n must be >= 0, got %d", op, n);
  if (n > 0 && (!params || !grads || !exp_avgs || !exp_avg_sqs || !steps))
    return tide_fail("%s: params, grads, exp_avgs, exp_avg_sqs and steps must be arrays of n = %d entries", op, n);
  if (!(lr >= 0) || !isfinite(lr)) return tide_fail("%s: invalid learning rate %g (expected a finite lr >= 0)", op, lr);
  if (!(beta1 >= 0 && beta1 < 1)) return tide_fail("%s: invalid beta1 %g (expected 0 <= beta1 < 1)", op, beta1);
  if (!(beta2 >= 0 && beta2 < 1)) return tide_fail("%s: invalid beta2 %g (expected 0 <= beta2 < 1)", op, beta2);
  if (!(eps >= 0) || !isfinite(eps)) return tide_fail("%s: invalid eps %g (expected a finite eps >= 0)", op, eps);
  if (!(weight_decay >= 0) || !isfinite(weight_decay))
    return tide_fail("%s: invalid weight_decay %g (expected a finite value >= 0)", op, weight_decay);
  if (n == 0) return 0;
  char what[64], a[160], b[160], da[32], db[32];
  for (int32_t i = 0; i < n; i++) {
    const tide_tensor *ts[5] = {params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], shadows ? shadows[i] : NULL};
    for (int r = 0; r < 5; r++) {
      if (r == 4 && !ts[r]) continue;
      snprintf(what, sizeof what, "%s (%s %d)", op, role[r], i + 1);
      TIDE_TRY(tide_check_handle(ts[r], what));
      if (ts[r]->device != params[0]->device) {
        tide_device_name(ts[r]->device, da, sizeof da);
        tide_device_name(params[0]->device, db, sizeof db);
        return tide_fail("%s: %s %d is on %s but param 1 is on %s; all tensors must be on one device", op, role[r],
                         i + 1, da, db);
      }
    }
  }
  int32_t dev = params[0]->device, dt = params[0]->dtype;
  const tide_backend *be = tide_backend_for(dev, op);
  if (!be) return -1;
  if (!be->adamw || !be->adamw->adamw_multi_step || !be->adamw->adamw_step) return tide_not_implemented(op, be);
  if (dt != TIDE_F32 && dt != TIDE_F64)
    return tide_fail("%s: param 1 has dtype %s; the fused AdamW step supports f32 and f64 parameters", op,
                     tide_dtype_name(dt));
  for (int32_t i = 0; i < n; i++) {
    const tide_tensor *p = params[i], *ts[4] = {params[i], grads[i], exp_avgs[i], exp_avg_sqs[i]};
    if (p->dtype != dt)
      return tide_fail("%s: param %d has dtype %s but param 1 has dtype %s; one call updates one dtype (group the "
                       "parameters by dtype)", op, i + 1, tide_dtype_name(p->dtype), tide_dtype_name(dt));
    for (int r = 1; r < 4; r++) {
      if (ts[r]->dtype != dt)
        return tide_fail("%s: %s %d has dtype %s but param %d has dtype %s; they must match", op, role[r], i + 1,
                         tide_dtype_name(ts[r]->dtype), i + 1, tide_dtype_name(dt));
      if (!same_shape(ts[r], p))
        return tide_fail("%s: %s %d has shape %s but param %d has shape %s; they must match", op, role[r], i + 1,
                         tide_shape_str(a, sizeof a, ts[r]->ndim, ts[r]->shape), i + 1,
                         tide_shape_str(b, sizeof b, p->ndim, p->shape));
    }
    const tide_tensor *sh = shadows ? shadows[i] : NULL;
    if (sh && sh->dtype != TIDE_BF16)
      return tide_fail("%s: shadow %d has dtype %s; a shadow is the bf16 copy of its parameter", op, i + 1,
                       tide_dtype_name(sh->dtype));
    if (sh && !same_shape(sh, p))
      return tide_fail("%s: shadow %d has shape %s but param %d has shape %s; they must match", op, i + 1,
                       tide_shape_str(a, sizeof a, sh->ndim, sh->shape), i + 1, tide_shape_str(b, sizeof b, p->ndim, p->shape));
    if (steps[i] < 1)
      return tide_fail("%s: step %d is %lld; it must be >= 1 (the count after this update)", op, i + 1, (long long)steps[i]);
    const tide_tensor *w[4] = {params[i], exp_avgs[i], exp_avg_sqs[i], sh};
    static const int wrole[4] = {0, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
      if (!w[k]) continue;
      snprintf(what, sizeof what, "%s (%s %d)", op, role[wrole[k]], i + 1);
      TIDE_TRY(tide_pw_check_writable(w[k], what));
    }
  }
  /* each element reads its entry's operands before writing them; an operand shared with another
     would see (or make) new values mid-step */
  span *sp = malloc(sizeof(span) * (size_t)n * 5);
  tide_adamw_entry *es = malloc(sizeof(tide_adamw_entry) * (size_t)n);
  if (!sp || !es) {
    free(sp);
    free(es);
    return tide_fail("%s: out of memory for %d tensors", op, n);
  }
  int64_t m = 0;
  for (int32_t i = 0; i < n; i++) {
    const tide_tensor *ts[5] = {params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], shadows ? shadows[i] : NULL};
    for (int r = 0; r < 5; r++) {
      if (!ts[r] || ts[r]->numel == 0) continue;
      extent(ts[r], &sp[m].lo, &sp[m].hi);
      sp[m].entry = i, sp[m].role = r, sp[m].written = r != 1;
      m++;
    }
  }
  int rc = check_disjoint(op, sp, m, role);
  free(sp);
  if (rc) {
    free(es);
    return -1;
  }
  /* contiguous entries go through the multi-tensor kernel; others (views) through the strided
     single-tensor kernel, and a shadow that is not contiguous is cast into afterwards */
  int32_t ne = 0;
  for (int32_t i = 0; i < n; i++) {
    tide_tensor *sh = shadows ? shadows[i] : NULL;
    tide_bump_version(params[i]);
    tide_bump_version(exp_avgs[i]);
    tide_bump_version(exp_avg_sqs[i]);
    if (sh) tide_bump_version(sh);
    if (params[i]->numel == 0 || !all_contiguous(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i])) continue;
    es[ne++] = (tide_adamw_entry){params[i]->data, grads[i]->data, exp_avgs[i]->data, exp_avg_sqs[i]->data,
                                  sh && tide_is_contiguous(sh) ? sh->data : NULL, params[i]->numel, steps[i]};
  }
  rc = ne > 0 ? be->adamw->adamw_multi_step(ne, es, dt, lr, beta1, beta2, eps, weight_decay) : 0;
  free(es);
  for (int32_t i = 0; rc == 0 && i < n; i++) {
    tide_tensor *p = params[i], *mm = exp_avgs[i], *vv = exp_avg_sqs[i], *sh = shadows ? shadows[i] : NULL;
    const tide_tensor *g = grads[i];
    if (p->numel == 0) continue;
    int multi = all_contiguous(p, g, mm, vv);
    if (!multi)
      rc = be->adamw->adamw_step(p->data, g->data, mm->data, vv->data, dt, p->ndim, p->shape, p->stride, g->stride,
                                 mm->stride, vv->stride, lr, beta1, beta2, eps, weight_decay, steps[i]);
    if (rc == 0 && sh && (!multi || !tide_is_contiguous(sh))) rc = tide_copy_into(sh, p);
  }
  return rc;
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
  if (p == 2 && be->adamw->multi_norm2) {
    /* every tensor in one call (on CUDA a few launches, not two per tensor), read in place where
       it is a contiguous f32 or f64 tensor, else through a contiguous copy in its norm's dtype */
    tide_tensor **cs = calloc((size_t)n, sizeof *cs);
    const void **xs = malloc(sizeof(void *) * (size_t)n);
    int64_t *ns = malloc(sizeof(int64_t) * (size_t)n);
    int32_t *dts = malloc(sizeof(int32_t) * (size_t)n);
    int rc = (cs && xs && ns && dts) ? 0 : tide_fail("%s: out of memory for %d tensors", op, n);
    for (int32_t i = 0; rc == 0 && i < n; i++) {
      int32_t dt = ts[i]->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
      if (!(cs[i] = tide_contiguous_as(ts[i], dt))) rc = -1;
      else xs[i] = cs[i]->data, ns[i] = cs[i]->numel, dts[i] = dt;
    }
    if (rc == 0) rc = be->adamw->multi_norm2(res->data, total_dt, n, xs, ns, dts);
    for (int32_t i = 0; cs && i < n; i++) tide_tensor_release(cs[i]);
    free(cs);
    free(xs);
    free(ns);
    free(dts);
    if (rc) goto fail;
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

/* ---- clipping ------------------------------------------------------------------------------ */

int tide_clip_grads_(int32_t n, tide_tensor *const *ts, const tide_tensor *total, double max_norm) {
  static const char *const role[2] = {"tensor", "total"};
  const char *op = "clip_grads_";
  if (n < 0 || (n > 0 && !ts)) return tide_fail("%s: expected a list of tensors, got %d at %p", op, n, (const void *)ts);
  TIDE_TRY(tide_check_handle(total, "clip_grads_ (total)"));
  if (max_norm != max_norm) return tide_fail("%s: max_norm is NaN", op);
  if (total->ndim != 0) {
    char a[160];
    return tide_fail("%s: total must be a 0-d tensor (the total norm from multi_norm), got shape %s", op,
                     tide_shape_str(a, sizeof a, total->ndim, total->shape));
  }
  if (total->dtype != TIDE_F32 && total->dtype != TIDE_F64)
    return tide_fail("%s: total has dtype %s; expected f32 or f64 (the total norm from multi_norm)", op,
                     tide_dtype_name(total->dtype));
  char what[48], da[32], db[32];
  for (int32_t i = 0; i < n; i++) {
    snprintf(what, sizeof what, "%s (tensor %d)", op, i + 1);
    TIDE_TRY(tide_check_handle(ts[i], what));
    if (ts[i]->device != total->device) {
      tide_device_name(ts[i]->device, da, sizeof da);
      tide_device_name(total->device, db, sizeof db);
      return tide_fail("%s: tensor %d is on %s but the total norm is on %s; all tensors must be on one device", op,
                       i + 1, da, db);
    }
    if (!tide_is_float(ts[i]->dtype))
      return tide_fail("%s: tensor %d has dtype %s; gradients to clip must be floating point", op, i + 1,
                       tide_dtype_name(ts[i]->dtype));
    TIDE_TRY(tide_pw_check_writable(ts[i], what));
  }
  const tide_backend *be = tide_backend_for(total->device, op);
  if (!be) return -1;
  if (!be->adamw || !be->adamw->clip_scale) return tide_not_implemented(op, be);
  size_t cap = (size_t)(n > 0 ? n : 1);
  span *sp = malloc(sizeof(span) * (cap + 1));
  tide_tensor **cs = calloc(cap, sizeof *cs);
  void **xs = malloc(sizeof(void *) * cap);
  int64_t *ns = malloc(sizeof(int64_t) * cap);
  int32_t *dts = malloc(sizeof(int32_t) * cap);
  int rc = (sp && cs && xs && ns && dts) ? 0 : tide_fail("%s: out of memory for %d tensors", op, n);
  int64_t m = 0;
  for (int32_t i = 0; rc == 0 && i < n; i++) {
    if (ts[i]->numel == 0) continue;
    extent(ts[i], &sp[m].lo, &sp[m].hi);
    sp[m].entry = i, sp[m].role = 0, sp[m].written = 1;
    m++;
  }
  if (rc == 0) {
    extent(total, &sp[m].lo, &sp[m].hi);
    sp[m].entry = 0, sp[m].role = 1, sp[m].written = 0;
    rc = check_disjoint(op, sp, m + 1, role);
  }
  /* a view that is not contiguous is scaled through a contiguous copy, copied back after */
  for (int32_t i = 0; rc == 0 && i < n; i++) {
    tide_bump_version(ts[i]);
    if (!(cs[i] = tide_contiguous_as(ts[i], ts[i]->dtype))) rc = -1;
    else xs[i] = cs[i]->data, ns[i] = cs[i]->numel, dts[i] = ts[i]->dtype;
  }
  if (rc == 0) rc = be->adamw->clip_scale(n, xs, ns, dts, total->data, total->dtype, max_norm);
  for (int32_t i = 0; rc == 0 && i < n; i++)
    if (cs[i] != ts[i]) rc = tide_copy_into(ts[i], cs[i]);
  for (int32_t i = 0; cs && i < n; i++) tide_tensor_release(cs[i]);
  free(sp);
  free(cs);
  free(xs);
  free(ns);
  free(dts);
  return rc;
}
