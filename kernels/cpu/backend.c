/* The CPU backend's table: each family's kernels, defined in the file of the
   same name. A family still NULL here runs through its pre-seam entry points
   until it is moved under the op layer. */
#include "backend.h"
#include "copy.h"
#include "fill.h"

const tide_backend tide_cpu_backend = {
  .name = "cpu",

  .fill = &tide_cpu_fill,

  .copy = &tide_cpu_copy,

  .unary = NULL,

  .binary = NULL,

  .gelu = NULL,

  .reduce = NULL,

  .cumsum = NULL,

  .sort = NULL,

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
