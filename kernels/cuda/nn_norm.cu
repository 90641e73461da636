// The norm family on CUDA (kernels/nn_norm.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_norm.h"
}

extern "C" const struct tide_norm_kernels tide_cuda_norm = {};
