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
#include "nn_norm.h"
#include "dtype.h"
#include "iter.h" /* TIDE_GRAIN */
#include "error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Adds the nblk partial rows of p in block order into o[C]. */
static void sum_partials(double *o, const double *p, int64_t nblk, int64_t C) {
  int par = nblk * C >= TIDE_GRAIN;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t k = 0; k < nblk; k++) s += p[k * C + c];
    o[c] = s;
  }
}

/* table entries ---------------------------------------------------------------------- */

static int layernorm_forward(void *out, double *mean, double *rstd, const void *inp, const void *weight, const void *bias,
                             int64_t rows, int64_t C, double eps, int32_t dtype) {
  if (dtype == TIDE_F32)
    ln_fwd_f32((const float *)inp, (const float *)weight, (const float *)bias, (float *)out, mean, rstd, C ? rows : 0, C,
               eps);
  else if (dtype == TIDE_F64)
    ln_fwd_f64((const double *)inp, (const double *)weight, (const double *)bias, (double *)out, mean, rstd,
               C ? rows : 0, C, eps);
  else
    return tide_fail("layer_norm: no kernel for dtype %s", tide_dtype_name(dtype));
  if (C == 0) {  /* as PyTorch's kernel: mean 0 / 0 and rstd from it */
    for (int64_t r = 0; r < rows; r++) {
      mean[r] = NAN;
      rstd[r] = NAN;
    }
  }
  return 0;
}

static int layernorm_backward(void *dinp, double *dweight, double *dbias, const void *dout, const void *inp,
                              const void *weight, const double *mean, const double *rstd, int64_t rows, int64_t C,
                              int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("layer_norm_backward: no kernel for dtype %s", tide_dtype_name(dtype));
  int64_t rb = block_rows(rows), nblk = C ? (rows + rb - 1) / rb : 0;
  int nparts = (dweight != NULL) + (dbias != NULL);
  double *part = NULL;
  if (nparts && nblk) {
    part = malloc((size_t)nblk * (size_t)C * sizeof(double) * (size_t)nparts);
    if (!part)
      return tide_fail("layer_norm_backward: out of memory for %lld partial sums", (long long)(nblk * C * nparts));
  }
  double *pw = dweight && part ? part : NULL, *pb = dbias && part ? part + (dweight ? nblk * C : 0) : NULL;
  if (C) {
    if (dtype == TIDE_F32)
      ln_bwd_f32((const float *)dout, (const float *)inp, (const float *)weight, mean, rstd, (float *)dinp, pw, pb, rows,
                 C, rb);
    else
      ln_bwd_f64((const double *)dout, (const double *)inp, (const double *)weight, mean, rstd, (double *)dinp, pw, pb,
                 rows, C, rb);
  }
  if (dweight) sum_partials(dweight, pw, nblk, C);
  if (dbias) sum_partials(dbias, pb, nblk, C);
  free(part);
  return 0;
}

/* residual add + layer norm ------------------------------------------------------------
   What the unfused ops compute, in their order: s = x + r as the add op (f32/f64 in their
   own type; bf16/f16 computed in f32 and rounded, as the op layer's pointwise path), then
   the op layer's layer_norm over s: f32/f64 straight into the kernels above, bf16/f16
   through f32 copies and a rounding of the result; mean/rstd narrowed to f32 for the f32
   family. The backward likewise: layernorm_backward on f32 (or f64) operands, its dx cast
   to dtype, then ds + dx by the add op's rule. So GPT-2's CPU results keep their bits when
   its residual adds move into this op. */

/* n elements of a float dtype as f32 (exact for bf16/f16). */
static void load_f32(float *d, const void *s, int64_t n, int32_t dt) {
  int par = n >= TIDE_GRAIN;
  if (dt == TIDE_F32) {
    memcpy(d, s, (size_t)n * sizeof(float));
  } else if (dt == TIDE_BF16) {
    const uint16_t *h = s;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) d[i] = tide_bf16_to_f32(h[i]);
  } else {
    const uint16_t *h = s;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) d[i] = tide_f16_to_f32(h[i]);
  }
}

/* n f32 values rounded to bf16/f16 (nearest even), as a cast does. */
static void store_f32(void *d, const float *s, int64_t n, int32_t dt) {
  int par = n >= TIDE_GRAIN;
  uint16_t *h = d;
  if (dt == TIDE_BF16) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) h[i] = tide_f32_to_bf16(s[i]);
  } else {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) h[i] = tide_f32_to_f16(s[i]);
  }
}

/* o = a + b elementwise in dtype dt, as the add op computes it (o may be a or b). */
static void add_rows(void *o, const void *a, const void *b, int64_t n, int32_t dt) {
  int par = n >= TIDE_GRAIN;
  if (dt == TIDE_F32) {
    float *oo = o;
    const float *aa = a, *bb = b;
#pragma omp parallel for simd schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) oo[i] = aa[i] + bb[i];
  } else if (dt == TIDE_F64) {
    double *oo = o;
    const double *aa = a, *bb = b;
#pragma omp parallel for simd schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) oo[i] = aa[i] + bb[i];
  } else if (dt == TIDE_BF16) {
    uint16_t *oo = o;
    const uint16_t *aa = a, *bb = b;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) oo[i] = tide_f32_to_bf16(tide_bf16_to_f32(aa[i]) + tide_bf16_to_f32(bb[i]));
  } else {
    uint16_t *oo = o;
    const uint16_t *aa = a, *bb = b;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < n; i++) oo[i] = tide_f32_to_f16(tide_f16_to_f32(aa[i]) + tide_f16_to_f32(bb[i]));
  }
}

