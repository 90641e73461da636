/* The GELU's gradient (its forward is TIDE_GELU among the unary kernels).
   The op layer (runtime/ops/gelu.c) checks and converts the operands; the
   kernel computes over a strided shape, strides in elements. */
#ifndef TIDE_KERNELS_NN_GELU_H
#define TIDE_KERNELS_NN_GELU_H
#include "tide.h"

struct tide_gelu_kernels {
  /* dx = dout * gelu'(x) elementwise over shape (tanh approximation), all three of compute dtype cd
     (f32 or f64). */
  int (*gelu_backward)(int32_t cd, int32_t ndim, const int64_t *shape, void *dx, const int64_t *dx_stride,
                       const void *dout, const int64_t *dout_stride, const void *x, const int64_t *x_stride);
};

/* The CPU's (kernels/cpu/nn_gelu.c). */
extern const struct tide_gelu_kernels tide_cpu_gelu;

#endif
