/* Layer norm over the last dimension, forward and backward, as PyTorch's
   native_layer_norm: biased variance, eps inside the square root, mean and
   rstd = 1/sqrt(var + eps) saved per row (f32 for the f32 family, f64 for
   f64). Rows are at most a few thousand elements, so each row stays in L1
   across the passes over it: statistics are two-pass (mean, then the sum of
   squared deviations, which does not cancel like E[x^2] - mean^2), with
   double accumulators where accuracy needs them; the elementwise work
   is done in the compute type (f32: 16 lanes per vector), within a few ulp
   of exact as PyTorch's own f32 kernel. bf16/f16 compute through f32 copies
   and return their own dtype.

   The backward's weight and bias gradients sum over rows. Rows are cut into
   blocks whose size depends only on the row count; each block writes its own
   partial sums, which are then added in block order, so the result is the
   same for any thread count. */
#include "iter.h"
#include <stdlib.h>
#include <string.h>

/* argument checks ------------------------------------------------------------- */

static int need_float(const tide_tensor *t, const char *op, const char *name) {
  if (!t) return tide_fail("%s: %s is NULL (expected a tensor)", op, name);
  TIDE_TRY(tide_check_tensor(t, op));
  if (!tide_is_float(t->dtype))
    return tide_fail("%s: %s must be a float tensor (f32, f64, bf16 or f16), got %s", op, name, tide_dtype_name(t->dtype));
  return 0;
}

/* weight / bias: 1-d of size C. */
static int need_affine(const tide_tensor *t, int64_t C, const char *op, const char *name) {
  TIDE_TRY(need_float(t, op, name));
  if (t->ndim != 1 || t->shape[0] != C) {
    char b[160];
    return tide_fail("%s: %s must have shape [%lld] (the size of the last dimension of x), got %s", op, name,
                     (long long)C, tide_shape_str(b, sizeof b, t->ndim, t->shape));
  }
  return 0;
}

/* A float dtype's compute dtype: f64 stays, the f32 family computes in f32. */
static int32_t compute_dtype(int32_t dt) { return dt == TIDE_F64 ? TIDE_F64 : TIDE_F32; }

/* t converted to dtype dt (t is released), or t itself when it already is. */
static tide_tensor *to_dtype(tide_tensor *t, int32_t dt) {
  if (!t || t->dtype == dt) return t;
  tide_tensor *r = tide_contiguous_as(t, dt);
  tide_tensor_release(t);
  return r;
}

/* Rows per block of the backward's partial sums: a function of the row
   count alone (so results do not depend on threads), at most 256 blocks. */
static int64_t block_rows(int64_t rows) {
  int64_t rb = (rows + 255) / 256;
  return rb < 32 ? 32 : rb;
}

/* kernels, one instance per compute type ----------------------------------------- */

/* Elements per partial sum: 16 vector lanes each add 8 values in the compute
   type, then the partials are added in double. */
#define SUM_CHUNK 128

/* The row loops compute in T (16 f32 lanes per AVX-512 vector). The mean is
   summed in double: its error would reach every output as error/std, and f32
   partial sums of values far from 0 leave about 1e-7 of the mean. Sums of
   centred values are formed in short T runs, then added in double, which
   keeps their error relative to themselves. The forward subtracts the mean
   as two T values, mt + ml = mean to about 2^-48 relative: x - mt is exact
   (Sterbenz) or rounds relative to itself, so x - mean keeps its digits when
   the mean is large against the spread, where one rounded mean would leave
   errors of ulp(mean) / std in every output. */