/* Allocations of the residual kernels, freed together (the backward takes 7 at most). */
#define SCRATCH_MAX 8
struct scratch {
  void *p[SCRATCH_MAX];
  int n;
};
static void *grab(struct scratch *sc, size_t bytes) {
  if (sc->n == SCRATCH_MAX) return NULL;  /* reported as out of memory; not reached by the two kernels below */
  void *p = malloc(bytes ? bytes : 1);
  if (p) sc->p[sc->n++] = p;
  return p;
}
static void drop(struct scratch *sc) {
  for (int i = 0; i < sc->n; i++) free(sc->p[i]);
}

static int residual_layernorm_forward(void *s, void *out, void *mean, void *rstd, const void *x, const void *r,
                                      const void *weight, const void *bias, int64_t rows, int64_t C, double eps,
                                      int32_t dtype) {
  const char *op = "residual_layer_norm";
  if (!tide_is_float(dtype)) return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
  if (r && !s) return tide_fail("%s: r given without s", op);
  int64_t n = rows * C;
  if (r) add_rows(s, x, r, n, dtype);
  const void *src = r ? s : x;
  if (dtype == TIDE_F64) return layernorm_forward(out, mean, rstd, src, weight, bias, rows, C, eps, TIDE_F64);
  struct scratch sc = {{0}, 0};
  int rc = -1;
  double *md = grab(&sc, (size_t)rows * 2 * sizeof(double));
  if (!md) goto oom;
  if (dtype == TIDE_F32) {
    if (layernorm_forward(out, md, md + rows, src, weight, bias, rows, C, eps, TIDE_F32)) goto done;
  } else {
    float *xf = grab(&sc, (size_t)n * sizeof(float)), *yf = grab(&sc, (size_t)n * sizeof(float));
    float *wf = weight ? grab(&sc, (size_t)C * sizeof(float)) : NULL, *bf = bias ? grab(&sc, (size_t)C * sizeof(float)) : NULL;
    if (!xf || !yf || (weight && !wf) || (bias && !bf)) goto oom;
    load_f32(xf, src, n, dtype);
    if (wf) load_f32(wf, weight, C, dtype);
    if (bf) load_f32(bf, bias, C, dtype);
    if (layernorm_forward(yf, md, md + rows, xf, wf, bf, rows, C, eps, TIDE_F32)) goto done;
    store_f32(out, yf, n, dtype);
  }
  for (int64_t i = 0; i < rows; i++) {
    ((float *)mean)[i] = (float)md[i];
    ((float *)rstd)[i] = (float)md[rows + i];
  }
  rc = 0;
  goto done;
oom:
  tide_fail("%s: out of memory for the f32 copies of %lld x %lld elements", op, (long long)rows, (long long)C);
done:
  drop(&sc);
  return rc;
}

static int residual_layernorm_backward(void *dx, void *dweight, void *dbias, const void *ds, const void *dout,
                                       const void *s, const void *weight, const void *mean, const void *rstd,
                                       int64_t rows, int64_t C, int32_t dtype) {
  const char *op = "residual_layer_norm_backward";
  if (!tide_is_float(dtype)) return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
  int64_t n = rows * C;
  if (!dout && n) return tide_fail("%s: dout is NULL", op);
  struct scratch sc = {{0}, 0};
  int rc = -1;
  const double *md = mean, *rd = rstd;
  double *gw = NULL, *gb = NULL;
  if (dtype != TIDE_F64) {  /* the op layer widened the f32 statistics to f64 (exact) */
    double *m = grab(&sc, (size_t)rows * 2 * sizeof(double));
    if (!m) goto oom;
    for (int64_t i = 0; i < rows; i++) {
      m[i] = ((const float *)mean)[i];
      m[rows + i] = ((const float *)rstd)[i];
    }
    md = m;
    rd = m + rows;
  }
  if ((dweight && !(gw = grab(&sc, (size_t)C * sizeof(double)))) || (dbias && !(gb = grab(&sc, (size_t)C * sizeof(double)))))
    goto oom;
  if (dtype == TIDE_F32 || dtype == TIDE_F64) {
    if (layernorm_backward(dx, gw, gb, dout, s, weight, md, rd, rows, C, dtype)) goto done;
  } else {
    float *dyf = grab(&sc, (size_t)n * sizeof(float)), *sf = grab(&sc, (size_t)n * sizeof(float));
    float *wf = weight ? grab(&sc, (size_t)C * sizeof(float)) : NULL;
    if (!dyf || !sf || (weight && !wf)) goto oom;
    load_f32(dyf, dout, n, dtype);
    load_f32(sf, s, n, dtype);
    if (wf) load_f32(wf, weight, C, dtype);
    float *gf = grab(&sc, (size_t)n * sizeof(float));
    if (!gf) goto oom;
    if (layernorm_backward(gf, gw, gb, dyf, sf, wf, md, rd, rows, C, TIDE_F32)) goto done;
    store_f32(dx, gf, n, dtype);
  }
  if (ds) add_rows(dx, ds, dx, n, dtype);
  for (int64_t c = 0; c < C; c++) {
    if (gw) tide_store_f64((char *)dweight + c * tide_dtype_size(dtype), dtype, gw[c]);
    if (gb) tide_store_f64((char *)dbias + c * tide_dtype_size(dtype), dtype, gb[c]);
  }
  rc = 0;
  goto done;
oom:
  tide_fail("%s: out of memory for the f32 copies of %lld x %lld elements", op, (long long)rows, (long long)C);
done:
  drop(&sc);
  return rc;
}

const struct tide_norm_kernels tide_cpu_norm = {
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .residual_layernorm_forward = residual_layernorm_forward,
    .residual_layernorm_backward = residual_layernorm_backward,
};
