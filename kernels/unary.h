/* Elementwise unary kernels: the tide_unary_ops and clamp. The op layer
   (runtime/ops/unary.c) picks the result and compute dtypes, converts the
   operand and handles in-place targets; a kernel computes one op over a
   strided shape. Strides are in elements, 0 where an operand is broadcast. */
#ifndef TIDE_KERNELS_UNARY_H
#define TIDE_KERNELS_UNARY_H
#include "tide.h"

struct tide_unary_kernels {
  /* out = op(x) elementwise over shape for a tide_unary_op. x holds compute dtype cd (f32, f64, i32, i64
     or u8; the float-only ops, exp to reciprocal, only f32 or f64); out holds cd, or bool bytes for
     TIDE_NOT, TIDE_ISNAN and TIDE_ISINF. out may be x itself (same strides). */
  int (*unary)(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
               const void *x, const int64_t *x_stride);
  /* out = min(max(x, lo), hi) in compute dtype cd (lo first, so lo > hi gives hi; NaN elements stay NaN).
     A NaN bound is no bound; integer bounds saturate to cd's range. */
  int (*clamp)(int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride, const void *x,
               const int64_t *x_stride, double lo, double hi);
};

/* The CPU's (kernels/cpu/unary.c). */
extern const struct tide_unary_kernels tide_cpu_unary;

#endif
