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
#include "nn_softmax.h"
#include "dtype.h"
#include "iter.h" /* TIDE_GRAIN */
#include "error.h"
#include "vmath.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Columns reduced together when the dim is not the last (their maxima and sums live on the stack). */
#define STRIP 256
/* Terms per partial sum of the exps along a row: each of 16 vector lanes adds
   16 f32 values (relative error below 1e-6) before the sum goes on in double. */
#define SUM_CHUNK 256

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

/* table entries ---------------------------------------------------------------------- */

static int softmax_forward(void *out, const void *inp, int64_t outer, int64_t L, int64_t inner, int log, int32_t dtype) {
  if (dtype == TIDE_F32) sm_run_f32((const float *)inp, NULL, (float *)out, outer, L, inner, log != 0, 0);
  else if (dtype == TIDE_F64) sm_run_f64((const double *)inp, NULL, (double *)out, outer, L, inner, log != 0, 0);
  else return tide_fail("%s: no kernel for dtype %s", log ? "log_softmax" : "softmax", tide_dtype_name(dtype));
  return 0;
}

static int softmax_backward(void *dinp, const void *dout, const void *out, int64_t outer, int64_t L, int64_t inner,
                            int log, int32_t dtype) {
  if (dtype == TIDE_F32)
    sm_run_f32((const float *)dout, (const float *)out, (float *)dinp, outer, L, inner, log != 0, 1);
  else if (dtype == TIDE_F64)
    sm_run_f64((const double *)dout, (const double *)out, (double *)dinp, outer, L, inner, log != 0, 1);
  else
    return tide_fail("%s: no kernel for dtype %s", log ? "log_softmax_backward" : "softmax_backward",
                     tide_dtype_name(dtype));
  return 0;
}

const struct tide_softmax_kernels tide_cpu_softmax = {
    .softmax_forward = softmax_forward,
    .softmax_backward = softmax_backward,
};
