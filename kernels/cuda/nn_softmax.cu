// The softmax family on CUDA (kernels/nn_softmax.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_softmax.h"
}

extern "C" const struct tide_softmax_kernels tide_cuda_softmax = {};
