/* Cross-entropy of logits [..., V] against 0-based class ids [...] (leading
   dims are flattened into N rows; the class dimension is the last one, as
   GPT-2's loss uses it), forward and backward, without a one-hot:
     lse_n  = max_n + log sum_v exp(x_nv - max_n)
     loss_n = lse_n - x_n,t_n, or 0 when t_n == ignore_index
     mean   = sum of loss_n / count of rows not ignored (NaN when all are, as PyTorch)
     dx_nv  = scale_n * (exp(x_nv - lse_n) - [v == t_n]), 0 on ignored rows,
   where scale_n is dloss (sum), dloss / count (mean) or dloss_n (none).
   Targets are checked before anything is computed: a value outside 0..V-1
   that is not ignore_index is an error naming it and V. f32 exps are
   vmath.h's vectorised tide_expf, summed in f32 in short runs and then in
   double; lse and the losses are formed in double and rounded once. lse is
   saved in f32 for the f32 family and f64 for f64. The backward works in
   the compute type, exp(x - lse) * scale, with the target's p - 1 formed
   before scaling. The reduction adds rows in order, so no result depends on
   the thread count. */
#include "iter.h"
#include "vmath.h"
#include <stdlib.h>
#include <string.h>

static inline double exp_f64(double v) { return exp(v); }

/* Terms per partial sum of the exps: each of 16 vector lanes adds 16 f32
   values (relative error below 1e-6) before the sum goes on in double. */
#define SUM_CHUNK 256

/* log-sum-exp of one row, and the backward of one row */
#define CE_KERNELS(T, SUF, EXP)                                                              \
  static double ce_lse_##SUF(const T *x, int64_t V) {                                        \
    T m = -INFINITY;                                                                         \
    _Pragma("omp simd reduction(max:m)")                                                     \
    for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;                                 \
    /* partial sums of SUM_CHUNK terms in T (vectorised, no conversions), then double */     \
    double s = 0;                                                                            \
    for (int64_t v0 = 0; v0 < V; v0 += SUM_CHUNK) {                                          \
      int64_t e = V - v0 < SUM_CHUNK ? V - v0 : SUM_CHUNK;                                   \
      T ps = 0;                                                                              \
      _Pragma("omp simd reduction(+:ps)")                                                    \
      for (int64_t v = v0; v < v0 + e; v++) ps += EXP(x[v] - m);                             \
      s += (double)ps;                                                                       \
    }                                                                                        \
    return (double)m + log(s);                                                               \
  }                                                                                          \
  static void ce_bwd_row_##SUF(const T *x, T *dx, int64_t V, double lse, double scale) {     \
    const T l = (T)lse, sc = (T)scale;                                                       \
    _Pragma("omp simd")                                                                      \
    for (int64_t v = 0; v < V; v++) dx[v] = EXP(x[v] - l) * sc;                              \
  }

CE_KERNELS(float, f32, tide_expf)
CE_KERNELS(double, f64, exp_f64)

static const char *reduction_name(int32_t r) { return r == TIDE_REDUCE_NONE ? "none" : r == TIDE_REDUCE_SUM ? "sum" : "mean"; }

