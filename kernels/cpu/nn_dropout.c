/* Inverted dropout, forward and backward.

   RANDOM DRAWS (part of the stream contract of runtime/philox.h, which a
   CUDA kernel must follow to give the same masks): element i of x, in
   logical row-major order whatever x's strides, takes the f32-family uniform
   draw of the layout, slot i % 4 of block i / 4, u = (w[i % 4] >> 8) * 2^-24,
   exactly what tide_rand_ on an f32 tensor of x's shape would draw; the
   element is dropped when u < p and kept (mask 1) otherwise, so it is kept
   with probability 1 - p up to the 2^-24 grid. The generator's offset then
   advances by ceil(numel / 4). p = 0 and p = 1 draw nothing and leave the
   generator as it was.

   out = x * scale for kept elements with scale = 1 / (1 - p) rounded to the
   compute type (PyTorch multiplies by the scalar the same way), and exactly 0
   for dropped ones (also for a non-finite x, and with no 0 * inf at p = 1).
   bf16/f16 compute through f32. */
#include "pw_loops.h"
#include "../../runtime/ops/pointwise.h" /* until this family moves under the op layer */
#include "philox.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int check_p(double p, const char *op) {
  if (!(p >= 0.0 && p <= 1.0)) return tide_fail("%s: probability p must be in [0, 1], got %g", op, p);
  return 0;
}

/* Draws the mask and writes out for elements [b0 * 4, min(b1 * 4, n)) of
   contiguous x, a chunk at a time: the draws (integer compares against
   thr = ceil(p * 2^24), the same as u < p) then a vectorised scaling pass. */
#define DROP_CHUNK 1024   /* elements per chunk: its mask bytes are still in L1 for the scaling pass */
#define DROPOUT_BLOCKS(T, SUF)                                                                                  \
  static void dropout_blocks_##SUF(const T *x, T *y, uint8_t *mask, int64_t n, int64_t b0, int64_t b1,          \
                                   uint64_t seed, uint64_t base, uint32_t thr, T scale) {                       \
    for (int64_t c0 = b0; c0 < b1; c0 += DROP_CHUNK / 4) {                                                      \
      int64_t c1 = c0 + DROP_CHUNK / 4 < b1 ? c0 + DROP_CHUNK / 4 : b1;                                         \
      int64_t i0 = c0 * 4, i1 = c1 * 4 < n ? c1 * 4 : n;                                                        \
      int64_t full = c1 < n / 4 ? c1 : n / 4; /* whole blocks: a fixed-shape loop that vectorises */            \
      for (int64_t b = c0; b < full; b++) {                                                                     \
        uint32_t w[4];                                                                                          \
        tide_philox_block(seed, base, (uint64_t)b, w);                                                          \
        for (int s = 0; s < 4; s++) mask[b * 4 + s] = (w[s] >> 8) >= thr;                                       \
      }                                                                                                         \
      if (full < c1) { /* the last, partial block */                                                            \
        uint32_t w[4];                                                                                          \
        tide_philox_block(seed, base, (uint64_t)full, w);                                                       \
        for (int64_t s = 0; s < n - full * 4; s++) mask[full * 4 + s] = (w[s] >> 8) >= thr;                     \
      }                                                                                                         \
      PW_SIMD for (int64_t i = i0; i < i1; i++) y[i] = mask[i] ? x[i] * scale : (T)0;                            \
    }                                                                                                           \
  }
DROPOUT_BLOCKS(float, f32)
DROPOUT_BLOCKS(double, f64)

