/* Softmax and log_softmax kernels along one dimension, forward and backward,
   one table per backend. Operands are contiguous [outer, L, inner] blocks
   (reduced along L) in the compute dtype, TIDE_F32 or TIDE_F64; the op layer
   makes the copies and converts bf16/f16. */
#ifndef TIDE_KERNELS_NN_SOFTMAX_H
#define TIDE_KERNELS_NN_SOFTMAX_H
#include "tide.h"

struct tide_softmax_kernels {
  /* out = softmax(inp) along L, or log_softmax when log is 1. A row holding NaN or +inf, or
     only -inf, gives NaN throughout. */
  int (*softmax_forward)(void *out, const void *inp, int64_t outer, int64_t L, int64_t inner, int log,
                         int32_t dtype);
  /* dinp from dout and the forward's out: out * (dout - sum(dout * out)), or
     dout - exp(out) * sum(dout) for log_softmax. */
  int (*softmax_backward)(void *dinp, const void *dout, const void *out, int64_t outer, int64_t L, int64_t inner,
                          int log, int32_t dtype);
};

/* The CPU backend's softmax kernels (kernels/cpu/nn_softmax.c). */
extern const struct tide_softmax_kernels tide_cpu_softmax;

#endif
