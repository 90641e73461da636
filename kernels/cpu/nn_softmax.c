/* Softmax and log_softmax along one dimension, forward and backward.

   The input is read as a contiguous [outer, L, inner] block (a copy is made
   for other layouts) and reduced along L:
   - inner == 1 (the last dimension, the common case): each row is reduced
     on its own: max, then exp(x - max) with its sum, then the scaling; a row
     of 50257 floats (200 KB) stays in L2 between the passes;
   - inner > 1: a strip of up to STRIP neighbouring columns is reduced at
     once (vectors run along the contiguous inner dimension).
   Sums accumulate in double (the exps along a row in short f32 runs first);
   softmax scales the exps by 1/sum in the compute type, log_softmax and the
   backward compute each output in double and round it once. f32 exp is
   vmath.h's vectorised tide_expf (1.2 ulp), f64 uses libm. A row holding NaN
   or +inf, or only -inf, gives NaN throughout, as in PyTorch. bf16/f16
   compute through f32. */
#include "iter.h"
#include "vmath.h"
#include <stdlib.h>
#include <string.h>

/* Columns reduced together when the dim is not the last (their maxima and sums live on the stack). */
#define STRIP 256
/* Terms per partial sum of the exps along a row: each of 16 vector lanes adds
   16 f32 values (relative error below 1e-6) before the sum goes on in double. */
#define SUM_CHUNK 256

