/* What a device backend provides: one table of kernels per op family, each
   declared in that family's header (kernels/<family>.h) and defined by the
   backend's file of the same name (kernels/cpu/<family>.c, later
   kernels/cuda/<family>.cu). Kernels take plain pointers, sizes and strides
   and return 0 or -1 (with tide_fail's message); they know nothing of tensor
   handles, refcounts or dispatch. The op layer (runtime/ops) checks operands,
   allocates results on the operands' device and calls through this table; a
   family or kernel a backend lacks is NULL and fails as "op X is not
   implemented on NAME" (tide_not_implemented in runtime/ops/dispatch.h). */
#ifndef TIDE_KERNELS_BACKEND_H
#define TIDE_KERNELS_BACKEND_H
#include "tide.h"

typedef struct tide_backend {
  const char *name; /* "cpu", "cuda" */

  const struct tide_fill_kernels *fill;           /* kernels/fill.h */

  const struct tide_copy_kernels *copy;           /* kernels/copy.h */

  const struct tide_unary_kernels *unary;         /* kernels/unary.h */

  const struct tide_binary_kernels *binary;       /* kernels/binary.h */

  const struct tide_gelu_kernels *gelu;           /* kernels/nn_gelu.h */

  const struct tide_reduce_kernels *reduce;       /* kernels/reduce.h */

  const struct tide_cumsum_kernels *cumsum;       /* kernels/cumsum.h */

  const struct tide_sort_kernels *sort;           /* kernels/sort.h */

  const struct tide_index_kernels *index;         /* kernels/index.h */

  const struct tide_join_kernels *join;           /* kernels/join.h */

  const struct tide_random_kernels *random;       /* kernels/random.h */

  const struct tide_matmul_kernels *matmul;       /* kernels/matmul.h */

  const struct tide_adamw_kernels *adamw;         /* kernels/adamw.h */

  const struct tide_embedding_kernels *embedding; /* kernels/nn_embedding.h */

  const struct tide_loss_kernels *loss;           /* kernels/nn_loss.h */

  const struct tide_attention_kernels *attention; /* kernels/nn_attention.h */

  const struct tide_dropout_kernels *dropout;     /* kernels/nn_dropout.h */

  const struct tide_norm_kernels *norm;           /* kernels/nn_norm.h */

  const struct tide_softmax_kernels *softmax;     /* kernels/nn_softmax.h */
} tide_backend;

/* The CPU backend (kernels/cpu/backend.c). */
extern const tide_backend tide_cpu_backend;
/* The CUDA backend (kernels/cuda/backend.cu), or NULL in a build without CUDA (kernels/cuda/none.c). */
const tide_backend *tide_cuda_backend_get(void);

#endif
