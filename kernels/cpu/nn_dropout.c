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
#include "nn_dropout.h"
#include "dtype.h"
#include "error.h"
#include "pw_loops.h"
#include "philox.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

static int dropout_forward(void *out, uint8_t *mask, const void *inp, int64_t n, double p, uint64_t seed,
                           uint64_t offset, int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("dropout: no kernel for dtype %s", tide_dtype_name(dtype));
  int64_t blocks = (n + 3) / 4;
  uint64_t base = offset;
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
    if (dtype == TIDE_F32)
      dropout_blocks_f32((const float *)inp, (float *)out, mask, n, b0, b1, seed, base, thr, (float)scale);
    else
      dropout_blocks_f64((const double *)inp, (double *)out, mask, n, b0, b1, seed, base, thr, scale);
  }
  return 0;
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

static int dropout_backward(void *dinp, const int64_t *dinp_strides, const void *dout, const int64_t *dout_strides,
                            const uint8_t *mask, const int64_t *mask_strides, int32_t ndim, const int64_t *shape,
                            double p, int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("dropout_backward: no kernel for dtype %s", tide_dtype_name(dtype));
  double scale = 1.0 / (1.0 - p);
  float sf = (float)scale;
  int64_t es = tide_dtype_size(dtype), st[3][TIDE_MAX_DIMS];
  for (int32_t i = 0; i < ndim; i++) {
    st[0][i] = dinp_strides[i] * es;
    st[1][i] = dout_strides[i] * es;
    st[2][i] = mask_strides[i];
  }
  char *data[3] = {(char *)dinp, (char *)dout, (char *)mask};
  tide_iter it;
  tide_iter_init_raw(&it, ndim, shape, 3, data, (const int64_t(*)[TIDE_MAX_DIMS])st);
  tide_iter_run(&it, dtype == TIDE_F32 ? dropout_bwd_f32 : dropout_bwd_f64,
                dtype == TIDE_F32 ? (void *)&sf : (void *)&scale, TIDE_GRAIN);
  return 0;
}

const struct tide_dropout_kernels tide_cpu_dropout = {
    .dropout_forward = dropout_forward,
    .dropout_backward = dropout_backward,
};
