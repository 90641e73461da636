/* Reduction kernels (sum, mean, prod, max, min, argmax, argmin) over one
   dimension or every element of a strided input. The op layer
   (runtime/ops/reduce.c) checks the operand, picks the output dtype and shape
   and allocates the outputs; a backend only computes. */
#ifndef TIDE_KERNELS_REDUCE_H
#define TIDE_KERNELS_REDUCE_H
#include "tide.h"

struct tide_reduce_kernels {
  /* out[o] = op (enum tide_reduce_op) of inp over dimension dim, or over every element when dim < 0.
     inp has dtype, ndim dims, shape and stride (in elements); out is contiguous, out_dtype, in the input's
     dim order without dim. indices (i64, same layout, may be NULL) receives the positions for TIDE_MAX and
     TIDE_MIN over one dim. The op layer refuses max/min/argmax/argmin over an empty dim. */
  int (*reduce)(void *out, int64_t *indices, const void *inp, int32_t op, int32_t dtype, int32_t out_dtype,
                int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dim);
};

/* The CPU's reduction kernels (kernels/cpu/reduce.c). */
extern const struct tide_reduce_kernels tide_cpu_reduce;

#endif
