// The index family on CUDA (kernels/index.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "index.h"
}

extern "C" const struct tide_index_kernels tide_cuda_index = {};
