// The dropout family on CUDA (kernels/nn_dropout.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_dropout.h"
}

extern "C" const struct tide_dropout_kernels tide_cuda_dropout = {};