#define LN_KERNELS(T, SUF)                                                                               \
  static void ln_fwd_##SUF(const T *x, const T *w, const T *b, T *y, double *mean, double *rstd,          \
                           int64_t rows, int64_t C, double eps) {                                        \
    int par = rows > 1 && rows * C >= TIDE_GRAIN;                                                         \
    _Pragma("omp parallel for schedule(static) if (par)")                                                 \
    for (int64_t r = 0; r < rows; r++) {                                                                  \
      const T *xr = x + r * C;                                                                            \
      T *yr = y + r * C;                                                                                  \
      double s = 0, ss = 0;                                                                               \
      _Pragma("omp simd reduction(+:s)")                                                                  \
      for (int64_t c = 0; c < C; c++) s += (double)xr[c];                                                 \
      double mu = s / (double)C;                                                                          \
      const T mt = (T)mu, ml = (T)(mu - (double)mt);                                                      \
      for (int64_t c0 = 0; c0 < C; c0 += SUM_CHUNK) {                                                     \
        int64_t c1 = C - c0 < SUM_CHUNK ? C : c0 + SUM_CHUNK;                                             \
        T ps = 0;                                                                                         \
        _Pragma("omp simd reduction(+:ps)")                                                               \
        for (int64_t c = c0; c < c1; c++) { T d = (xr[c] - mt) - ml; ps += d * d; }                       \
        ss += (double)ps;                                                                                 \
      }                                                                                                   \
      double rs = 1.0 / sqrt(ss / (double)C + eps);                                                       \
      mean[r] = mu;                                                                                       \
      rstd[r] = rs;                                                                                       \
      const T rt = (T)rs;                                                                                 \
      if (w && b) {                                                                                       \
        _Pragma("omp simd")                                                                               \
        for (int64_t c = 0; c < C; c++) yr[c] = ((xr[c] - mt) - ml) * rt * w[c] + b[c];                          \
      } else if (w) {                                                                                     \
        _Pragma("omp simd")                                                                               \
        for (int64_t c = 0; c < C; c++) yr[c] = ((xr[c] - mt) - ml) * rt * w[c];                                 \
      } else if (b) {                                                                                     \
        _Pragma("omp simd")                                                                               \
        for (int64_t c = 0; c < C; c++) yr[c] = ((xr[c] - mt) - ml) * rt + b[c];                                 \
      } else {                                                                                            \
        _Pragma("omp simd")                                                                               \
        for (int64_t c = 0; c < C; c++) yr[c] = ((xr[c] - mt) - ml) * rt;                                        \
      }                                                                                                   \
    }                                                                                                     \
  }                                                                                                       \
                                                                                                          \
  /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w; pw/pb (NULL when unwanted)        \
     receive per-block partial sums of dy * xhat and dy, [nblk, C], in double. */                         \
  static void ln_bwd_##SUF(const T *dy, const T *x, const T *w, const double *mean, const double *rstd,   \
                           T *dx, double *pw, double *pb, int64_t rows, int64_t C, int64_t rb) {          \
    int64_t nblk = (rows + rb - 1) / rb;                                                                  \
    int par = nblk > 1 && rows * C >= TIDE_GRAIN;                                                         \
    _Pragma("omp parallel for schedule(static) if (par)")                                                 \
    for (int64_t k = 0; k < nblk; k++) {                                                                  \
      double *aw = pw ? pw + k * C : NULL, *ab = pb ? pb + k * C : NULL;                                  \
      if (aw) memset(aw, 0, (size_t)C * sizeof(double));                                                  \
      if (ab) memset(ab, 0, (size_t)C * sizeof(double));                                                  \
      int64_t r1 = (k + 1) * rb < rows ? (k + 1) * rb : rows;                                             \
      for (int64_t r = k * rb; r < r1; r++) {                                                             \
        const T *dyr = dy + r * C, *xr = x + r * C;                                                       \
        T *dxr = dx + r * C;                                                                              \
        const T mt = (T)mean[r], rt = (T)rstd[r];                                                         \
        double sg = 0, sgx = 0;                                                                           \
        for (int64_t c0 = 0; c0 < C; c0 += SUM_CHUNK) {                                                   \
          int64_t c1 = C - c0 < SUM_CHUNK ? C : c0 + SUM_CHUNK;                                           \
          T pg = 0, pgx = 0;                                                                              \
          if (w) {                                                                                        \
            _Pragma("omp simd reduction(+:pg, pgx)")                                                      \
            for (int64_t c = c0; c < c1; c++) {                                                           \
              T g = dyr[c] * w[c];                                                                        \
              pg += g;                                                                                    \
              pgx += g * ((xr[c] - mt) * rt);                                                             \
            }                                                                                             \
          } else {                                                                                        \
            _Pragma("omp simd reduction(+:pg, pgx)")                                                      \
            for (int64_t c = c0; c < c1; c++) {                                                           \
              pg += dyr[c];                                                                               \
              pgx += dyr[c] * ((xr[c] - mt) * rt);                                                        \
            }                                                                                             \
          }                                                                                               \
          sg += (double)pg;                                                                               \
          sgx += (double)pgx;                                                                             \
        }                                                                                                 \
        const T a = (T)(sg / (double)C), bb = (T)(sgx / (double)C);                                       \
        if (w) {                                                                                          \
          _Pragma("omp simd")                                                                             \
          for (int64_t c = 0; c < C; c++) dxr[c] = rt * (dyr[c] * w[c] - a - (xr[c] - mt) * rt * bb);     \
        } else {                                                                                          \
          _Pragma("omp simd")                                                                             \
          for (int64_t c = 0; c < C; c++) dxr[c] = rt * (dyr[c] - a - (xr[c] - mt) * rt * bb);            \
        }                                                                                                 \
        if (aw) {                                                                                         \
          _Pragma("omp simd")                                                                             \
          for (int64_t c = 0; c < C; c++) aw[c] += (double)(dyr[c] * ((xr[c] - mt) * rt));                \
        }                                                                                                 \
        if (ab) {                                                                                         \
          _Pragma("omp simd")                                                                             \
          for (int64_t c = 0; c < C; c++) ab[c] += (double)dyr[c];                                        \
        }                                                                                                 \
      }                                                                                                   \
    }                                                                                                     \
  }

