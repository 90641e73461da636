/* Normalisation kernels (layer norm over the last dimension), forward and
   backward, one table per backend. Operands are contiguous [rows, C] in the
   compute dtype (TIDE_F32 or TIDE_F64; the op layer converts bf16/f16);
   the per-row statistics are f64 whatever the dtype, so the f32 family's
   mean and rstd round once when the op layer narrows them. */
#ifndef TIDE_KERNELS_NN_NORM_H
#define TIDE_KERNELS_NN_NORM_H
#include "tide.h"

struct tide_norm_kernels {
  /* out = (inp - mean) * rstd * weight + bias per row, as PyTorch's native_layer_norm (biased
     variance, rstd = 1 / sqrt(var + eps)); weight and bias may be NULL. mean and rstd receive one
     value per row; with C == 0 they are NaN. */
  int (*layernorm_forward)(void *out, double *mean, double *rstd, const void *inp, const void *weight,
                           const void *bias, int64_t rows, int64_t C, double eps, int32_t dtype);
  /* dinp from dout, inp, weight (NULL: none) and the forward's mean and rstd; dweight = sum over
     rows of dout * xhat and dbias = sum of dout, [C] in f64, each written when not NULL. The row
     sums are formed in blocks fixed by the row count, so every thread count gives the same bits. */
  int (*layernorm_backward)(void *dinp, double *dweight, double *dbias, const void *dout, const void *inp,
                            const void *weight, const double *mean, const double *rstd, int64_t rows, int64_t C,
                            int32_t dtype);
};

/* The CPU backend's norm kernels (kernels/cpu/nn_norm.c). */
extern const struct tide_norm_kernels tide_cpu_norm;

#endif
