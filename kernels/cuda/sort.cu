// The sort family on CUDA (kernels/sort.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "sort.h"
}

extern "C" const struct tide_sort_kernels tide_cuda_sort = {};