/* Checks logits and targets; sets V and N and returns the targets as contiguous i64 (NULL on error). */
static tide_tensor *check_inputs(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index, int32_t reduction,
                                 int64_t *V, int64_t *N, const char *op) {
  if (!logits) { tide_fail("%s: logits is NULL (expected a tensor)", op); return NULL; }
  if (!targets) { tide_fail("%s: targets is NULL (expected a tensor)", op); return NULL; }
  if (tide_check_tensor(logits, op) || tide_check_tensor(targets, op)) return NULL;
  if (!tide_is_float(logits->dtype)) {
    tide_fail("%s: logits must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(logits->dtype));
    return NULL;
  }
  int32_t td = targets->dtype;
  if (td != TIDE_I64 && td != TIDE_I32 && td != TIDE_U8 && td != TIDE_U16) {
    tide_fail("%s: targets must be an integer tensor of class ids (i64 or i32), got %s", op, tide_dtype_name(td));
    return NULL;
  }
  if (reduction != TIDE_REDUCE_NONE && reduction != TIDE_REDUCE_MEAN && reduction != TIDE_REDUCE_SUM) {
    tide_fail("%s: invalid reduction code %d (expected none 0, mean 1 or sum 2)", op, reduction);
    return NULL;
  }
  char b1[160], b2[160], b3[160];
  if (logits->ndim < 1) {
    tide_fail("%s: logits must have a class dimension ([N, V] or [..., V]), got a 0-d tensor", op);
    return NULL;
  }
  int ok = targets->ndim == logits->ndim - 1;
  for (int32_t d = 0; ok && d < targets->ndim; d++) ok = targets->shape[d] == logits->shape[d];
  if (!ok) {
    tide_fail("%s: targets of shape %s do not match logits of shape %s (expected targets of shape %s: the logits' shape without the last, class, dimension)",
              op, tide_shape_str(b1, sizeof b1, targets->ndim, targets->shape), tide_shape_str(b2, sizeof b2, logits->ndim, logits->shape),
              tide_shape_str(b3, sizeof b3, logits->ndim - 1, logits->shape));
    return NULL;
  }
  *V = logits->shape[logits->ndim - 1];
  *N = targets->numel;
  tide_tensor *t = tide_contiguous_as(targets, TIDE_I64);
  if (!t) return NULL;
  const int64_t *p = (const int64_t *)t->data;
  for (int64_t i = 0; i < *N; i++) {
    if (p[i] != ignore_index && (p[i] < 0 || p[i] >= *V)) {
      tide_fail("%s: target %lld is out of range for %lld classes (class ids are 0-based: 0..%lld; ignore_index is %lld)", op,
                (long long)p[i], (long long)*V, (long long)(*V - 1), (long long)ignore_index);
      tide_tensor_release(t);
      return NULL;
    }
  }
  return t;
}

/* loss is 0-d for mean and sum, shaped like targets for none, in the logits'
   dtype; lse ([N]) may be NULL when not wanted. */
int tide_cross_entropy(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index, int32_t reduction,
                       tide_tensor **loss, tide_tensor **lse) {
  const char *op = "cross_entropy";
  if (!loss) return tide_fail("%s: loss is NULL", op);
  int64_t V = 0, N = 0;
  tide_tensor *tg = check_inputs(logits, targets, ignore_index, reduction, &V, &N, op);
  if (!tg) return -1;
  int32_t cd = logits->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  tide_tensor *xc = tide_contiguous_as(logits, cd), *lt = NULL, *lo = NULL;
  double *rl = NULL;
  int rc = -1;
  if (!xc) goto done;
  if (!(lt = tide_new(TIDE_F64, 1, &N))) goto done;
  if (!(rl = malloc((size_t)(N ? N : 1) * sizeof(double)))) {
    tide_fail("%s: out of memory", op);
    goto done;
  }
  const int64_t *t = (const int64_t *)tg->data;
  double *ls = (double *)lt->data;
  int par = N > 1 && N * V >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t n = 0; n < N; n++) {
    double l, xt = 0;
    if (cd == TIDE_F32) {
      const float *x = (const float *)xc->data + n * V;
      l = ce_lse_f32(x, V);
      if (t[n] != ignore_index) xt = x[t[n]];
    } else {
      const double *x = (const double *)xc->data + n * V;
      l = ce_lse_f64(x, V);
      if (t[n] != ignore_index) xt = x[t[n]];
    }
    ls[n] = l;
    rl[n] = t[n] == ignore_index ? 0.0 : l - xt;
  }
  if (reduction == TIDE_REDUCE_NONE) {
    if (!(lo = tide_new(TIDE_F64, targets->ndim, targets->shape))) goto done;
    memcpy(lo->data, rl, (size_t)N * sizeof(double));
  } else {
    double s = 0;
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) {
      s += rl[n];
      count += t[n] != ignore_index;
    }
    if (reduction == TIDE_REDUCE_MEAN) s = count ? s / (double)count : NAN;
    if (!(lo = tide_new(TIDE_F64, 0, NULL))) goto done;
    *(double *)lo->data = s;
  }
  tide_tensor *r = tide_contiguous_as(lo, logits->dtype);
  if (!r) goto done;
  tide_tensor_release(lo);
  lo = r;
  if (lse) {
    if (!(r = tide_contiguous_as(lt, cd))) goto done;
    *lse = r;
  }
  *loss = lo;
  lo = NULL;
  rc = 0;
done:
  free(rl);
  tide_tensor_release(tg);
  tide_tensor_release(xc);
  tide_tensor_release(lt);
  tide_tensor_release(lo);
  return rc;
}

/* dloss has one element for mean and sum, targets' shape for none; dlogits
   has the logits' dtype. */
