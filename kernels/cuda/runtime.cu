// The CUDA runtime table of runtime/cuda.h, and the launch check every
// kernel calls. Compiled by nvcc it drives the GPU through the CUDA runtime
// (linked statically: it loads the driver, libcuda, when first used, so a
// build with CUDA starts fast and runs on machines without a driver); compiled
// by g++ the same calls go to the CPU emulator of tests/cudaemu.
//
// Process state (the CUDA context is per process too): the debug-sync switch,
// the graph capture under way (one at a time) with each device's capture
// stream, and each device's launch counters.
#include "common.cuh"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

int sync_debug = -1;  // -1: not yet read from TIDE_CUDA_SYNC

enum { MAX_DEVICES = 64 };
// The device whose work is being captured into a graph, -1 when none; its
// kernels then go to capture_streams[device] instead of the legacy stream.
int32_t capturing_device = -1;
cudaStream_t capture_streams[MAX_DEVICES];

// Fails op when the host would need the device during a capture (nothing has run yet).
int refuse_in_capture(const char *op, const char *why) {
  if (capturing_device < 0) return 0;
  return tide_fail("%s %s, which cannot run while a CUDA graph is being captured (on cuda:%d): do it before "
                   "tide.cuda.graph or after replay", op, why, capturing_device);
}

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
  // a new segment for a graph's pool during capture: cudaMalloc is not recorded, and is
  // allowed once this thread's capture mode is relaxed (the segment outlives every replay)
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  if (capturing_device >= 0) cudaThreadExchangeStreamCaptureMode(&mode);
  cudaError_t e = cudaMalloc(p, n);
  if (capturing_device >= 0) cudaThreadExchangeStreamCaptureMode(&mode);
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
  if (to_device == 2) {  // on the stream: recorded when capturing, in order with the kernels otherwise
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, TIDE_CUDA_STREAM);
    if (e != cudaSuccess) return device_fault(e, "copy on the device");
    return 0;
  }
  if (refuse_in_capture(to_device == 1 ? "copy to the device:" : "copy to the host:",
                        to_device == 1 ? "a copy from host memory (a CPU tensor moved to the device)"
                                       : "reading device memory on the host (item, tolist, printing, a copy to "
                                         "the CPU) waits for the device"))
    return -1;
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
  if (refuse_in_capture("synchronize:", "waits for the device")) return -1;
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

// --- graphs --------------------------------------------------------------

void count_launch(int32_t dev, const char *op, const char *kernel);

int capture_begin() {
  if (capturing_device >= 0)
    return tide_fail("cuda.graph: a CUDA graph is already being captured on cuda:%d (captures do not nest)",
                     capturing_device);
  int32_t dev = tide_cuda_current();
  if (dev < 0 || dev >= MAX_DEVICES) return tide_fail("cuda.graph: cuda:%d cannot capture", dev);
  if (!capture_streams[dev]) {
    // a blocking stream: work sent to the legacy stream during the capture fails instead of escaping it
    cudaError_t e = cudaStreamCreateWithFlags(&capture_streams[dev], cudaStreamDefault);
    if (e != cudaSuccess) {
      capture_streams[dev] = nullptr;
      return device_fault(e, "cuda.graph: creating the capture stream");
    }
  }
  // thread-local: this thread's unsafe calls (a stray cudaMalloc, cudaFree) invalidate the capture
  cudaError_t e = cudaStreamBeginCapture(capture_streams[dev], cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) return device_fault(e, "cuda.graph: beginning the capture");
  capturing_device = dev;
  return 0;
}

int capture_end(void **graph) {
  *graph = nullptr;
  if (capturing_device < 0) return tide_fail("cuda.graph: no CUDA graph is being captured");
  int32_t dev = capturing_device;
  capturing_device = -1;
  cudaGraph_t g = nullptr;
  cudaError_t e = cudaStreamEndCapture(capture_streams[dev], &g);
  if (e != cudaSuccess || !g) {
    (void)cudaGetLastError();
    if (g) cudaGraphDestroy(g);
    return tide_fail("cuda.graph: the capture on cuda:%d failed: %s (some work of the captured function left "
                     "tide's stream, or waited for the device)", dev, cudaGetErrorString(e));
  }
  *graph = (void *)g;
  return 0;
}

int32_t capture_device() { return capturing_device; }

int graph_instantiate(void *graph, void **exec) {
  cudaGraphExec_t x = nullptr;
  cudaError_t e = cudaGraphInstantiate(&x, (cudaGraph_t)graph, 0);
  if (e != cudaSuccess) return device_fault(e, "cuda.graph: instantiating the graph");
  *exec = (void *)x;
  return 0;
}

int graph_launch(void *exec) {
  if (refuse_in_capture("graph replay:", "is a graph launch")) return -1;
  count_launch(tide_cuda_current(), "graph_replay", "graph_replay");  // one launch from the host
  cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)exec, TIDE_CUDA_STREAM);
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e == cudaSuccess && debug_sync()) {
    e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
  }
  if (e != cudaSuccess) return device_fault(e, "graph replay");
  return 0;
}

void graph_destroy(void *graph, void *exec) {
  if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
  if (graph) cudaGraphDestroy((cudaGraph_t)graph);
}

// --- launch statistics -----------------------------------------------------

// One (op, launch name) pair's count; entries never move, so their names stay valid.
struct LaunchEntry {
  char op[32], kernel[32];
  uint64_t count;
  bool used;
};
enum { STAT_SLOTS = 1024 };  // distinct pairs per device; past that they count as ("(other)", "(other)")
struct LaunchStats {
  LaunchEntry slot[STAT_SLOTS];
  int32_t order[STAT_SLOTS];  // slots in the order they were first used
  int32_t n;
  uint64_t total, graphs;
};
LaunchStats *launch_stats_of[MAX_DEVICES];
pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t hash_names(const char *a, const char *b) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over both names
  for (; *a; a++) h = (h ^ (unsigned char)*a) * 1099511628211ull;
  h = (h ^ 0xff) * 1099511628211ull;
  for (; *b; b++) h = (h ^ (unsigned char)*b) * 1099511628211ull;
  return h;
}

