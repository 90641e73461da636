// The loss family on CUDA (kernels/nn_loss.h). Entries still NULL fail as "not implemented on cuda".
#include "common.cuh"
extern "C" {
#include "nn_loss.h"
}

extern "C" const struct tide_loss_kernels tide_cuda_loss = {};