/* mask may be NULL when not wanted (the draws are the same either way). */
int tide_dropout(const tide_tensor *x, double p, tide_generator *g, tide_tensor **out, tide_tensor **mask) {
  const char *op = "dropout";
  if (!x) return tide_fail("%s: x is NULL (expected a tensor)", op);
  if (!g) return tide_fail("%s: generator is NULL", op);
  if (!out) return tide_fail("%s: out is NULL", op);
  TIDE_TRY(tide_check_tensor(x, op));
  if (!tide_is_float(x->dtype))
    return tide_fail("%s: x must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(x->dtype));
  TIDE_TRY(check_p(p, op));
  int32_t cd = x->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t n = x->numel;
  tide_tensor *xc = NULL, *y = NULL, *m = NULL;
  int rc = -1;
  if (!(m = tide_new(TIDE_U8, x->ndim, x->shape))) goto done;
  if (p == 0.0 || p == 1.0) {
    /* a fresh tensor either way, never x itself, so a later in-place op on out leaves x alone */
    memset(m->data, p == 0.0, (size_t)n);
    if (!(y = tide_new(x->dtype, x->ndim, x->shape))) goto done;
    if (p == 0.0) { if (tide_copy_into(y, x)) goto done; }
    else memset(y->data, 0, (size_t)n * (size_t)tide_dtype_size(x->dtype));  /* all-zero bits: 0 in every float type */
  } else {
    if (!(xc = tide_contiguous_as(x, cd)) || !(y = tide_new(cd, x->ndim, x->shape))) goto done;
    int64_t blocks = (n + 3) / 4;
    uint64_t seed = g->seed, base = g->offset;
    /* u = k * 2^-24 < p  <=>  k < p * 2^24 (exact)  <=>  k < ceil(p * 2^24) for the integer k */
    uint32_t thr = (uint32_t)ceil(p * 16777216.0);
    double scale = 1.0 / (1.0 - p);
    int nt = 1;
#ifdef _OPENMP
    if (n >= 2 * TIDE_GRAIN) nt = omp_get_max_threads();
#endif
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      int t = 0, k = 1;
#ifdef _OPENMP
      t = omp_get_thread_num();
      k = omp_get_num_threads();
#endif
      int64_t b0 = blocks * t / k, b1 = blocks * (t + 1) / k;
      if (cd == TIDE_F32)
        dropout_blocks_f32((const float *)xc->data, (float *)y->data, (uint8_t *)m->data, n, b0, b1, seed, base, thr, (float)scale);
      else
        dropout_blocks_f64((const double *)xc->data, (double *)y->data, (uint8_t *)m->data, n, b0, b1, seed, base, thr, scale);
    }
    g->offset = base + (uint64_t)blocks;
    if (x->dtype != cd) {
      tide_tensor *r = tide_contiguous_as(y, x->dtype);
      tide_tensor_release(y);
      if (!(y = r)) goto done;
    }
  }
  *out = y;
  y = NULL;
  if (mask) { *mask = m; m = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(y);
  tide_tensor_release(m);
  return rc;
}

/* operands: dx, dout, mask (u8/bool); ctx: the scale in the compute type */
#define DROPOUT_BWD_LOOP(T, SUF)                                                                   \
  static void dropout_bwd_##SUF(char **p, const int64_t *st, int64_t n, void *ctx) {               \
    const T s = *(const T *)ctx;                                                                   \
    if (st[0] == (int64_t)sizeof(T) && st[1] == (int64_t)sizeof(T) && st[2] == 1) {               \
      T *o = (T *)p[0];                                                                            \
      const T *dy = (const T *)p[1];                                                               \
      const uint8_t *m = (const uint8_t *)p[2];                                                    \
      PW_SIMD for (int64_t i = 0; i < n; i++) o[i] = m[i] ? dy[i] * s : (T)0;                      \
    } else {                                                                                       \
      for (int64_t i = 0; i < n; i++)                                                              \
        *(T *)(p[0] + i * st[0]) = *(const uint8_t *)(p[2] + i * st[2]) ? *(const T *)(p[1] + i * st[1]) * s : (T)0; \
    }                                                                                              \
  }
DROPOUT_BWD_LOOP(float, f32)
DROPOUT_BWD_LOOP(double, f64)

/* dx has dout's dtype; p = 1 gives zeros. */
int tide_dropout_backward(const tide_tensor *dout, const tide_tensor *mask, double p, tide_tensor **dx) {
  const char *op = "dropout_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!mask) return tide_fail("%s: mask is NULL (expected the tensor saved by dropout)", op);
  if (!dx) return tide_fail("%s: dx is NULL", op);
  TIDE_TRY(tide_check_tensor(dout, op));
  TIDE_TRY(tide_check_tensor(mask, op));
  if (!tide_is_float(dout->dtype))
    return tide_fail("%s: dout must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(dout->dtype));
  if (mask->dtype != TIDE_U8 && mask->dtype != TIDE_BOOL)
    return tide_fail("%s: mask must be a u8 or bool tensor, got %s", op, tide_dtype_name(mask->dtype));
  TIDE_TRY(check_p(p, op));
  if (dout->ndim != mask->ndim || memcmp(dout->shape, mask->shape, sizeof(int64_t) * (size_t)dout->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match mask of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, mask->ndim, mask->shape));
  }
  if (p == 1.0) return tide_full(dout->dtype, dout->ndim, dout->shape, 0.0, dout->device, dx);
  int32_t cd = dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  double scale = 1.0 / (1.0 - p);
  float sf = (float)scale;
  tide_tensor *dyc = tide_pw_operand(dout, cd), *res = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if ((res = tide_new(dout->dtype, dout->ndim, dout->shape))) {
    const tide_tensor *ins[2] = {dyc, mask};
    rc = tide_pw_run(cd == TIDE_F32 ? dropout_bwd_f32 : dropout_bwd_f64, cd == TIDE_F32 ? (void *)&sf : (void *)&scale, cd, res,
                     dout->ndim, dout->shape, 2, ins);
    if (rc == 0) {
      *dx = res;
      res = NULL;
    }
  }
  tide_tensor_release(dyc);
  tide_tensor_release(res);
  return rc;
}
