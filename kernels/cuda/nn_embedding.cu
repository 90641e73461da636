// The embedding family on CUDA (kernels/nn_embedding.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_embedding.h"
}

extern "C" const struct tide_embedding_kernels tide_cuda_embedding = {};
