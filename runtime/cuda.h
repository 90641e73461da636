/* The CUDA side as the engine sees it; the kernels live in kernels/cuda/. */
#ifndef TIDE_CUDA_H
#define TIDE_CUDA_H
#include "tide.h"

/* Fills n floats at device pointer p with value (kernels/cuda/fill.cu); returns 0 or -1 with the CUDA error kept. */
int tide_cuda_fill_f32(float *p, int64_t n, float value);

/* tide_cuda_blas_version is declared in tide_api.h (runtime/cuda_libs.c). */

#endif
