// The CUDA runtime table of runtime/cuda.h, and the launch check every
// kernel calls. Compiled by nvcc it drives the GPU through the CUDA runtime
// (linked statically: it loads the driver, libcuda, when first used, so a
// build with CUDA starts fast and runs on machines without a driver); compiled
// by g++ the same calls go to the CPU emulator of tests/cudaemu.
//
// Process state (the CUDA context is per process too): the debug-sync switch.
#include "common.cuh"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

int sync_debug = -1;  // -1: not yet read from TIDE_CUDA_SYNC

bool debug_sync() {
  if (sync_debug < 0) {
    const char *v = getenv("TIDE_CUDA_SYNC");
    sync_debug = v && *v && strcmp(v, "0") != 0;
  }
  return sync_debug != 0;
}

// An error from the device: names what was asked and the ops that may have caused it.
int device_fault(cudaError_t e, const char *what) {
  char ops[300];
  tide_cuda_recent_ops(ops, sizeof ops);
  (void)cudaGetLastError();  // clears an error that is not sticky, so the device can go on
  int dev = tide_cuda_current();
  if (ops[0])
    return tide_fail("%s on cuda:%d: %s (the last ops launched, oldest first: %s; TIDE_CUDA_SYNC=1 checks after "
                     "every op to find the one at fault)", what, dev, cudaGetErrorString(e), ops);
  return tide_fail("%s on cuda:%d: %s", what, dev, cudaGetErrorString(e));
}

int32_t device_count() {
  int n = 0;
  // no driver or no GPU is an answer (0), not an error
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

int set_device(int32_t d) {
  cudaError_t e = cudaSetDevice(d);
  if (e != cudaSuccess) return tide_fail("cannot use cuda:%d: %s", d, cudaGetErrorString(e));
  return 0;
}

int raw_alloc(void *ctx, size_t n, void **p) {
  int dev = (int)(intptr_t)ctx;
  int cur = 0;
  if (cudaGetDevice(&cur) != cudaSuccess || (cur != dev && cudaSetDevice(dev) != cudaSuccess)) return 1;
  cudaError_t e = cudaMalloc(p, n);
  if (cur != dev) cudaSetDevice(cur);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // an out-of-memory error is not sticky: clear it
    *p = nullptr;
    return 1;
  }
  return 0;
}

void raw_free(void *ctx, void *p) {
  int dev = (int)(intptr_t)ctx, cur = 0;
  if (cudaGetDevice(&cur) == cudaSuccess && cur != dev) cudaSetDevice(dev);
  cudaFree(p);  // synchronises the device: nothing still uses the segment
  if (cur != dev) cudaSetDevice(cur);
}

int copy(void *dst, const void *src, size_t n, int32_t to_device) {
  if (n == 0) return 0;
  cudaMemcpyKind kind = to_device == 1 ? cudaMemcpyHostToDevice
                      : to_device == 0 ? cudaMemcpyDeviceToHost : cudaMemcpyDeviceToDevice;
  // pageable host memory: the copy is synchronous with respect to the host, so
  // the host buffer may be freed or read as soon as this returns
  cudaError_t e = cudaMemcpy(dst, src, n, kind);
  if (e != cudaSuccess)
    return device_fault(e, to_device == 1 ? "copy to the device" : to_device == 0 ? "copy to the host"
                                                                                  : "copy on the device");
  return 0;
}

int synchronize() {
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e != cudaSuccess) return device_fault(e, "synchronize");
  return 0;
}

int mem_info(size_t *f, size_t *t) {
  cudaError_t e = cudaMemGetInfo(f, t);
  if (e != cudaSuccess) return tide_fail("cuda.mem_get_info: %s", cudaGetErrorString(e));
  return 0;
}

void set_sync_debug(int32_t on) { sync_debug = on != 0; }

int poison(void *p, size_t n) {
  cudaError_t e = cudaMemsetAsync(p, 0xFF, n, TIDE_CUDA_STREAM);
  if (e != cudaSuccess) return device_fault(e, "poison");
  return 0;
}

#if defined(__CUDACC__)
const char kName[] = "CUDA";
const int32_t kPoison = 0;  // a GPU pays for it: opt in with TIDE_CUDA_POISON=1 (tests/gpu/run.sh does)
#else
const char kName[] = "cudaemu";
const int32_t kPoison = 1;  // tests: a block reused from the cache shows unwritten elements too
#endif

const tide_cuda_runtime table = {kName,    device_count,   set_device, raw_alloc, raw_free, copy, synchronize,
                                 mem_info, set_sync_debug, poison,     kPoison};

}  // namespace

extern "C" const tide_cuda_runtime *tide_cuda_runtime_get(void) { return &table; }

extern "C" int tide_cuda_after_launch(const char *op) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return device_fault(e, op);
  if (debug_sync()) {
    e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return device_fault(e, op);
  }
  return 0;
}

extern "C" int tide_cuda_to_host(void *dst, const void *src, size_t n, const char *op) {
  if (n == 0) return 0;
  cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) return device_fault(e, op);
  return 0;
}

extern "C" int tide_cuda_to_device(void *dst, const void *src, size_t n, const char *op) {
  if (n == 0) return 0;
  cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) return device_fault(e, op);
  return 0;
}
