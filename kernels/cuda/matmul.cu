// The matmul family on CUDA (kernels/matmul.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "matmul.h"
}

extern "C" const struct tide_matmul_kernels tide_cuda_matmul = {};
