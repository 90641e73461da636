/* The CPU backend's table: each family's kernels, defined in the file of the
   same name. A family still NULL here runs through its pre-seam entry points
   until it is moved under the op layer. */
#include "backend.h"
#include "nn_attention.h"
#include "nn_dropout.h"
#include "nn_norm.h"
#include "nn_softmax.h"

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

  .index = NULL,

  .join = NULL,

  .random = NULL,

  .matmul = NULL,

  .adamw = NULL,

  .embedding = NULL,

  .loss = NULL,

  .attention = &tide_cpu_attention,

  .dropout = &tide_cpu_dropout,

  .norm = &tide_cpu_norm,

  .softmax = &tide_cpu_softmax,
};
