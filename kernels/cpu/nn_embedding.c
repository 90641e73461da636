/* Embedding lookup and its gradient on the CPU.

   The backward sums the rows of dout that share an id. Threads split the
   columns, never the ids: every thread walks all ids in order for its own
   column range, so each output element is the sum of the same values in the
   same order whatever the thread count (bitwise deterministic), and no two
   threads write the same element. f32 sums in f32 (as PyTorch's CPU
   embedding_dense_backward), f64 in f64 (bf16/f16 reach it as f32).

   GPT-2's token + position embedding adds the two rows as the unfused
   embedding, embedding, add did: f32 and f64 in their type, bf16 and f16 in
   f32 rounded once (the add's f32 compute type), so the fused op gives the
   same bits. Its gradients are the embedding backward above (the op layer
   sums over the batch first where the positions are shared, as the unfused
   add's backward did). */
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

/* out row i = wte row ids[i] + wpe row pos(i), element by element in dtype's add */
#define GPT2_EMB(T, SUF, LOAD, STORE)                                                                       \
  static void gpt2_emb_##SUF(T *out, const T *wte, const T *wpe, const int64_t *ids, const int64_t *pos,    \
                             int64_t pbs, int64_t B, int64_t Tn, int64_t C, int64_t past, int64_t trs,      \
                             int64_t tcs, int64_t prs, int64_t pcs) {                                      \
    int64_t n = B * Tn;                                                                                    \
    int par = n > 1 && n * C >= TIDE_GRAIN;                                                                \
    _Pragma("omp parallel for schedule(static) if (par)")                                                  \
    for (int64_t i = 0; i < n; i++) {                                                                      \
      int64_t b = i / Tn, t = i - b * Tn;                                                                  \
      int64_t p = pos ? pos[b * pbs + t] : past + t;                                                       \
      const T *a = wte + ids[i] * trs, *e = wpe + p * prs;                                                 \
      T *o = out + i * C;                                                                                  \
      if (tcs == 1 && pcs == 1) {                                                                          \
        _Pragma("omp simd")                                                                                \
        for (int64_t c = 0; c < C; c++) o[c] = STORE(LOAD(a[c]) + LOAD(e[c]));                             \
      } else {                                                                                             \
        for (int64_t c = 0; c < C; c++) o[c] = STORE(LOAD(a[c * tcs]) + LOAD(e[c * pcs]));                 \
      }                                                                                                    \
    }                                                                                                      \
  }
#define EMB_ID(x) (x)
GPT2_EMB(float, f32, EMB_ID, EMB_ID)
GPT2_EMB(double, f64, EMB_ID, EMB_ID)
GPT2_EMB(uint16_t, bf16, tide_bf16_to_f32, tide_f32_to_bf16)
GPT2_EMB(uint16_t, f16, tide_f16_to_f32, tide_f32_to_f16)

static int gpt2_embedding_forward(void *out, const void *wte, const void *wpe, const int64_t *ids,
                                  const int64_t *pos_ids, int64_t pos_b_stride, int64_t B, int64_t T, int64_t C,
                                  int64_t past, int64_t trs, int64_t tcs, int64_t prs, int64_t pcs, int32_t dtype) {
  if (B * T * C <= 0) return 0;
  switch (dtype) {
    case TIDE_F32: gpt2_emb_f32(out, wte, wpe, ids, pos_ids, pos_b_stride, B, T, C, past, trs, tcs, prs, pcs); return 0;
    case TIDE_F64: gpt2_emb_f64(out, wte, wpe, ids, pos_ids, pos_b_stride, B, T, C, past, trs, tcs, prs, pcs); return 0;
    case TIDE_BF16: gpt2_emb_bf16(out, wte, wpe, ids, pos_ids, pos_b_stride, B, T, C, past, trs, tcs, prs, pcs); return 0;
    case TIDE_F16: gpt2_emb_f16(out, wte, wpe, ids, pos_ids, pos_b_stride, B, T, C, past, trs, tcs, prs, pcs); return 0;
    default: return tide_fail("gpt2_embedding: the tables must be f32, f64, bf16 or f16, got %s", tide_dtype_name(dtype));
  }
}

const struct tide_embedding_kernels tide_cpu_embedding = {
  .embedding_check_ids = embedding_check_ids,
  .embedding_forward = embedding_forward,
  .embedding_backward = embedding_backward,
  .gpt2_embedding_forward = gpt2_embedding_forward,
};
