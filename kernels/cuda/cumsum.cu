// The cumsum family on CUDA (kernels/cumsum.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "cumsum.h"
}

extern "C" const struct tide_cumsum_kernels tide_cuda_cumsum = {};
