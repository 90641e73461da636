/* cudaemu: CUDA kernels that also compile with g++ and run on the CPU, for
   tests on machines without a GPU (tests/cudaemu/README.md says how to write
   an emulatable kernel, and what the emulator cannot see).

   Under nvcc this header includes the real CUDA runtime and changes nothing:
   LAUNCH is <<<>>> and CUDAEMU_DYNAMIC_SMEM is extern __shared__. Under g++ the
   threads of a block are fibers on one OS thread, scheduled adversarially
   from a seed (CUDAEMU_SEED or cudaemu::set_seed), one block at a time. */
#ifndef TIDE_CUDAEMU_H
#define TIDE_CUDAEMU_H

#if defined(__CUDACC__)

#include <cuda_runtime.h>
#define LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
/* 16-byte aligned so that any element type up to float4 may be used. */
#define CUDAEMU_DYNAMIC_SMEM(T, name) \
  extern __shared__ __align__(16) unsigned char cudaemu_dynamic_smem_[]; \
  T *name = reinterpret_cast<T *>(cudaemu_dynamic_smem_)

#else /* the emulator */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#if !defined(CUDAEMU_NO_CUDA_HEADERS) && __has_include(<cuda_runtime.h>)
/* CUDA 13's runtime and bf16 headers compile as host code: the runtime's types
   (dim3, cudaError_t, ...) and __nv_bfloat16 are the real ones. The runtime's
   functions are renamed below to the emulator's, so nothing links libcudart. */
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#define CUDAEMU_HAVE_CUDA_HEADERS 1
#else
/* Without a CUDA toolkit: the few runtime types the kernels use. */
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidDevice = 101,
                   cudaErrorInvalidConfiguration = 9, cudaErrorIllegalState = 401, cudaErrorLaunchFailure = 719,
                   cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901,
                   cudaErrorStreamCaptureImplicit = 906 };
typedef cudaError_t cudaError;
struct CUstream_st;
typedef CUstream_st *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
                      cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1,
                               cudaStreamCaptureStatusInvalidated = 2 };
struct CUgraph_st;
typedef CUgraph_st *cudaGraph_t;
struct CUgraphExec_st;
typedef CUgraphExec_st *cudaGraphExec_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#endif

/* Qualifiers: a __shared__ variable is a function static, which is
   block-shared memory because blocks run one at a time. */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict

namespace cudaemu {

/* The running fiber's coordinates: the scheduler sets them before each resume. */
extern uint3 cur_threadIdx, cur_blockIdx;
extern dim3 cur_blockDim, cur_gridDim;

/* Seeds the schedule (the default is CUDAEMU_SEED, else 1); same seed, same schedule. */
void set_seed(uint64_t seed);
/* The message of the last failed launch (a deadlock names who waits where). */
const char *last_message();
/* The block's dynamic shared memory (0xFF garbage at each block's start). */
void *dynamic_smem();

/* Block barrier and warp collectives: the calling fiber yields until every
   thread concerned has arrived (file and line are for deadlock reports). */
void syncthreads(const char *file, int line);
enum warp_op { OP_SYNC, OP_SHFL, OP_XOR, OP_DOWN, OP_UP, OP_BALLOT, OP_ANY, OP_ALL, OP_GATHER };
uint64_t warp_collective(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file, int line);
/* The warp collective under mma.h: once every lane of mask has arrived, and
   before any resumes, each lane's all[32 * n] receives the n bytes at every
   lane's in (0xFF bytes for a lane outside the mask). The bytes are read at
   that moment, so in may point at shared memory (ldmatrix reads there). */
void warp_gather(unsigned mask, const void *in, size_t n, void *all, const char *file, int line);

template <class T> inline T shfl(int op, unsigned mask, T v, int arg, int width, const char *file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 8 bytes");
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof(T));
  bits = warp_collective(op, mask, bits, arg, width, file, line);
  T r;
  memcpy(&r, &bits, sizeof(T));
  return r;
}

/* Runs body for every thread of every block; returns cudaSuccess or the error
   that the next cudaGetLastError reports. */
cudaError_t run_grid(const char *file, int line, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);