void count_launch(int32_t dev, const char *op, const char *kernel) {
  if (dev < 0 || dev >= MAX_DEVICES) return;
  pthread_mutex_lock(&stats_lock);
  LaunchStats *st = launch_stats_of[dev];
  if (!st) st = launch_stats_of[dev] = (LaunchStats *)calloc(1, sizeof(LaunchStats));
  if (st) {
    st->total++;
    if (strcmp(kernel, "graph_replay") == 0) st->graphs++;
    uint64_t h = hash_names(op, kernel);
    LaunchEntry *hit = nullptr;
    for (int32_t i = 0; i < STAT_SLOTS && !hit; i++) {
      int32_t k = (int32_t)((h + (uint64_t)i) % STAT_SLOTS);
      LaunchEntry *e = &st->slot[k];
      if (!e->used) {
        if (st->n >= STAT_SLOTS - 1) break;  // keep one slot for "(other)"
        e->used = true;
        snprintf(e->op, sizeof e->op, "%s", op);
        snprintf(e->kernel, sizeof e->kernel, "%s", kernel);
        st->order[st->n++] = k;
        hit = e;
      } else if (strncmp(e->op, op, sizeof e->op - 1) == 0 && strncmp(e->kernel, kernel, sizeof e->kernel - 1) == 0) {
        hit = e;
      }
    }
    if (!hit) {  // full: the spare slot
      for (int32_t k = 0; k < STAT_SLOTS && !hit; k++)
        if (!st->slot[k].used) {
          hit = &st->slot[k];
          hit->used = true;
          snprintf(hit->op, sizeof hit->op, "(other)");
          snprintf(hit->kernel, sizeof hit->kernel, "(other)");
          st->order[st->n++] = k;
        } else if (strcmp(st->slot[k].op, "(other)") == 0) {
          hit = &st->slot[k];
        }
    }
    if (hit) hit->count++;
  }
  pthread_mutex_unlock(&stats_lock);
}

int32_t launch_stats(int32_t dev, int32_t cap, const char **ops, const char **kernels, uint64_t *counts,
                     uint64_t *total, uint64_t *graphs) {
  *total = 0;
  *graphs = 0;
  if (dev < 0 || dev >= MAX_DEVICES) return 0;
  pthread_mutex_lock(&stats_lock);
  LaunchStats *st = launch_stats_of[dev];
  int32_t n = 0;
  if (st) {
    *total = st->total;
    *graphs = st->graphs;
    for (int32_t i = 0; i < st->n; i++) {
      const LaunchEntry *e = &st->slot[st->order[i]];
      if (e->count == 0) continue;  // zeroed by a reset
      if (n < cap) {
        ops[n] = e->op;
        kernels[n] = e->kernel;
        counts[n] = e->count;
      }
      n++;
    }
  }
  pthread_mutex_unlock(&stats_lock);
  return n;
}

void reset_launch_stats(int32_t dev) {
  if (dev < 0 || dev >= MAX_DEVICES) return;
  pthread_mutex_lock(&stats_lock);
  LaunchStats *st = launch_stats_of[dev];
  if (st) {
    st->total = st->graphs = 0;
    for (int32_t i = 0; i < st->n; i++) st->slot[st->order[i]].count = 0;  // names stay valid
  }
  pthread_mutex_unlock(&stats_lock);
}

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

const tide_cuda_runtime table = {kName,           device_count,      set_device,     raw_alloc,
                                 raw_free,        copy,              synchronize,    mem_info,
                                 set_sync_debug,  poison,            kPoison,        capture_begin,
                                 capture_end,     capture_device,    graph_instantiate, graph_launch,
                                 graph_destroy,   launch_stats,      reset_launch_stats};

}  // namespace

extern "C" const tide_cuda_runtime *tide_cuda_runtime_get(void) { return &table; }

extern "C" cudaStream_t tide_cuda_stream(void) {
  return capturing_device >= 0 && capturing_device == tide_cuda_current() ? capture_streams[capturing_device]
                                                                          : (cudaStream_t)0;
}

extern "C" int tide_cuda_after_launch(const char *op) {
  // counted under the op the op layer dispatched (the op that launched) and the launch's own name
  const char *by = tide_cuda_launching_op(op);
  count_launch(tide_cuda_current(), by[0] ? by : op, op);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return device_fault(e, op);
  if (debug_sync() && capturing_device < 0) {  // nothing runs during a capture: nothing to wait for
    e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return device_fault(e, op);
  }
  return 0;
}

extern "C" int tide_cuda_to_host(void *dst, const void *src, size_t n, const char *op) {
  if (n == 0) return 0;
  if (capturing_device >= 0)
    return tide_fail("%s: reads device memory on the host (a check or a host result), which cannot run while a "
                     "CUDA graph is being captured (on cuda:%d)", op, capturing_device);
  cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost);
  if (e != cudaSuccess) return device_fault(e, op);
  return 0;
}

extern "C" int tide_cuda_to_device(void *dst, const void *src, size_t n, const char *op) {
  if (n == 0) return 0;
  if (capturing_device >= 0)
    return tide_fail("%s: copies host memory to the device, which cannot run while a CUDA graph is being captured "
                     "(on cuda:%d)", op, capturing_device);
  cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) return device_fault(e, op);
  return 0;
}
