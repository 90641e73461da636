// The binary family on CUDA (kernels/binary.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "binary.h"
}

extern "C" const struct tide_binary_kernels tide_cuda_binary = {};
