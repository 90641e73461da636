/* The thread count: one setting for both pools the CPU kernels use, OpenMP
   (elementwise ops, reductions, small batched matmuls) and OpenBLAS's own
   threads (large GEMMs), so `tide.set_num_threads(1)` really means one core. */
#include "tide.h"
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void tide_set_num_threads(int32_t n) {
  if (n <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  openblas_set_num_threads(n);
}

int32_t tide_get_num_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return openblas_get_num_threads();
#endif
}
