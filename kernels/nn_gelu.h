/* The GELU's gradient (its forward is TIDE_GELU among the unary kernels).
   The op layer (runtime/ops/gelu.c) checks and converts the operands; the
   kernel computes over a strided shape, strides in elements. */
#ifndef TIDE_KERNELS_NN_GELU_H
#define TIDE_KERNELS_NN_GELU_H
#include "tide.h"

struct tide_gelu_kernels {
  /* dx = dout * gelu'(x) elementwise over shape (tanh approximation), all three of compute dtype cd
     (f32 or f64; bf16 where bf16_operands: read and written as bf16, computed in f32). */
  int (*gelu_backward)(int32_t cd, int32_t ndim, const int64_t *shape, void *dx, const int64_t *dx_stride,
                       const void *dout, const int64_t *dout_stride, const void *x, const int64_t *x_stride);
  /* y = gelu(x) (tanh form) over shape, both bf16, computed in f32 as the unary kernels compute f32 gelu
     (a / (1 + e^(-2u))): the bf16 GELU without f32 copies. NULL on the CPU, whose bf16 GELU goes through
     the unary kernels in f32. */
  int (*gelu_forward_bf16)(int32_t ndim, const int64_t *shape, void *y, const int64_t *y_stride, const void *x,
                           const int64_t *x_stride);
  /* 1 where gelu_backward takes cd = bf16 (CUDA); 0 on the CPU, where the op layer converts to f32. */
  int32_t bf16_operands;
};

/* The CPU's (kernels/cpu/nn_gelu.c). */
extern const struct tide_gelu_kernels tide_cpu_gelu;

#endif
