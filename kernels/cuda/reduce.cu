// The reduce family on CUDA (kernels/reduce.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "reduce.h"
}

extern "C" const struct tide_reduce_kernels tide_cuda_reduce = {};
