/* Embedding lookup and its gradient. ids are 0-based values of any integer
   dtype and any shape; every id is checked against the number of rows before
   any memory is touched through it.

   The backward sums the rows of dout that share an id. Threads split the
   columns, never the ids: every thread walks all ids in order for its own
   column range, so each output element is the sum of the same values in the
   same order whatever the thread count (bitwise deterministic), and no two
   threads write the same element. f32 sums in f32 (as PyTorch's CPU
   embedding_dense_backward), f64 in f64, bf16/f16 in f32. */
#include "iter.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ids as a contiguous i64 tensor after checking dtype and bounds; NULL with an error. */
static tide_tensor *checked_ids(const tide_tensor *ids, int64_t V, const char *op) {
  if (!ids) {
    tide_fail("%s: ids is NULL (expected a tensor)", op);
    return NULL;
  }
  if (tide_check_tensor(ids, op)) return NULL;
  int32_t dt = ids->dtype;
  if (dt != TIDE_I64 && dt != TIDE_I32 && dt != TIDE_U8 && dt != TIDE_U16) {
    tide_fail("%s: ids must be an integer tensor (i64 or i32), got %s", op, tide_dtype_name(dt));
    return NULL;
  }
  tide_tensor *c = tide_contiguous_as(ids, TIDE_I64);
  if (!c) return NULL;
  const int64_t *p = (const int64_t *)c->data;
  for (int64_t i = 0; i < c->numel; i++) {
    if (p[i] < 0 || p[i] >= V) {
      if (V == 0) tide_fail("%s: id %lld is out of range: the embedding has 0 rows", op, (long long)p[i]);
      else tide_fail("%s: id %lld is out of range for an embedding of %lld rows (ids are 0-based: 0..%lld)", op,
                     (long long)p[i], (long long)V, (long long)(V - 1));
      tide_tensor_release(c);
      return NULL;
    }
  }
  return c;
}

int tide_embedding(const tide_tensor *weight, const tide_tensor *ids, tide_tensor **out) {
  const char *op = "embedding";
  if (!weight) return tide_fail("%s: weight is NULL (expected a tensor)", op);
  if (!out) return tide_fail("%s: out is NULL", op);
  TIDE_TRY(tide_check_tensor(weight, op));
  if (!tide_is_float(weight->dtype))
    return tide_fail("%s: weight must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(weight->dtype));
  if (weight->ndim != 2) {
    char b[160];
    return tide_fail("%s: weight must be 2-d [num_embeddings, dim], got shape %s", op, tide_shape_str(b, sizeof b, weight->ndim, weight->shape));
  }
  if (ids && ids->ndim >= TIDE_MAX_DIMS)
    return tide_fail("%s: ids have %d dimensions; at most %d are supported (the output adds one)", op, ids->ndim, TIDE_MAX_DIMS - 1);
  int64_t V = weight->shape[0], C = weight->shape[1];
  tide_tensor *ix = checked_ids(ids, V, op);
  if (!ix) return -1;
  int64_t shape[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < ids->ndim; d++) shape[d] = ids->shape[d];
  shape[ids->ndim] = C;
  tide_tensor *o = tide_new(weight->dtype, ids->ndim + 1, shape);
  if (!o) {
    tide_tensor_release(ix);
    return -1;
  }
  const int64_t *p = (const int64_t *)ix->data;
  int64_t n = ix->numel, es = tide_dtype_size(weight->dtype), rs = weight->stride[0] * es, cs = weight->stride[1] * es;
  char *dst = o->data;
  const char *src = weight->data;
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
  tide_tensor_release(ix);
  *out = o;
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

int tide_embedding_backward(const tide_tensor *dout, const tide_tensor *ids, int64_t num_embeddings, tide_tensor **dweight) {
  const char *op = "embedding_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!ids) return tide_fail("%s: ids is NULL (expected a tensor)", op);
  if (!dweight) return tide_fail("%s: dweight is NULL", op);
  TIDE_TRY(tide_check_tensor(dout, op));
  TIDE_TRY(tide_check_tensor(ids, op));
  if (!tide_is_float(dout->dtype))
    return tide_fail("%s: dout must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(dout->dtype));
  if (num_embeddings < 0) return tide_fail("%s: num_embeddings must be >= 0, got %lld", op, (long long)num_embeddings);
  char b1[160], b2[160];
  int ok = dout->ndim == ids->ndim + 1;
  for (int32_t d = 0; ok && d < ids->ndim; d++) ok = dout->shape[d] == ids->shape[d];
  if (!ok)
    return tide_fail("%s: dout of shape %s must be the ids' shape %s plus one last dimension", op,
                     tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape), tide_shape_str(b2, sizeof b2, ids->ndim, ids->shape));
  int64_t C = dout->shape[dout->ndim - 1], V = num_embeddings;
  int64_t wshape[2] = {V, C};
  if (tide_shape_numel(2, wshape, op) < 0) return -1;
  tide_tensor *ix = checked_ids(ids, V, op);
  if (!ix) return -1;
  int32_t cd = dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t es = tide_dtype_size(cd), n = ix->numel;
  tide_tensor *gc = tide_contiguous_as(dout, cd), *w = NULL;
  int rc = -1;
  if (!gc || !(w = tide_new(cd, 2, wshape))) goto done;
  /* zeroing [V, C] (GPT-2's wte: 150 MB) is most of the work when ids are few */
  int64_t wbytes = V * C * es;
  int zpar = wbytes >= (int64_t)TIDE_GRAIN * 4;
#pragma omp parallel for schedule(static) if (zpar)
  for (int64_t r = 0; r < V; r++) memset(w->data + r * C * es, 0, (size_t)(C * es));
  /* column ranges in whole cache lines so threads never share one */
  int nt = 1;
#ifdef _OPENMP
  if (n * C >= TIDE_GRAIN) nt = omp_get_max_threads();
#endif
  int64_t line = 64 / es, nlines = (C + line - 1) / line;
  if (nt > nlines) nt = (int)(nlines > 0 ? nlines : 1);
  const int64_t *p = (const int64_t *)ix->data;
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
      if (cd == TIDE_F32) emb_accum_f32((float *)w->data, (const float *)gc->data, p, n, C, c0, c1);
      else emb_accum_f64((double *)w->data, (const double *)gc->data, p, n, C, c0, c1);
    }
  }
  if (dout->dtype != cd) {
    tide_tensor *r = tide_contiguous_as(w, dout->dtype);
    tide_tensor_release(w);
    if (!(w = r)) goto done;
  }
  *dweight = w;
  w = NULL;
  rc = 0;
done:
  tide_tensor_release(ix);
  tide_tensor_release(gc);
  tide_tensor_release(w);
  return rc;
}