static int need_float(const tide_tensor *t, const char *op, const char *name) {
  if (!t) return tide_fail("%s: %s is NULL (expected a tensor)", op, name);
  TIDE_TRY(tide_check_tensor(t, op));
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

static inline double exp_f64(double v) { return exp(v); }

/* Forward and backward kernels for compute type T with exp EXP (in T).
   Forward: y = exp(x - m) / s, or x - (m + log s) for log_softmax.
   Backward from y: dx = y * (dy - sum(dy * y)), or dy - exp(y) * sum(dy). */
#define SM_KERNELS(T, SUF, EXP)                                                                           \
  static void sm_row_##SUF(const T *x, T *y, int64_t L, int lg) {                                         \
    T m = -INFINITY;                                                                                      \
    _Pragma("omp simd reduction(max:m)")                                                                  \
    for (int64_t i = 0; i < L; i++) m = x[i] > m ? x[i] : m;                                              \
    /* a NaN (skipped by max or not) reaches the sum, which makes every output NaN */                     \
    double s = 0;                                                                                         \
    if (lg) {                                                                                             \
      for (int64_t i0 = 0; i0 < L; i0 += SUM_CHUNK) {                                                     \
        int64_t e = L - i0 < SUM_CHUNK ? L - i0 : SUM_CHUNK;                                              \
        T ps = 0;                                                                                         \
        _Pragma("omp simd reduction(+:ps)")                                                               \
        for (int64_t i = i0; i < i0 + e; i++) ps += EXP(x[i] - m);                                        \
        s += (double)ps;                                                                                  \
      }                                                                                                   \
      double lse = (double)m + log(s);                                                                    \
      _Pragma("omp simd")                                                                                 \
      for (int64_t i = 0; i < L; i++) y[i] = (T)((double)x[i] - lse);                                     \
    } else {                                                                                              \
      for (int64_t i0 = 0; i0 < L; i0 += SUM_CHUNK) {                                                     \
        int64_t n = L - i0 < SUM_CHUNK ? L - i0 : SUM_CHUNK;                                              \
        T ps = 0;                                                                                         \
        _Pragma("omp simd reduction(+:ps)")                                                               \
        for (int64_t i = i0; i < i0 + n; i++) {                                                           \
          T e = EXP(x[i] - m);                                                                            \
          y[i] = e;                                                                                       \
          ps += e;                                                                                        \
        }                                                                                                 \
        s += (double)ps;                                                                                  \
      }                                                                                                   \
      const T inv = (T)(1.0 / s);                                                                         \
      _Pragma("omp simd")                                                                                 \
      for (int64_t i = 0; i < L; i++) y[i] *= inv;                                                        \
    }                                                                                                     \
  }                                                                                                       \
                                                                                                          \
  /* columns [0, J) of one [L, inner] slab, each reduced down its L entries */                            \
  static void sm_strip_##SUF(const T *x, T *y, int64_t L, int64_t inner, int64_t J, int lg) {             \
    T m[STRIP];                                                                                           \
    double s[STRIP];                                                                                      \
    for (int64_t j = 0; j < J; j++) { m[j] = -INFINITY; s[j] = 0; }                                       \
    for (int64_t l = 0; l < L; l++) {                                                                     \
      const T *xl = x + l * inner;                                                                        \
      _Pragma("omp simd")                                                                                 \
      for (int64_t j = 0; j < J; j++) m[j] = xl[j] > m[j] ? xl[j] : m[j];                                  \
    }                                                                                                     \
    for (int64_t l = 0; l < L; l++) {                                                                     \
      const T *xl = x + l * inner;                                                                        \
      T *yl = y + l * inner;                                                                              \
      _Pragma("omp simd")                                                                                 \
      for (int64_t j = 0; j < J; j++) {                                                                   \
        T e = EXP(xl[j] - m[j]);                                                                          \
        if (!lg) yl[j] = e;                                                                               \
        s[j] += (double)e;                                                                                \
      }                                                                                                   \
    }                                                                                                     \
    for (int64_t j = 0; j < J; j++) s[j] = lg ? (double)m[j] + log(s[j]) : 1.0 / s[j];                    \
    for (int64_t l = 0; l < L; l++) {                                                                     \
      const T *xl = x + l * inner;                                                                        \
      T *yl = y + l * inner;                                                                              \
      if (lg) {                                                                                           \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) yl[j] = (T)((double)xl[j] - s[j]);                                \
      } else {                                                                                            \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) yl[j] = (T)((double)yl[j] * s[j]);                                \
      }                                                                                                   \
    }                                                                                                     \
  }                                                                                                       \
                                                                                                          \
  static void sm_bwd_row_##SUF(const T *dy, const T *y, T *dx, int64_t L, int lg) {                       \
    double s = 0;                                                                                         \
    if (lg) {                                                                                             \
      _Pragma("omp simd reduction(+:s)")                                                                  \
      for (int64_t i = 0; i < L; i++) s += (double)dy[i];                                                 \
      _Pragma("omp simd")                                                                                 \
      for (int64_t i = 0; i < L; i++) dx[i] = (T)((double)dy[i] - (double)EXP(y[i]) * s);                \
    } else {                                                                                              \
      _Pragma("omp simd reduction(+:s)")                                                                  \
      for (int64_t i = 0; i < L; i++) s += (double)dy[i] * (double)y[i];                                  \
      _Pragma("omp simd")                                                                                 \
      for (int64_t i = 0; i < L; i++) dx[i] = (T)((double)y[i] * ((double)dy[i] - s));                    \
    }                                                                                                     \
  }                                                                                                       \
                                                                                                          \
  static void sm_bwd_strip_##SUF(const T *dy, const T *y, T *dx, int64_t L, int64_t inner, int64_t J,     \
                                 int lg) {                                                                \
    double s[STRIP];                                                                                      \
    for (int64_t j = 0; j < J; j++) s[j] = 0;                                                             \
    for (int64_t l = 0; l < L; l++) {                                                                     \
      const T *dl = dy + l * inner, *yl = y + l * inner;                                                  \
      if (lg) {                                                                                           \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) s[j] += (double)dl[j];                                            \
      } else {                                                                                            \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) s[j] += (double)dl[j] * (double)yl[j];                            \
      }                                                                                                   \
    }                                                                                                     \
    for (int64_t l = 0; l < L; l++) {                                                                     \
      const T *dl = dy + l * inner, *yl = y + l * inner;                                                  \
      T *xl = dx + l * inner;                                                                             \
      if (lg) {                                                                                           \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) xl[j] = (T)((double)dl[j] - (double)EXP(yl[j]) * s[j]);          \
      } else {                                                                                            \
        _Pragma("omp simd")                                                                               \
        for (int64_t j = 0; j < J; j++) xl[j] = (T)((double)yl[j] * ((double)dl[j] - s[j]));              \
      }                                                                                                   \
    }                                                                                                     \
  }                                                                                                       \
                                                                                                          \
  /* Runs the forward (a = x, c = y) or the backward (a = dy, b = y, c = dx) over                         \
     [outer, L, inner]; rows or strips are spread over threads. */                                        \
  static void sm_run_##SUF(const T *a, const T *b, T *c, int64_t outer, int64_t L, int64_t inner,         \
                           int lg, int bwd) {                                                             \
    int64_t nstrip = (inner + STRIP - 1) / STRIP, units = outer * nstrip;                                 \
    int par = units > 1 && outer * L * inner >= TIDE_GRAIN;                                               \
    _Pragma("omp parallel for schedule(static) if (par)")                                                 \
    for (int64_t u = 0; u < units; u++) {                                                                 \
      int64_t o = u / nstrip, j0 = (u % nstrip) * STRIP, J = inner - j0 < STRIP ? inner - j0 : STRIP;     \
      int64_t base = o * L * inner + j0;                                                                  \
      if (inner == 1) {                                                                                   \
        if (bwd) sm_bwd_row_##SUF(a + base, b + base, c + base, L, lg);                                   \
        else sm_row_##SUF(a + base, c + base, L, lg);                                                \
      } else {                                                                                            \
        if (bwd) sm_bwd_strip_##SUF(a + base, b + base, c + base, L, inner, J, lg);                       \
        else sm_strip_##SUF(a + base, c + base, L, inner, J, lg);                                    \
      }                                                                                                   \
    }                                                                                                     \
  }

