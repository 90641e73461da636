#include "tide.h"
#ifdef TIDE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int32_t tide_cuda_device_count(void) {
#ifdef TIDE_HAVE_CUDA
  int n = 0;
  /* no driver or no GPU is an answer (0), not an error */
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
#else
  return 0;
#endif
}
