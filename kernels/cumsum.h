/* Prefix-sum kernels. The op layer (runtime/ops/cumsum.c) checks the operand,
   makes it contiguous and allocates the output; a backend only scans. */
#ifndef TIDE_KERNELS_CUMSUM_H
#define TIDE_KERNELS_CUMSUM_H
#include "tide.h"

struct tide_cumsum_kernels {
  /* Inclusive running sum of the contiguous inp (dtype), seen as (outer, len, inner), along len into
     the contiguous out: floats keep dtype, integers and bool give i64. */
  int (*cumsum)(void *out, const void *inp, int32_t dtype, int64_t outer, int64_t len, int64_t inner);
};

/* The CPU's prefix-sum kernels (kernels/cpu/cumsum.c). */
extern const struct tide_cumsum_kernels tide_cpu_cumsum;

#endif