/* Graph capture (cudaStreamBeginCapture on a stream made by cudaStreamCreate*):
   while a stream captures, work issued on it is recorded, not run, and
   cudaGraphLaunch replays it in order. Work on another stream (the legacy
   stream 0 included), a synchronous copy or memset, a synchronize, a copy
   between host and device, and, unless the capture mode is relaxed (see
   cudaThreadExchangeStreamCaptureMode), cudaMalloc and cudaFree fail and
   invalidate the capture, as on the GPU: cudaStreamEndCapture then returns
   cudaErrorStreamCaptureInvalidated. */
/* True while s captures; s == nullptr asks whether any stream captures. */
bool capturing(cudaStream_t s = nullptr);
/* Work of a library running on the host (the emulated cuBLASLt): runs it now,
   or records it when stream captures; cudaErrorStreamCaptureImplicit (and the
   capture invalidated) for another stream while one captures. */
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work, const char *what);
/* A recorded launch: the configuration and the kernel with its copied arguments. */
cudaError_t record_launch(const char *file, int line, cudaStream_t stream, dim3 grid, dim3 block, size_t smem,
                          std::function<void()> body);
/* Grids run since the process started (kernel launches, replayed ones included), for tests. */
uint64_t grids_run();
/* Times emulated device work (grids, the emulated cuBLASLt) while it lives, in this thread's CPU time;
   nested timers count once. cudaemu_device_seconds() (C linkage) is the total, so that host time can be
   told from emulated kernel time (bench/launch_overhead.lua). */
struct device_timer {
  device_timer();
  ~device_timer();
  device_timer(const device_timer &) = delete;
  device_timer &operator=(const device_timer &) = delete;
};

template <class... P, class... A>
inline void launch(const char *file, int line, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, A &&...args) {
  if (capturing()) {
    /* a copy of the arguments lives with the graph, as a captured kernel node holds its parameters */
    auto params = std::make_shared<std::tuple<typename std::decay<P>::type...>>(std::forward<A>(args)...);
    record_launch(file, line, stream, grid, block, smem, [kernel, params]() { std::apply(kernel, *params); });
    return;
  }
  /* the arguments are converted once, as a real launch copies them */
  std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
  run_grid(file, line, grid, block, smem, [&]() { std::apply(kernel, params); });
}

/* The runtime over host memory (synchronous: streams are ignored). */
cudaError_t Malloc(void **p, size_t n);
template <class T> inline cudaError_t Malloc(T **p, size_t n) { return Malloc(reinterpret_cast<void **>(p), n); }
cudaError_t Free(void *p);
cudaError_t Memcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t MemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t Memset(void *p, int v, size_t n);
cudaError_t MemsetAsync(void *p, int v, size_t n, cudaStream_t stream = 0);
cudaError_t DeviceSynchronize();
cudaError_t StreamSynchronize(cudaStream_t s);
/* Streams are names only (work runs at once), but capture tells them apart. */
cudaError_t StreamCreate(cudaStream_t *s);
cudaError_t StreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t StreamDestroy(cudaStream_t s);
cudaError_t StreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t StreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t StreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t ThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode);
cudaError_t GraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t GraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t GraphExecDestroy(cudaGraphExec_t exec);
cudaError_t GraphDestroy(cudaGraph_t graph);
/* One device (CUDAEMU_DEVICES=N gives N, all sharing host memory) with
   CUDAEMU_MEMORY bytes (default 16 GiB; suffixes K, M, G): Malloc past it is
   cudaErrorMemoryAllocation, so out-of-memory paths are testable. */
cudaError_t GetDeviceCount(int *n);
cudaError_t SetDevice(int d);
cudaError_t GetDevice(int *d);
cudaError_t MemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t MallocHost(void **p, size_t n);
cudaError_t FreeHost(void *p);
cudaError_t GetLastError();
cudaError_t PeekAtLastError();
const char *GetErrorString(cudaError_t e);

} // namespace cudaemu

#define threadIdx (::cudaemu::cur_threadIdx)
#define blockIdx (::cudaemu::cur_blockIdx)
#define blockDim (::cudaemu::cur_blockDim)
#define gridDim (::cudaemu::cur_gridDim)
#define warpSize 32

#define LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::cudaemu::launch(__FILE__, __LINE__, kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), ##__VA_ARGS__)
#define CUDAEMU_DYNAMIC_SMEM(T, name) T *name = reinterpret_cast<T *>(::cudaemu::dynamic_smem())

