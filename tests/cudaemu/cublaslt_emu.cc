// cuBLASLt under the emulator: the backend's matmul calls reach a reference
// GEMM here instead of the library (kernels/cuda/matmul.cu). Until the CUDA
// matmul lands, only the version query exists: 0, as in a build without CUDA.
extern "C" int tide_cuda_blas_version(void) { return 0; }
