// The dropout family on CUDA (kernels/nn_dropout.h). The forward's draws
// follow runtime/philox.h's dropout layout: a thread per Philox block gives
// elements 4b..4b+3 their f32-family uniforms, so the masks are the CPU's bit
// for bit; the scaling is one rounded multiply, as on the CPU.
#include "common.cuh"
extern "C" {
#include "nn_dropout.h"
#include "dtype.h"
#include "philox.h"
}
#include <math.h>

namespace {

// u = k * 2^-24 < p  <=>  k < ceil(p * 2^24): the CPU's integer threshold.
template <class T>
__global__ void dropout_fwd(T *y, uint8_t *mask, const T *x, int64_t n, uint64_t seed, uint64_t base, uint32_t thr,
                            T scale) {
  int64_t blocks = (n + 3) / 4;
  TIDE_CUDA_FOR(b, blocks) {
    uint32_t w[4];
    tide_philox_block(seed, base, (uint64_t)b, w);
    for (int s = 0; s < 4; s++) {
      int64_t i = b * 4 + s;
      if (i >= n) break;
      uint8_t keep = (w[s] >> 8) >= thr;
      mask[i] = keep;
      y[i] = keep ? x[i] * scale : (T)0;
    }
  }
}

int dropout_forward(void *out, uint8_t *mask, const void *inp, int64_t n, double p, uint64_t seed, uint64_t offset,
                    int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("dropout: no kernel for dtype %s", tide_dtype_name(dtype));
  if (n == 0) return 0;
  uint32_t thr = (uint32_t)ceil(p * 16777216.0);
  double scale = 1.0 / (1.0 - p);
  unsigned grid = tide_cuda_blocks((n + 3) / 4);
  if (dtype == TIDE_F32)
    TIDE_CUDA_LAUNCH("dropout", dropout_fwd<float>, grid, TIDE_CUDA_THREADS, 0, (float *)out, mask, (const float *)inp,
                     n, seed, offset, thr, (float)scale);
  else
    TIDE_CUDA_LAUNCH("dropout", dropout_fwd<double>, grid, TIDE_CUDA_THREADS, 0, (double *)out, mask,
                     (const double *)inp, n, seed, offset, thr, scale);
  return 0;
}

// operands: 0 dinp, 1 dout (elements of T), 2 mask (bytes)
template <class T>
__global__ void dropout_bwd(T *dx, const T *dy, const uint8_t *mask, tide_cuda_strided<3> g, int64_t n, T scale) {
  TIDE_CUDA_FOR(i, n) {
    dx[g.offset(0, i)] = mask[g.offset(2, i)] ? dy[g.offset(1, i)] * scale : (T)0;
  }
}

int dropout_backward(void *dinp, const int64_t *dinp_strides, const void *dout, const int64_t *dout_strides,
                     const uint8_t *mask, const int64_t *mask_strides, int32_t ndim, const int64_t *shape, double p,
                     int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("dropout_backward: no kernel for dtype %s", tide_dtype_name(dtype));
  tide_cuda_strided<3> g;
  const int64_t *st[3] = {dinp_strides, dout_strides, mask_strides};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  double scale = 1.0 / (1.0 - p);
  if (dtype == TIDE_F32)
    TIDE_CUDA_LAUNCH("dropout_backward", dropout_bwd<float>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (float *)dinp,
                     (const float *)dout, mask, g, n, (float)scale);
  else
    TIDE_CUDA_LAUNCH("dropout_backward", dropout_bwd<double>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0,
                     (double *)dinp, (const double *)dout, mask, g, n, scale);
  return 0;
}

}  // namespace

extern "C" const struct tide_dropout_kernels tide_cuda_dropout = {dropout_forward, dropout_backward};
