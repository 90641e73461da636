/* Ordering kernels (sort, topk) along one dimension of a strided input. The
   op layer (runtime/ops/sort.c) checks the operand, dim and k and allocates
   the outputs; a backend only orders. Order is by value with NaN largest and
   -0 equal to +0; equal values keep input order. */
#ifndef TIDE_KERNELS_SORT_H
#define TIDE_KERNELS_SORT_H
#include "tide.h"

struct tide_sort_kernels {
  /* Stable sort of inp (dtype, ndim dims, shape and stride in elements; a 0-d input is one element along
     dim 0) along dim, ascending or descending, into the contiguous values (dtype) and indices (i64) of
     inp's shape. */
  int (*sort)(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
              const int64_t *stride, int32_t dim, int32_t descending);
  /* The k largest (or smallest) along dim, in order, into the contiguous values and indices of inp's
     shape with dim of size k (0 <= k <= the size of dim). */
  int (*topk)(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
              const int64_t *stride, int32_t dim, int64_t k, int32_t largest);
};

/* The CPU's ordering kernels (kernels/cpu/sort.c). */
extern const struct tide_sort_kernels tide_cpu_sort;

#endif
