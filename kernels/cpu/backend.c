/* The CPU backend's table: each family's kernels, defined in the file of the
   same name. A family still NULL here runs through its pre-seam entry points
   until it is moved under the op layer. */
#include "backend.h"
#include "copy.h"
#include "fill.h"
#include "adamw.h"
#include "matmul.h"
#include "nn_loss.h"
#include "nn_embedding.h"
#include "cumsum.h"
#include "reduce.h"
#include "sort.h"
#include "unary.h"
#include "binary.h"
#include "nn_gelu.h"
#include "index.h"
#include "random.h"
#include "nn_attention.h"
#include "nn_dropout.h"
#include "nn_norm.h"
#include "nn_softmax.h"

const tide_backend tide_cpu_backend = {
  .name = "cpu",

  .fill = &tide_cpu_fill,

  .copy = &tide_cpu_copy,

  .unary = &tide_cpu_unary,

  .binary = &tide_cpu_binary,

  .gelu = &tide_cpu_gelu,

  .reduce = &tide_cpu_reduce,

  .cumsum = &tide_cpu_cumsum,

  .sort = &tide_cpu_sort,

  .index = &tide_cpu_index,

  .join = NULL, /* none needed: cat/stack copy into slots of their result (runtime/ops/join.c) */

  .random = &tide_cpu_random,

  .matmul = &tide_cpu_matmul,

  .adamw = &tide_cpu_adamw,

  .embedding = &tide_cpu_embedding,

  .loss = &tide_cpu_loss,

  .attention = &tide_cpu_attention,

  .dropout = &tide_cpu_dropout,

  .norm = &tide_cpu_norm,

  .softmax = &tide_cpu_softmax,
};