SM_KERNELS(float, f32, tide_expf)
SM_KERNELS(double, f64, exp_f64)

int tide_softmax(const tide_tensor *x, int32_t dim, int32_t log, tide_tensor **out) {
  const char *op = log ? "log_softmax" : "softmax";
  TIDE_TRY(need_float(x, op, "x"));
  TIDE_TRY(tide_check_dim(x, dim, op));
  if (!out) return tide_fail("%s: out is NULL", op);
  int32_t cd = x->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t outer, L, inner;
  split_dims(x, dim, &outer, &L, &inner);
  tide_tensor *xc = tide_contiguous_as(x, cd), *y = NULL;
  if (!xc) return -1;
  if (!(y = tide_new(cd, x->ndim, x->shape))) {
    tide_tensor_release(xc);
    return -1;
  }
  if (x->numel > 0) {
    if (cd == TIDE_F32) sm_run_f32((const float *)xc->data, NULL, (float *)y->data, outer, L, inner, log != 0, 0);
    else sm_run_f64((const double *)xc->data, NULL, (double *)y->data, outer, L, inner, log != 0, 0);
  }
  tide_tensor_release(xc);
  if (!(y = to_dtype(y, x->dtype))) return -1;
  *out = y;
  return 0;
}

/* dx takes the dtype dout and out promote to. */
int tide_softmax_backward(const tide_tensor *dout, const tide_tensor *out, int32_t dim, int32_t log, tide_tensor **dx) {
  const char *op = log ? "log_softmax_backward" : "softmax_backward";
  TIDE_TRY(need_float(dout, op, "dout"));
  TIDE_TRY(need_float(out, op, "out"));
  TIDE_TRY(tide_check_dim(out, dim, op));
  if (!dx) return tide_fail("%s: dx is NULL", op);
  if (dout->ndim != out->ndim || memcmp(dout->shape, out->shape, sizeof(int64_t) * (size_t)out->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match out of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, out->ndim, out->shape));
  }
  int32_t rd = tide_promote_types(dout->dtype, out->dtype), cd = rd == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t outer, L, inner;
  split_dims(out, dim, &outer, &L, &inner);
  tide_tensor *dyc = tide_contiguous_as(dout, cd), *yc = NULL, *g = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if (!(yc = tide_contiguous_as(out, cd)) || !(g = tide_new(cd, out->ndim, out->shape))) goto done;
  if (out->numel > 0) {
    if (cd == TIDE_F32)
      sm_run_f32((const float *)dyc->data, (const float *)yc->data, (float *)g->data, outer, L, inner, log != 0, 1);
    else
      sm_run_f64((const double *)dyc->data, (const double *)yc->data, (double *)g->data, outer, L, inner, log != 0, 1);
  }
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
