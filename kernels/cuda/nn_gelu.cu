// The gelu family on CUDA (kernels/nn_gelu.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_gelu.h"
}

extern "C" const struct tide_gelu_kernels tide_cuda_gelu = {};
