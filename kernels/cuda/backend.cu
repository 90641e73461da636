// The CUDA backend's table: each family's kernels, defined in the file of the
// same name (kernels/cuda/<family>.cu), in the field order of kernels/backend.h.
#include "common.cuh"
extern "C" {
#include "backend.h"
#include "fill.h"
#include "copy.h"
#include "unary.h"
#include "binary.h"
#include "nn_gelu.h"
#include "reduce.h"
#include "cumsum.h"
#include "sort.h"
#include "index.h"
#include "random.h"
#include "matmul.h"
#include "adamw.h"
#include "nn_embedding.h"
#include "nn_loss.h"
#include "nn_attention.h"
#include "nn_dropout.h"
#include "nn_norm.h"
#include "nn_softmax.h"

extern const struct tide_fill_kernels tide_cuda_fill;
extern const struct tide_copy_kernels tide_cuda_copy;
extern const struct tide_unary_kernels tide_cuda_unary;
extern const struct tide_binary_kernels tide_cuda_binary;
extern const struct tide_gelu_kernels tide_cuda_gelu;
extern const struct tide_reduce_kernels tide_cuda_reduce;
extern const struct tide_cumsum_kernels tide_cuda_cumsum;
extern const struct tide_sort_kernels tide_cuda_sort;
extern const struct tide_index_kernels tide_cuda_index;
extern const struct tide_random_kernels tide_cuda_random;
extern const struct tide_matmul_kernels tide_cuda_matmul;
extern const struct tide_adamw_kernels tide_cuda_adamw;
extern const struct tide_embedding_kernels tide_cuda_embedding;
extern const struct tide_loss_kernels tide_cuda_loss;
extern const struct tide_attention_kernels tide_cuda_attention;
extern const struct tide_dropout_kernels tide_cuda_dropout;
extern const struct tide_norm_kernels tide_cuda_norm;
extern const struct tide_softmax_kernels tide_cuda_softmax;
}

extern "C" const tide_backend tide_cuda_backend = {
  "cuda",
  &tide_cuda_fill,
  &tide_cuda_copy,
  &tide_cuda_unary,
  &tide_cuda_binary,
  &tide_cuda_gelu,
  &tide_cuda_reduce,
  &tide_cuda_cumsum,
  &tide_cuda_sort,
  &tide_cuda_index,
  NULL, // join: cat/stack copy into slots of their result (runtime/ops/join.c)
  &tide_cuda_random,
  &tide_cuda_matmul,
  &tide_cuda_adamw,
  &tide_cuda_embedding,
  &tide_cuda_loss,
  &tide_cuda_attention,
  &tide_cuda_dropout,
  &tide_cuda_norm,
  &tide_cuda_softmax,
};

extern "C" const tide_backend *tide_cuda_backend_get(void) { return &tide_cuda_backend; }
