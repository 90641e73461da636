/* The CPU backend's table: each family's kernels, defined in the file of the
   same name. A family still NULL here runs through its pre-seam entry points
   until it is moved under the op layer. */
#include "backend.h"
#include "index.h"
#include "random.h"

const tide_backend tide_cpu_backend = {
  .name = "cpu",

  .fill = NULL,

  .copy = NULL,

  .unary = NULL,

  .binary = NULL,

  .gelu = NULL,

  .reduce = NULL,

  .cumsum = NULL,

  .sort = NULL,

  .index = &tide_cpu_index,

  .join = NULL, /* none needed: cat/stack copy into slots of their result (runtime/ops/join.c) */

  .random = &tide_cpu_random,

  .matmul = NULL,

  .adamw = NULL,

  .embedding = NULL,

  .loss = NULL,

  .attention = NULL,

  .dropout = NULL,

  .norm = NULL,

  .softmax = NULL,
};
