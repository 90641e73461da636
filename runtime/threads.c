/* The thread count: one setting for both pools the CPU kernels use, OpenMP
   (elementwise ops, reductions, small batched matmuls) and OpenBLAS's own
   threads (large GEMMs), so `tide.set_num_threads(1)` really means one core. */
#include "tide.h"
#include "error.h"
#include <cblas.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* More threads than this per core only adds memory (each OpenBLAS thread has
   its own buffers; under an address-space limit OpenBLAS retries a failed
   malloc forever) and contention. */
#define THREADS_PER_CORE 4

int32_t tide_max_threads(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  if (cores > 4096) cores = 4096;
  return (int32_t)(cores * THREADS_PER_CORE);
}

int tide_set_num_threads(int32_t n) {
  int32_t max = tide_max_threads();
  if (n < 1 || n > max)
    return tide_fail("set_num_threads: %d threads is out of range (1 to %d: %d per core on this machine's %d cores)", n, max,
                     THREADS_PER_CORE, max / THREADS_PER_CORE);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  openblas_set_num_threads(n);
  return 0;
}

int32_t tide_get_num_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return openblas_get_num_threads();
#endif
}
