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
   written in f32 for the f32 family and f64 for f64; the losses in the
   dtype the op layer asks (the logits'). The backward works in
   the compute type, exp(x - lse) * scale, with the target's p - 1 formed
   before scaling. The reduction adds rows in order, so no result depends on
   the thread count. */
#include "nn_loss.h"
#include "error.h"
#include "dtype.h"
#include "iter.h" /* TIDE_GRAIN */
#include "vmath.h"
#include <stdlib.h>
#include <string.h>

static inline double exp_f64(double v) { return exp(v); }

/* bytes of an element of a float dtype */
static size_t ce_fsize(int32_t dt) { return dt == TIDE_F64 ? 8 : dt == TIDE_F32 ? 4 : 2; }

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

static int cross_entropy_check_targets(const int64_t *p, int64_t N, int64_t V, int64_t ignore_index, int64_t *bad) {
  for (int64_t i = 0; i < N; i++) {
    if (p[i] != ignore_index && (p[i] < 0 || p[i] >= V)) {
      *bad = p[i];
      return 1;
    }
  }
  return 0;
}

static int cross_entropy_forward(void *loss, int32_t loss_dt, void *ls, const void *logits, const int64_t *t,
                                 int64_t N, int64_t V, int64_t ignore_index, int32_t reduction, int32_t cd) {
  if (cd != TIDE_F32 && cd != TIDE_F64)
    return tide_fail("cross_entropy: the CPU kernel takes f32 or f64 logits, got %s", tide_dtype_name(cd));
  if (!tide_is_float(loss_dt)) return tide_fail("cross_entropy: the loss must be a float dtype, got %s", tide_dtype_name(loss_dt));
  /* the row losses in double, each rounded once to loss_dt at the end */
  double *rl = malloc((size_t)(N ? N : 1) * sizeof(double));
  if (!rl) return tide_fail("cross_entropy: out of memory");
  int par = N > 1 && N * V >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t n = 0; n < N; n++) {
    double l, xt = 0;
    if (cd == TIDE_F32) {
      const float *x = (const float *)logits + n * V;
      l = ce_lse_f32(x, V);
      if (t[n] != ignore_index) xt = x[t[n]];
      ((float *)ls)[n] = (float)l;
    } else {
      const double *x = (const double *)logits + n * V;
      l = ce_lse_f64(x, V);
      if (t[n] != ignore_index) xt = x[t[n]];
      ((double *)ls)[n] = l;
    }
    rl[n] = t[n] == ignore_index ? 0.0 : l - xt;
  }
  size_t es = ce_fsize(loss_dt);
  if (reduction == TIDE_REDUCE_NONE) {
    for (int64_t n = 0; n < N; n++) tide_store_f64((char *)loss + (size_t)n * es, loss_dt, rl[n]);
  } else {
    double s = 0;
    int64_t count = 0;
    for (int64_t n = 0; n < N; n++) {
      s += rl[n];
      count += t[n] != ignore_index;
    }
    if (reduction == TIDE_REDUCE_MEAN) s = count ? s / (double)count : NAN;
    tide_store_f64((char *)loss, loss_dt, s);
  }
  free(rl);
  return 0;
}

static int cross_entropy_backward(void *dlogits, const void *logits, const int64_t *t, const void *lse,
                                  const void *dloss, int32_t ddt, int64_t N, int64_t V, int64_t ignore_index,
                                  int32_t reduction, int32_t cd) {
  if (cd != TIDE_F32 && cd != TIDE_F64)
    return tide_fail("cross_entropy_backward: the CPU kernel takes f32 or f64 logits, got %s", tide_dtype_name(cd));
  if (!tide_is_float(ddt)) return tide_fail("cross_entropy_backward: dloss must be a float dtype, got %s", tide_dtype_name(ddt));
  const char *d = (const char *)dloss;
  const size_t des = ce_fsize(ddt);
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) count += t[n] != ignore_index;
  /* with every row ignored the mean's scale is never used */
  double d0 = reduction == TIDE_REDUCE_NONE ? 0 : tide_load_f64(d, ddt);
  double common = reduction == TIDE_REDUCE_MEAN ? (count ? d0 / (double)count : 0) : d0;
  int par = N > 1 && N * V >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t n = 0; n < N; n++) {
    int skip = t[n] == ignore_index;
    double sc = reduction == TIDE_REDUCE_NONE ? tide_load_f64(d + (size_t)n * des, ddt) : common;
    if (cd == TIDE_F32) {
      float *o = (float *)dlogits + n * V;
      if (skip) memset(o, 0, (size_t)V * sizeof(float));
      else {
        const float *x = (const float *)logits + n * V;
        const float ln = ((const float *)lse)[n];
        ce_bwd_row_f32(x, o, V, ln, sc);
        /* p - 1 before scaling: no cancellation when p is close to 1 */
        o[t[n]] = (float)(((double)tide_expf(x[t[n]] - ln) - 1.0) * sc);
      }
    } else {
      double *o = (double *)dlogits + n * V;
      if (skip) memset(o, 0, (size_t)V * sizeof(double));
      else {
        const double *x = (const double *)logits + n * V;
        const double ln = ((const double *)lse)[n];
        ce_bwd_row_f64(x, o, V, ln, sc);
        o[t[n]] = (exp(x[t[n]] - ln) - 1.0) * sc;
      }
    }
  }
  return 0;
}

const struct tide_loss_kernels tide_cpu_loss = {
  .bf16_logits = 0,
  .backward_checks_targets = 1,
  .cross_entropy_check_targets = cross_entropy_check_targets,
  .cross_entropy_forward = cross_entropy_forward,
  .cross_entropy_backward = cross_entropy_backward,
};