LN_KERNELS(float, f32)
LN_KERNELS(double, f64)

/* Adds the nblk partial rows of p in block order into a new [C] tensor of dtype dt. */
static tide_tensor *sum_partials(const double *p, int64_t nblk, int64_t C, int32_t dt) {
  tide_tensor *t = tide_new(TIDE_F64, 1, &C);
  if (!t) return NULL;
  double *o = (double *)t->data;
  int par = nblk * C >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t k = 0; k < nblk; k++) s += p[k * C + c];
    o[c] = s;
  }
  return to_dtype(t, dt);
}

/* entry points ---------------------------------------------------------------------- */

/* mean and rstd may be NULL when not wanted (inference). */
int tide_layer_norm(const tide_tensor *x, const tide_tensor *weight, const tide_tensor *bias, double eps,
                    tide_tensor **out, tide_tensor **mean, tide_tensor **rstd) {
  const char *op = "layer_norm";
  TIDE_TRY(need_float(x, op, "x"));
  if (!out) return tide_fail("%s: out is NULL", op);
  if (x->ndim < 1) return tide_fail("%s: x must have at least 1 dimension (normalised over the last), got a 0-d tensor", op);
  if (!(eps >= 0) || isinf(eps)) return tide_fail("%s: eps must be finite and >= 0, got %g", op, eps);
  int64_t C = x->shape[x->ndim - 1], rows = C ? x->numel / C : 0;
  if (C == 0) {
    /* no elements to normalise: count the rows from the shape */
    rows = 1;
    for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  }
  if (weight) TIDE_TRY(need_affine(weight, C, op, "weight"));
  if (bias) TIDE_TRY(need_affine(bias, C, op, "bias"));
  int32_t cd = compute_dtype(x->dtype), sd = cd;
  tide_tensor *xc = tide_contiguous_as(x, cd), *wc = NULL, *bc = NULL, *y = NULL, *mt = NULL, *rt = NULL;
  int rc = -1;
  if (!xc) return -1;
  if (weight && !(wc = tide_contiguous_as(weight, cd))) goto done;
  if (bias && !(bc = tide_contiguous_as(bias, cd))) goto done;
  if (!(y = tide_new(cd, x->ndim, x->shape))) goto done;
  if (!(mt = tide_new(TIDE_F64, x->ndim - 1, x->shape)) || !(rt = tide_new(TIDE_F64, x->ndim - 1, x->shape))) goto done;
  if (cd == TIDE_F32)
    ln_fwd_f32((const float *)xc->data, wc ? (const float *)wc->data : NULL, bc ? (const float *)bc->data : NULL,
               (float *)y->data, (double *)mt->data, (double *)rt->data, C ? rows : 0, C, eps);
  else
    ln_fwd_f64((const double *)xc->data, wc ? (const double *)wc->data : NULL, bc ? (const double *)bc->data : NULL,
               (double *)y->data, (double *)mt->data, (double *)rt->data, C ? rows : 0, C, eps);
  if (C == 0) {  /* as PyTorch's kernel: mean 0 / 0 and rstd from it */
    for (int64_t r = 0; r < rows; r++) {
      ((double *)mt->data)[r] = NAN;
      ((double *)rt->data)[r] = NAN;
    }
  }
  if (!(y = to_dtype(y, x->dtype)) || !(mt = to_dtype(mt, sd)) || !(rt = to_dtype(rt, sd))) goto done;
  *out = y;
  y = NULL;
  if (mean) { *mean = mt; mt = NULL; }
  if (rstd) { *rstd = rt; rt = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(wc);
  tide_tensor_release(bc);
  tide_tensor_release(y);
  tide_tensor_release(mt);
  tide_tensor_release(rt);
  return rc;
}

/* dweight is computed when both weight and dweight are given (else *dweight is
   set to NULL); dbias whenever dbias is given, in weight's dtype (x's when
   there is no weight). dx has x's dtype. */
int tide_layer_norm_backward(const tide_tensor *dout, const tide_tensor *x, const tide_tensor *weight,
                             const tide_tensor *mean, const tide_tensor *rstd,
                             tide_tensor **dx, tide_tensor **dweight, tide_tensor **dbias) {
  const char *op = "layer_norm_backward";
  TIDE_TRY(need_float(dout, op, "dout"));
  TIDE_TRY(need_float(x, op, "x"));
  TIDE_TRY(need_float(mean, op, "mean"));
  TIDE_TRY(need_float(rstd, op, "rstd"));
  if (!dx) return tide_fail("%s: dx is NULL", op);
  if (x->ndim < 1) return tide_fail("%s: x must have at least 1 dimension, got a 0-d tensor", op);
  char b1[160], b2[160], b3[160];
  if (dout->ndim != x->ndim || memcmp(dout->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
    return tide_fail("%s: dout of shape %s does not match x of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, x->ndim, x->shape));
  int64_t C = x->shape[x->ndim - 1], rows = 1;
  for (int32_t d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  if (mean->numel != rows || rstd->numel != rows)
    return tide_fail("%s: mean and rstd must hold one value per row of x (%lld rows for x of shape %s), got shapes %s and %s", op,
                     (long long)rows, tide_shape_str(b1, sizeof b1, x->ndim, x->shape),
                     tide_shape_str(b2, sizeof b2, mean->ndim, mean->shape), tide_shape_str(b3, sizeof b3, rstd->ndim, rstd->shape));
  if (weight) TIDE_TRY(need_affine(weight, C, op, "weight"));
  if (dweight) *dweight = NULL;
  if (dbias) *dbias = NULL;
  int want_w = weight && dweight, want_b = dbias != NULL;
  int32_t cd = compute_dtype(x->dtype == TIDE_F64 || dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32);
  int32_t pd = weight ? weight->dtype : x->dtype;
  tide_tensor *xc = NULL, *dyc = NULL, *wc = NULL, *mc = NULL, *rc_ = NULL, *g = NULL, *gw = NULL, *gb = NULL;
  double *part = NULL;
  int rc = -1;
  if (!(xc = tide_contiguous_as(x, cd)) || !(dyc = tide_contiguous_as(dout, cd))) goto done;
  if (weight && !(wc = tide_contiguous_as(weight, cd))) goto done;
  if (!(mc = tide_contiguous_as(mean, TIDE_F64)) || !(rc_ = tide_contiguous_as(rstd, TIDE_F64))) goto done;
  if (!(g = tide_new(cd, x->ndim, x->shape))) goto done;
  int64_t rb = block_rows(rows), nblk = C ? (rows + rb - 1) / rb : 0;
  int nparts = want_w + want_b;
  if (nparts && nblk) {
    part = malloc((size_t)nblk * (size_t)C * sizeof(double) * (size_t)nparts);
    if (!part) {
      tide_fail("%s: out of memory for %lld partial sums", op, (long long)(nblk * C * nparts));
      goto done;
    }
  }
  double *pw = want_w && part ? part : NULL, *pb = want_b && part ? part + (want_w ? nblk * C : 0) : NULL;
  if (C) {
    if (cd == TIDE_F32)
      ln_bwd_f32((const float *)dyc->data, (const float *)xc->data, wc ? (const float *)wc->data : NULL,
                 (const double *)mc->data, (const double *)rc_->data, (float *)g->data, pw, pb, rows, C, rb);
    else
      ln_bwd_f64((const double *)dyc->data, (const double *)xc->data, wc ? (const double *)wc->data : NULL,
                 (const double *)mc->data, (const double *)rc_->data, (double *)g->data, pw, pb, rows, C, rb);
  }
  if (want_w && !(gw = sum_partials(pw, nblk, C, pd))) goto done;
  if (want_b && !(gb = sum_partials(pb, nblk, C, pd))) goto done;
  if (!(g = to_dtype(g, x->dtype))) goto done;
  *dx = g;
  g = NULL;
  if (want_w) { *dweight = gw; gw = NULL; }
  if (want_b) { *dbias = gb; gb = NULL; }
  rc = 0;
done:
  free(part);
  tide_tensor_release(xc);
  tide_tensor_release(dyc);
  tide_tensor_release(wc);
  tide_tensor_release(mc);
  tide_tensor_release(rc_);
  tide_tensor_release(g);
  tide_tensor_release(gw);
  tide_tensor_release(gb);
  return rc;
}
