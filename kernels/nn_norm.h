/* Normalisation kernels (layer norm over the last dimension), forward and
   backward, one table per backend. The first two members take contiguous
   [rows, C] operands in the compute dtype (TIDE_F32 or TIDE_F64; the op layer
   converts bf16/f16) and give per-row statistics in f64, which the op layer
   narrows to f32 for the f32 family (one rounding). The residual members take
   the storage dtype directly (bf16 included) and store the statistics in the
   dtype the op returns, after accumulating them in f64 all the same. */
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

  /* Residual add fused with layer norm, in the storage dtype itself (TIDE_F32, TIDE_F64, TIDE_BF16 or
     TIDE_F16: no conversion copies around the call). x, r, s, out are contiguous [rows, C]; weight and
     bias [C] (NULL: none), all of `dtype`. With r: s = x + r rounded to dtype as the add op rounds it,
     written to s, and out = layer_norm(s) over the rounded s; with r == NULL, s is NULL and out =
     layer_norm(x) (the plain op on a backend that takes the dtype natively). Statistics accumulate in
     f64, as the family's first two members; mean and rstd [rows] are stored in the dtype the op returns
     them in (f64 for TIDE_F64, f32 for the f32 family: the op layer narrowed the f64 values to f32 before,
     so the CPU's bits are the same and no narrowing pass runs). The elementwise work is in f32 (f64 for
     TIDE_F64). The CPU kernel computes exactly what the add op and then layernorm_forward compute. */
  int (*residual_layernorm_forward)(void *s, void *out, void *mean, void *rstd, const void *x, const void *r,
                                    const void *weight, const void *bias, int64_t rows, int64_t C, double eps,
                                    int32_t dtype);
  /* dx = ds + layer_norm_backward(dout) over s (the forward's s, or x when it had no r), in `dtype` as the
     forward; ds may be NULL (dx = the layer norm gradient alone), dout may not. mean and rstd as the forward
     wrote them; dweight = sum over rows of dout * xhat and dbias = sum of dout, [C] in `dtype`, each written
     when not NULL (dweight needs weight). No float atomics: rows are cut into blocks fixed by the row count,
     each block's partial sums are written apart and added in block order, so every run gives the same bits.
     The CPU kernel computes what layernorm_backward, the cast of its result to dtype, and then the add op
     (ds + that) compute. */
  int (*residual_layernorm_backward)(void *dx, void *dweight, void *dbias, const void *ds, const void *dout,
                                     const void *s, const void *weight, const void *mean, const void *rstd,
                                     int64_t rows, int64_t C, int32_t dtype);
};

/* The CPU backend's norm kernels (kernels/cpu/nn_norm.c). */
extern const struct tide_norm_kernels tide_cpu_norm;

#endif
