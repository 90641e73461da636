// The attention family on CUDA (kernels/nn_attention.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_attention.h"
}

extern "C" const struct tide_attention_kernels tide_cuda_attention = {};