#define __syncthreads() ::cudaemu::syncthreads(__FILE__, __LINE__)
/* Warp collectives: functions whose default arguments record the call site. */
#define CUDAEMU_SITE_ const char *file_ = __builtin_FILE(), int line_ = __builtin_LINE()
inline void __syncwarp(unsigned mask = 0xffffffffu, CUDAEMU_SITE_) {
  ::cudaemu::warp_collective(::cudaemu::OP_SYNC, mask, 0, 0, 32, file_, line_);
}
template <class T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, CUDAEMU_SITE_) {
  return ::cudaemu::shfl(::cudaemu::OP_SHFL, mask, v, src, width, file_, line_);
}
template <class T> inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32, CUDAEMU_SITE_) {
  return ::cudaemu::shfl(::cudaemu::OP_XOR, mask, v, m, width, file_, line_);
}
template <class T> inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32, CUDAEMU_SITE_) {
  return ::cudaemu::shfl(::cudaemu::OP_DOWN, mask, v, (int)d, width, file_, line_);
}
template <class T> inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32, CUDAEMU_SITE_) {
  return ::cudaemu::shfl(::cudaemu::OP_UP, mask, v, (int)d, width, file_, line_);
}
inline unsigned __ballot_sync(unsigned mask, int p, CUDAEMU_SITE_) {
  return (unsigned)::cudaemu::warp_collective(::cudaemu::OP_BALLOT, mask, p != 0, 0, 32, file_, line_);
}
inline int __any_sync(unsigned mask, int p, CUDAEMU_SITE_) {
  return (int)::cudaemu::warp_collective(::cudaemu::OP_ANY, mask, p != 0, 0, 32, file_, line_);
}
inline int __all_sync(unsigned mask, int p, CUDAEMU_SITE_) {
  return (int)::cudaemu::warp_collective(::cudaemu::OP_ALL, mask, p != 0, 0, 32, file_, line_);
}

/* Atomics: plain read-modify-writes (one fiber runs at a time). */
template <class T> inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T> inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <class T> inline T atomicMax(T *p, T v) { T o = *p; *p = o < v ? v : o; return o; }
template <class T> inline T atomicMin(T *p, T v) { T o = *p; *p = v < o ? v : o; return o; }
template <class T> inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <class T> inline T atomicCAS(T *p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
template <class T> inline T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }
template <class T> inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
inline void __threadfence() {}

#define cudaMalloc ::cudaemu::Malloc
#define cudaFree ::cudaemu::Free
#define cudaMemcpy ::cudaemu::Memcpy
#define cudaMemcpyAsync ::cudaemu::MemcpyAsync
#define cudaMemset ::cudaemu::Memset
#define cudaMemsetAsync ::cudaemu::MemsetAsync
#define cudaDeviceSynchronize ::cudaemu::DeviceSynchronize
#define cudaGetDeviceCount ::cudaemu::GetDeviceCount
#define cudaSetDevice ::cudaemu::SetDevice
#define cudaGetDevice ::cudaemu::GetDevice
#define cudaMemGetInfo ::cudaemu::MemGetInfo
#define cudaMallocHost ::cudaemu::MallocHost
#define cudaFreeHost ::cudaemu::FreeHost
#define cudaStreamSynchronize ::cudaemu::StreamSynchronize
#define cudaGetLastError ::cudaemu::GetLastError
#define cudaPeekAtLastError ::cudaemu::PeekAtLastError
#define cudaGetErrorString ::cudaemu::GetErrorString
#define cudaStreamCreate ::cudaemu::StreamCreate
#define cudaStreamCreateWithFlags ::cudaemu::StreamCreateWithFlags
#define cudaStreamDestroy ::cudaemu::StreamDestroy
#define cudaStreamBeginCapture ::cudaemu::StreamBeginCapture
#define cudaStreamEndCapture ::cudaemu::StreamEndCapture
#define cudaStreamIsCapturing ::cudaemu::StreamIsCapturing
#define cudaThreadExchangeStreamCaptureMode ::cudaemu::ThreadExchangeStreamCaptureMode
#define cudaGraphInstantiate ::cudaemu::GraphInstantiate
#define cudaGraphLaunch ::cudaemu::GraphLaunch
#define cudaGraphExecDestroy ::cudaemu::GraphExecDestroy
#define cudaGraphDestroy ::cudaemu::GraphDestroy

#endif /* __CUDACC__ */
#endif
