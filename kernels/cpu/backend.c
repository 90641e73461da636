/* The CPU backend's table: each family's kernels, defined in the file of the
   same name. A family still NULL here runs through its pre-seam entry points
   until it is moved under the op layer. */
#include "backend.h"
#include "cumsum.h"
#include "reduce.h"
#include "sort.h"

const tide_backend tide_cpu_backend = {
  .name = "cpu",

  .fill = NULL,

  .copy = NULL,

  .unary = NULL,

  .binary = NULL,

  .gelu = NULL,

  .reduce = &tide_cpu_reduce,

  .cumsum = &tide_cpu_cumsum,

  .sort = &tide_cpu_sort,

  .index = NULL,

  .join = NULL,

  .random = NULL,

  .matmul = NULL,

  .adamw = NULL,

  .embedding = NULL,

  .loss = NULL,

  .attention = NULL,

  .dropout = NULL,

  .norm = NULL,

  .softmax = NULL,
};
