// kernels/cuda/fill.cu compiled under the emulator; its entry point is renamed
// so that it cannot clash with the nvcc-built one in tide_engine.
#define tide_cuda_fill_f32 tide_emu_cuda_fill_f32
#include "../../kernels/cuda/fill.cu"
