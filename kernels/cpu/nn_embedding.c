/* Embedding lookup and its gradient on the CPU.

   The backward sums the rows of dout that share an id. Threads split the
   columns, never the ids: every thread walks all ids in order for its own
   column range, so each output element is the sum of the same values in the
   same order whatever the thread count (bitwise deterministic), and no two
   threads write the same element. f32 sums in f32 (as PyTorch's CPU
   embedding_dense_backward), f64 in f64 (bf16/f16 reach it as f32). */
#include "nn_embedding.h"
#include "dtype.h"
#include "error.h"
#include "iter.h" /* TIDE_GRAIN */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int embedding_check_ids(const int64_t *p, int64_t n, int64_t V, int64_t *bad) {
  for (int64_t i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] >= V) {
      *bad = p[i];
      return 1;
    }
  }
  return 0;
}

static int embedding_forward(void *out, const void *weight, const int64_t *p, int64_t n, int64_t C,
                             int64_t w_row_stride, int64_t w_col_stride, int32_t dtype) {
  int64_t es = tide_dtype_size(dtype), rs = w_row_stride * es, cs = w_col_stride * es;
  char *dst = out;
  const char *src = weight;
  int par = n > 1 && n * C >= TIDE_GRAIN;
  if (cs == es || C <= 1) {  /* rows of the weight are contiguous: one memcpy each */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) memcpy(dst + i * C * es, src + p[i] * rs, (size_t)(C * es));
  } else {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) {
      const char *s = src + p[i] * rs;
      char *d = dst + i * C * es;
      for (int64_t c = 0; c < C; c++) memcpy(d + c * es, s + c * cs, (size_t)es);
    }
  }
  return 0;
}

/* Sums rows of g [n, C] into the zeroed w [V, C] at ids p, columns [c0, c1). */
#define EMB_ACCUM(T, SUF)                                                                      \
  static void emb_accum_##SUF(T *w, const T *g, const int64_t *p, int64_t n, int64_t C,         \
                              int64_t c0, int64_t c1) {                                       \
    for (int64_t i = 0; i < n; i++) {                                                          \
      T *wr = w + p[i] * C;                                                                    \
      const T *gr = g + i * C;                                                                 \
      _Pragma("omp simd")                                                                      \
      for (int64_t c = c0; c < c1; c++) wr[c] += gr[c];                                        \
    }                                                                                          \
  }
EMB_ACCUM(float, f32)
EMB_ACCUM(double, f64)

static int embedding_backward(void *dweight, const void *dout, const int64_t *p, int64_t n, int64_t V, int64_t C,
                              int32_t cd) {
  if (cd != TIDE_F32 && cd != TIDE_F64)
    return tide_fail("embedding_backward: the CPU kernel sums in f32 or f64, got %s", tide_dtype_name(cd));
  int64_t es = tide_dtype_size(cd);
  char *w = dweight;
  /* zeroing [V, C] (GPT-2's wte: 150 MB) is most of the work when ids are few */
  int64_t wbytes = V * C * es;
  int zpar = wbytes >= (int64_t)TIDE_GRAIN * 4;
#pragma omp parallel for schedule(static) if (zpar)
  for (int64_t r = 0; r < V; r++) memset(w + r * C * es, 0, (size_t)(C * es));
  /* column ranges in whole cache lines so threads never share one */
  int nt = 1;
#ifdef _OPENMP
  if (n * C >= TIDE_GRAIN) nt = omp_get_max_threads();
#endif
  int64_t line = 64 / es, nlines = (C + line - 1) / line;
  if (nt > nlines) nt = (int)(nlines > 0 ? nlines : 1);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = 0, m = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    m = omp_get_num_threads();
#endif
    int64_t c0 = nlines * t / m * line, c1 = nlines * (t + 1) / m * line;
    if (c1 > C) c1 = C;
    if (c0 < c1) {
      if (cd == TIDE_F32) emb_accum_f32((float *)w, (const float *)dout, p, n, C, c0, c1);
      else emb_accum_f64((double *)w, (const double *)dout, p, n, C, c0, c1);
    }
  }
  return 0;
}

const struct tide_embedding_kernels tide_cpu_embedding = {
  .embedding_check_ids = embedding_check_ids,
  .embedding_forward = embedding_forward,
  .embedding_backward = embedding_backward,
};