int tide_cross_entropy_backward(const tide_tensor *dloss, const tide_tensor *logits, const tide_tensor *targets,
                                const tide_tensor *lse, int64_t ignore_index, int32_t reduction, tide_tensor **dlogits) {
  const char *op = "cross_entropy_backward";
  if (!dlogits) return tide_fail("%s: dlogits is NULL", op);
  if (!dloss) return tide_fail("%s: dloss is NULL (expected a tensor)", op);
  if (!lse) return tide_fail("%s: lse is NULL (expected the tensor saved by cross_entropy)", op);
  TIDE_TRY(tide_check_tensor(dloss, op));
  TIDE_TRY(tide_check_tensor(lse, op));
  if (!tide_is_float(dloss->dtype) || !tide_is_float(lse->dtype))
    return tide_fail("%s: dloss and lse must be float tensors, got %s and %s", op, tide_dtype_name(dloss->dtype), tide_dtype_name(lse->dtype));
  int64_t V = 0, N = 0;
  tide_tensor *tg = check_inputs(logits, targets, ignore_index, reduction, &V, &N, op);
  if (!tg) return -1;
  char b1[160], b2[160];
  int rc = -1;
  tide_tensor *xc = NULL, *lc = NULL, *dc = NULL, *g = NULL;
  if (lse->numel != N) {
    tide_fail("%s: lse of shape %s must hold one value per row (%lld rows)", op, tide_shape_str(b1, sizeof b1, lse->ndim, lse->shape), (long long)N);
    goto done;
  }
  if (reduction == TIDE_REDUCE_NONE) {
    int ok = dloss->ndim == targets->ndim && !memcmp(dloss->shape, targets->shape, sizeof(int64_t) * (size_t)targets->ndim);
    if (!ok) {
      tide_fail("%s: with reduction none, dloss of shape %s must have the targets' shape %s", op,
                tide_shape_str(b1, sizeof b1, dloss->ndim, dloss->shape), tide_shape_str(b2, sizeof b2, targets->ndim, targets->shape));
      goto done;
    }
  } else if (dloss->numel != 1) {
    tide_fail("%s: with reduction %s, dloss must hold one value, got shape %s", op, reduction_name(reduction),
              tide_shape_str(b1, sizeof b1, dloss->ndim, dloss->shape));
    goto done;
  }
  int32_t cd = logits->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  if (!(xc = tide_contiguous_as(logits, cd)) || !(lc = tide_contiguous_as(lse, TIDE_F64)) || !(dc = tide_contiguous_as(dloss, TIDE_F64)))
    goto done;
  if (!(g = tide_new(cd, logits->ndim, logits->shape))) goto done;
  const int64_t *t = (const int64_t *)tg->data;
  const double *l = (const double *)lc->data, *d = (const double *)dc->data;
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) count += t[n] != ignore_index;
  /* with every row ignored the mean's scale is never used */
  double common = reduction == TIDE_REDUCE_MEAN ? (count ? d[0] / (double)count : 0) : d[0];
  int par = N > 1 && N * V >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t n = 0; n < N; n++) {
    int skip = t[n] == ignore_index;
    double sc = reduction == TIDE_REDUCE_NONE ? d[n] : common;
    if (cd == TIDE_F32) {
      float *o = (float *)g->data + n * V;
      if (skip) memset(o, 0, (size_t)V * sizeof(float));
      else {
        const float *x = (const float *)xc->data + n * V;
        ce_bwd_row_f32(x, o, V, l[n], sc);
        /* p - 1 before scaling: no cancellation when p is close to 1 */
        o[t[n]] = (float)(((double)tide_expf(x[t[n]] - (float)l[n]) - 1.0) * sc);
      }
    } else {
      double *o = (double *)g->data + n * V;
      if (skip) memset(o, 0, (size_t)V * sizeof(double));
      else {
        const double *x = (const double *)xc->data + n * V;
        ce_bwd_row_f64(x, o, V, l[n], sc);
        o[t[n]] = (exp(x[t[n]] - l[n]) - 1.0) * sc;
      }
    }
  }
  if (logits->dtype != cd) {
    tide_tensor *r = tide_contiguous_as(g, logits->dtype);
    tide_tensor_release(g);
    if (!(g = r)) goto done;
  }
  *dlogits = g;
  g = NULL;
  rc = 0;
done:
  tide_tensor_release(tg);
  tide_tensor_release(xc);
  tide_tensor_release(lc);
  tide_tensor_release(dc);
  tide_tensor_release(g);
  return rc;
}
