/* The fill family's kernels: constants into any strided view, and
   arithmetic ranges. */
#ifndef TIDE_KERNELS_FILL_H
#define TIDE_KERNELS_FILL_H
#include "tide.h"

struct tide_fill_kernels {
  /* Sets every element of the ndim-d strided view at dst (strides in elements) to value,
     converted to dtype once (floats to integers saturate). */
  int (*fill)(void *dst, int32_t dtype, const int64_t *stride, int32_t ndim, const int64_t *shape, double value);
  /* Writes start + i * step for i in [0, n) into contiguous dst of dtype; i64 computes in
     wrapping integers from start and step rounded to i64, the others in double. */
  int (*arange)(void *dst, int32_t dtype, int64_t n, double start, double step);
};

/* The CPU backend's fill kernels (kernels/cpu/fill.c). */
extern const struct tide_fill_kernels tide_cpu_fill;

#endif
