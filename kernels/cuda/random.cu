// The random family on CUDA (kernels/random.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "random.h"
}

extern "C" const struct tide_random_kernels tide_cuda_random = {};
