/* Inverted dropout kernels, forward and backward, one table per backend.
   The forward's draws follow the stream contract of runtime/philox.h (the
   dropout entry there): element i of the [n] operand, in logical row-major
   order, is dropped when the f32-family uniform draw of slot i % 4 of Philox
   block offset + i / 4 is below p, so every backend gives the same masks. */
#ifndef TIDE_KERNELS_NN_DROPOUT_H
#define TIDE_KERNELS_NN_DROPOUT_H
#include "tide.h"

struct tide_dropout_kernels {
  /* For 0 < p < 1: mask[i] = 1 where element i of contiguous inp [n] is kept, else 0, and
     out[i] = inp[i] * scale where kept (scale = 1 / (1 - p) rounded to dtype), exactly 0 where
     dropped. Uses Philox blocks offset .. offset + ceil(n / 4) - 1 of seed; the caller advances
     its generator. dtype: TIDE_F32 or TIDE_F64. */
  int (*dropout_forward)(void *out, uint8_t *mask, const void *inp, int64_t n, double p, uint64_t seed,
                         uint64_t offset, int32_t dtype);
  /* dinp = mask ? dout * scale : 0 over shape, for p < 1; each operand has its own strides in
     elements (dout in dtype, mask u8/bool, dinp in dtype). */
  int (*dropout_backward)(void *dinp, const int64_t *dinp_strides, const void *dout, const int64_t *dout_strides,
                          const uint8_t *mask, const int64_t *mask_strides, int32_t ndim, const int64_t *shape,
                          double p, int32_t dtype);
};

/* The CPU backend's dropout kernels (kernels/cpu/nn_dropout.c). */
extern const struct tide_dropout_kernels tide_cpu_dropout;

#endif
