/* The CUDA backend where tide is built without CUDA: no runtime, no kernels.
   The op layer then reports cuda:N as unavailable in this build. */
#include "backend.h"
#include "cuda_rt.h"

const tide_cuda_runtime *tide_cuda_runtime_get(void) { return NULL; }
const tide_backend *tide_cuda_backend_get(void) { return NULL; }
int tide_cuda_blas_version(void) { return 0; }
