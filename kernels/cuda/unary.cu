// The unary family on CUDA (kernels/unary.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "unary.h"
}

extern "C" const struct tide_unary_kernels tide_cuda_unary = {};
