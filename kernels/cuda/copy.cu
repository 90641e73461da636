// The copy family on CUDA (kernels/copy.h): strided copies with every dtype
// conversion, by the CPU backend's rules (integer pairs through int64,
// wrapping like a C cast; anything touching a float through double,
// saturating), and transfers between host and device memory.
#include "common.cuh"
extern "C" {
#include "copy.h"
#include "dtype.h"
}

__device__ __forceinline__ bool is_int_dtype(int32_t dt) { return dt >= TIDE_I32; }

__device__ __forceinline__ int64_t load_int(const char *p, int32_t dt) {
  switch (dt) {
    case TIDE_I32: return *(const int32_t *)p;
    case TIDE_I64: return *(const int64_t *)p;
    case TIDE_U8: return *(const uint8_t *)p;
    case TIDE_BOOL: return *(const uint8_t *)p != 0;
    default: return *(const uint16_t *)p;  // TIDE_U16
  }
}

__device__ __forceinline__ void store_int(char *p, int32_t dt, int64_t v) {
  switch (dt) {
    case TIDE_F32: *(float *)p = (float)v; break;
    case TIDE_F64: *(double *)p = (double)v; break;
    case TIDE_BF16: *(uint16_t *)p = tide_f32_to_bf16((float)v); break;
    case TIDE_F16: *(uint16_t *)p = tide_f32_to_f16((float)v); break;
    case TIDE_I32: *(int32_t *)p = (int32_t)(uint32_t)(uint64_t)v; break;
    case TIDE_I64: *(int64_t *)p = v; break;
    case TIDE_U8: *(uint8_t *)p = (uint8_t)v; break;
    case TIDE_BOOL: *(uint8_t *)p = v != 0; break;
    default: *(uint16_t *)p = (uint16_t)v; break;
  }
}

// one element, converted
__device__ __forceinline__ void convert(char *d, int32_t ddt, const char *s, int32_t sdt) {
  if (is_int_dtype(sdt)) store_int(d, ddt, load_int(s, sdt));
  else tide_store_f64(d, ddt, tide_load_f64(s, sdt));
}

__global__ void cast_kernel(char *dst, int32_t ddt, int32_t des, const char *src, int32_t sdt, int32_t ses,
                            tide_cuda_strided<2> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) convert(dst + g.offset(0, i) * des, ddt, src + g.offset(1, i) * ses, sdt);
}

template <class T> __global__ void move_kernel(char *dst, const char *src, tide_cuda_strided<2> g, int64_t n) {
  TIDE_CUDA_FOR(i, n) *(T *)(dst + g.offset(0, i) * (int64_t)sizeof(T)) = *(const T *)(src + g.offset(1, i) * (int64_t)sizeof(T));
}

static bool contiguous(const tide_cuda_strided<2> &g, int k) {
  int64_t s = 1;
  for (int d = g.ndim - 1; d >= 0; d--) {
    if (g.shape[d] != 1 && g.stride[k][d] != s) return false;
    s *= g.shape[d];
  }
  return true;
}

static int copy(void *dst, int32_t dst_dtype, const int64_t *dst_stride, const void *src, int32_t src_dtype,
                const int64_t *src_stride, int32_t ndim, const int64_t *shape) {
  tide_cuda_strided<2> g;
  const int64_t *st[2] = {dst_stride, src_stride};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  int32_t des = tide_dtype_size(dst_dtype), ses = tide_dtype_size(src_dtype);
  if (src_dtype == dst_dtype) {
    if (contiguous(g, 0) && contiguous(g, 1)) {
      cudaError_t e = cudaMemcpyAsync(dst, src, (size_t)n * des, cudaMemcpyDeviceToDevice, TIDE_CUDA_STREAM);
      if (e != cudaSuccess) return tide_fail("copy on cuda: %s", cudaGetErrorString(e));
      return tide_cuda_after_launch("copy");
    }
    switch (des) {
      case 1: TIDE_CUDA_LAUNCH("copy", move_kernel<uint8_t>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, (const char *)src, g, n); return 0;
      case 2: TIDE_CUDA_LAUNCH("copy", move_kernel<uint16_t>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, (const char *)src, g, n); return 0;
      case 4: TIDE_CUDA_LAUNCH("copy", move_kernel<uint32_t>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, (const char *)src, g, n); return 0;
      default: TIDE_CUDA_LAUNCH("copy", move_kernel<uint64_t>, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, (const char *)src, g, n); return 0;
    }
  }
  TIDE_CUDA_LAUNCH("copy", cast_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (char *)dst, dst_dtype, des,
                   (const char *)src, src_dtype, ses, g, n);
  return 0;
}

static int transfer(void *dst, const void *src, size_t nbytes, int32_t to_device) {
  return tide_cuda_runtime_get()->copy(dst, src, nbytes, to_device ? 1 : 0);
}

extern "C" const struct tide_copy_kernels tide_cuda_copy = {copy, transfer};
