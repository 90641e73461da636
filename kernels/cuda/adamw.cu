// The adamw family on CUDA (kernels/adamw.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "adamw.h"
}

extern "C" const struct tide_adamw_kernels tide_cuda_adamw = {};
