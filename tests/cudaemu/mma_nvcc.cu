// Compiles tests/cudaemu/mma_tile.h (and so mma.h's PTX branch) with nvcc in
// every CUDA build; nothing launches it here: on a GPU, the same kernel that
// test_cudaemu runs under the emulator is the one to run.
#include "mma_tile.h"

template __global__ void mma_tile<false>(const uint16_t *, const uint16_t *, const float *, float *, unsigned *);
template __global__ void mma_tile<true>(const uint16_t *, const uint16_t *, const float *, float *, unsigned *);
