/* Elementwise binary kernels (the tide_binary_ops) and where. The op layer
   (runtime/ops/binary.c) promotes dtypes, broadcasts, turns numbers into 0-d
   operands, converts operands and handles in-place targets; a kernel computes
   one op over a strided shape. Strides are in elements, 0 where an operand is
   broadcast. */
#ifndef TIDE_KERNELS_BINARY_H
#define TIDE_KERNELS_BINARY_H
#include "tide.h"

struct tide_binary_kernels {
  /* out = a op b elementwise over shape for a tide_binary_op. a and b hold compute dtype cd (f32, f64,
     i32, i64 or u8; TIDE_DIV only f32 or f64); out holds cd, or bool bytes for the comparisons and
     logical ops (TIDE_EQ to TIDE_XOR). Integers wrap; integer fmod by 0 and negative integer powers
     must have been ruled out (find_zero_or_negative). out may be a or b itself (same strides). */
  int (*binary)(int32_t op, int32_t cd, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
                const void *a, const int64_t *a_stride, const void *b, const int64_t *b_stride);
  /* Sets *found to 1 when x, of integer compute dtype cd (i32, i64 or u8), has an element that is
     negative (negative != 0) or zero (negative == 0), else to 0. */
  int (*find_zero_or_negative)(int32_t cd, int32_t negative, int32_t ndim, const int64_t *shape, const void *x,
                               const int64_t *x_stride, int32_t *found);
  /* out = cond ? a : b elementwise over shape, for elements of any dtype (moved whole); cond holds
     bool or u8 bytes, nonzero meaning true. */
  int (*where)(int32_t dtype, int32_t ndim, const int64_t *shape, void *out, const int64_t *out_stride,
               const void *cond, const int64_t *cond_stride, const void *a, const int64_t *a_stride, const void *b,
               const int64_t *b_stride);
};

/* The CPU's (kernels/cpu/binary.c). */
extern const struct tide_binary_kernels tide_cpu_binary;

#endif
