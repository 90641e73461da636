/* Device memory. CPU memory comes from alloc.c; memory of cuda:N from one
   caching allocator per device (cuda_alloc.c), created on first use over the
   CUDA runtime's raw allocation (runtime/cuda.h). The allocators are process
   state in the way the GPU's memory is: one per device, shared by every
   tensor on it, guarded by their own locks and created under one mutex. */
#include "device.h"
#include "alloc.h"
#include "cuda_rt.h"
#include "cuda_alloc.h"
#include "error.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEVICES 64

/* set once under allocators_lock, read without it (freeing is the hot path) */
static tide_cuda_alloc *_Atomic allocators[MAX_DEVICES];
static pthread_mutex_t allocators_lock = PTHREAD_MUTEX_INITIALIZER;
/* bytes handed out on every device, for the Lua GC pacer (tide_cuda_live_bytes) */
static _Atomic int64_t device_live;
/* the device CUDA kernels of this host thread run on */
static _Thread_local int32_t current_device = 0;
/* the last ops dispatched to a CUDA device by this thread, newest last: an
   asynchronous fault is reported with them (tide_cuda_recent_ops) */
#define RECENT 8
static _Thread_local char recent[RECENT][32];
static _Thread_local unsigned recent_n;
/* the launch name each recent op has launched first ("" while it has launched nothing): attributes
   launches to ops for tide_cuda_launching_op */
static _Thread_local char launched[RECENT][32];

void tide_device_name(int32_t device, char *buf, size_t n) {
  if (device == TIDE_CPU) snprintf(buf, n, "cpu");
  else if (device >= 0) snprintf(buf, n, "cuda:%d", device);
  else snprintf(buf, n, "invalid device %d", device);
}

int tide_device_check(int32_t device, const char *op) {
  if (device == TIDE_CPU) return 0;
  char name[32];
  tide_device_name(device, name, sizeof name);
  if (device < 0) return tide_fail("%s: %s", op, name);
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  if (!rt) return tide_fail("%s: device %s is not available: this build of tide has no CUDA backend", op, name);
  int32_t n = rt->device_count();
  if (device >= n || device >= MAX_DEVICES) {
    if (n == 0) return tide_fail("%s: device %s is not available: no CUDA device was found (%s)", op, name, rt->name);
    return tide_fail("%s: device %s is not available: %d CUDA device%s found", op, name, n, n == 1 ? " was" : "s were");
  }
  return 0;
}

int tide_device_use(int32_t device, const char *op) {
  if (device == TIDE_CPU) return 0;
  TIDE_TRY(tide_device_check(device, op));
  if (device != current_device) {
    TIDE_TRY(tide_cuda_runtime_get()->set_device(device));
    current_device = device;
  }
  return 0;
}

int32_t tide_cuda_current(void) { return current_device; }

void tide_cuda_note_op(const char *op) {
  launched[recent_n % RECENT][0] = 0;
  snprintf(recent[recent_n++ % RECENT], sizeof recent[0], "%s", op ? op : "?");
}

/* An op may dispatch another before its own kernel runs (a scalar operand on the device is made by
   full first), so the newest op is not always the one launching: the newest op that has launched
   nothing yet takes the launch, unless the newest op already launched a kernel of this name (the
   second pass of a reduction). */
const char *tide_cuda_launching_op(const char *kernel) {
  if (!recent_n) return "";
  unsigned top = (recent_n - 1) % RECENT, n = recent_n < RECENT ? recent_n : RECENT;
  if (launched[top][0] && strncmp(launched[top], kernel, sizeof launched[0] - 1) == 0) return recent[top];
  for (unsigned k = 0; k < n; k++) {
    unsigned i = (recent_n - 1 - k) % RECENT;
    if (!launched[i][0]) {
      snprintf(launched[i], sizeof launched[0], "%s", kernel[0] ? kernel : "?");
      return recent[i];
    }
  }
  return recent[top];
}

void tide_cuda_recent_ops(char *buf, size_t cap) {
  size_t len = 0;
  unsigned n = recent_n < RECENT ? recent_n : RECENT;
  buf[0] = 0;
  for (unsigned i = 0; i < n; i++) {
    int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", recent[(recent_n - n + i) % RECENT]);
    if (w < 0 || (size_t)w >= cap - len) break;
    len += (size_t)w;
  }
}

/* The device's allocator, created on first use; NULL with an error set. */
static tide_cuda_alloc *allocator(int32_t device, const char *op) {
  if (tide_device_check(device, op) != 0) return NULL;
  pthread_mutex_lock(&allocators_lock);
  tide_cuda_alloc *a = atomic_load(&allocators[device]);
  if (!a) {
    const tide_cuda_runtime *rt = tide_cuda_runtime_get();
    a = tide_cuda_alloc_new(rt->raw_alloc, rt->raw_free, (void *)(intptr_t)device);
    atomic_store(&allocators[device], a);
  }
  pthread_mutex_unlock(&allocators_lock);
  return a;
}

/* Whether new device memory is filled with 0xFF: the runtime's default, or TIDE_CUDA_POISON. */
static int poisoning(void) {
  static _Atomic int mode = -1;
  int m = atomic_load(&mode);
  if (m < 0) {
    const char *v = getenv("TIDE_CUDA_POISON");
    m = v && *v ? strcmp(v, "0") != 0 : tide_cuda_runtime_get()->poison_by_default != 0;
    atomic_store(&mode, m);
  }
  return m;
}

void *tide_alloc_on(int32_t device, size_t nbytes) {
  if (device == TIDE_CPU) return tide_alloc(nbytes);
  tide_cuda_alloc *a = allocator(device, "allocate");
  if (!a) return NULL;
  if (tide_device_use(device, "allocate") != 0) return NULL;
  void *p = tide_cuda_alloc_malloc(a, nbytes, 0);
  if (!p) {
    char name[32], msg[512];
    tide_device_name(device, name, sizeof name);
    snprintf(msg, sizeof msg, "%s", tide_last_error());
    tide_fail("%s: %s", name, msg);
    return NULL;
  }
  atomic_fetch_add(&device_live, (int64_t)nbytes);
  if (poisoning() && nbytes && tide_cuda_runtime_get()->poison(p, nbytes) != 0) {
    tide_free_on(device, p, nbytes);
    return NULL;
  }
  return p;
}

void tide_free_on(int32_t device, void *p, size_t nbytes) {
  if (device == TIDE_CPU) {
    tide_free(p, nbytes);
    return;
  }
  tide_cuda_alloc *a = p && device >= 0 && device < MAX_DEVICES ? atomic_load(&allocators[device]) : NULL;
  if (!a) return;
  /* the block is reused by later work on the same stream, which runs after
     whatever reads it now: no synchronisation is needed (one stream per device) */
  if (tide_cuda_alloc_release(a, p) == 0) atomic_fetch_sub(&device_live, (int64_t)nbytes);
}

void *tide_cuda_scratch(size_t n) { return tide_alloc_on(current_device, n); }
void tide_cuda_scratch_free(void *p, size_t n) { tide_free_on(current_device, p, n); }

int64_t tide_cuda_live_bytes(void) { return atomic_load(&device_live); }

int tide_cuda_memory_stats(int32_t device, tide_cuda_memstats *out) {
  if (!out) return tide_fail("cuda.memory_stats: out is NULL");
  memset(out, 0, sizeof *out);
  tide_cuda_alloc *a = allocator(device, "cuda.memory_stats");
  if (!a) return -1;
  tide_cuda_alloc_stats s;
  tide_cuda_alloc_get_stats(a, &s);
  out->allocated = s.allocated;
  out->reserved = s.reserved;
  out->peak_allocated = s.peak_allocated;
  out->peak_reserved = s.peak_reserved;
  out->num_mallocs = s.raw_allocs;
  out->num_frees = s.raw_frees;
  out->num_ooms = s.ooms;
  out->requests = s.requests;
  out->segments = s.segments;
  out->free_blocks = s.free_blocks;
  out->live_blocks = s.live_blocks;
  return 0;
}

int64_t tide_cuda_empty_cache(int32_t device) {
  tide_cuda_alloc *a = allocator(device, "cuda.empty_cache");
  if (!a) return -1;
  if (tide_device_use(device, "cuda.empty_cache") != 0) return -1;
  /* cudaFree waits for the device, so no kernel still uses what is returned */
  return (int64_t)tide_cuda_alloc_empty_cache(a);
}

int tide_cuda_reset_peak_memory_stats(int32_t device) {
  tide_cuda_alloc *a = allocator(device, "cuda.reset_peak_memory_stats");
  if (!a) return -1;
  tide_cuda_alloc_reset_peak(a);
  return 0;
}

int tide_cuda_synchronize(int32_t device) {
  TIDE_TRY(tide_device_use(device, "cuda.synchronize"));
  return tide_cuda_runtime_get()->synchronize();
}

int32_t tide_cuda_device_count(void) {
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  return rt ? rt->device_count() : 0;
}

const char *tide_cuda_runtime_name(void) {
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  return rt ? rt->name : "";
}

int tide_cuda_set_sync_debug(int32_t on) {
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  if (!rt) return tide_fail("cuda.set_sync_debug: this build of tide has no CUDA backend");
  rt->set_sync_debug(on != 0);
  return 0;
}

int tide_cuda_mem_info(int32_t device, int64_t *free_bytes, int64_t *total_bytes) {
  TIDE_TRY(tide_device_use(device, "cuda.mem_get_info"));
  size_t f = 0, t = 0;
  TIDE_TRY(tide_cuda_runtime_get()->mem_info(&f, &t));
  *free_bytes = (int64_t)f;
  *total_bytes = (int64_t)t;
  return 0;
}

/* --- CUDA graphs -------------------------------------------------------- */

struct tide_cuda_graph {
  int32_t device;
  uint64_t pool;       /* the allocator's tag for the graph's private pool */
  void *graph, *exec;  /* the runtime's captured and executable graphs */
  int capturing;       /* 1 until tide_cuda_graph_end */
};

/* Pool tags: the top bit set, so no stream handle is mistaken for one. */
static _Atomic uint64_t next_pool = 1;

int32_t tide_cuda_graph_capturing(void) {
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  return rt ? rt->capture_device() : -1;
}

int tide_cuda_graph_begin(int32_t device, tide_cuda_graph **out) {
  *out = NULL;
  if (device < 0) return tide_fail("cuda.graph: expected a CUDA device, got cpu");
  tide_cuda_alloc *a = allocator(device, "cuda.graph");
  if (!a) return -1;
  TIDE_TRY(tide_device_use(device, "cuda.graph"));
  tide_cuda_graph *g = calloc(1, sizeof *g);
  if (!g) return tide_fail("cuda.graph: out of host memory");
  g->device = device;
  g->pool = ((uint64_t)1 << 63) | atomic_fetch_add(&next_pool, 1);
  if (tide_cuda_runtime_get()->capture_begin() != 0) {
    free(g);
    return -1;
  }
  tide_cuda_alloc_begin_capture(a, g->pool);
  g->capturing = 1;
  *out = g;
  return 0;
}

int tide_cuda_graph_end(tide_cuda_graph *g) {
  if (!g) return tide_fail("cuda.graph: no graph");
  if (!g->capturing) return tide_fail("cuda.graph: this graph's capture has already ended");
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  tide_cuda_alloc_end_capture(atomic_load(&allocators[g->device]));
  g->capturing = 0;
  TIDE_TRY(rt->capture_end(&g->graph));
  return rt->graph_instantiate(g->graph, &g->exec);
}

int tide_cuda_graph_replay(tide_cuda_graph *g) {
  if (!g) return tide_fail("graph replay: no graph");
  if (g->capturing) return tide_fail("graph replay: the graph is still being captured");
  if (!g->exec) return tide_fail("graph replay: the graph's capture failed, so there is nothing to replay");
  TIDE_TRY(tide_device_use(g->device, "graph replay"));
  return tide_cuda_runtime_get()->graph_launch(g->exec);
}

void tide_cuda_graph_free(tide_cuda_graph *g) {
  if (!g) return;
  const tide_cuda_runtime *rt = tide_cuda_runtime_get();
  if (g->capturing) {
    /* an error left the capture open: end it, keep the error that caused it */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", tide_last_error());
    (void)tide_cuda_graph_end(g);
    tide_fail("%s", msg);
  }
  rt->graph_destroy(g->graph, g->exec);
  /* a replay still running keeps its order: what reuses the pool's blocks runs after it on the stream */
  tide_cuda_alloc *a = atomic_load(&allocators[g->device]);
  if (a) tide_cuda_alloc_pool_release(a, g->pool);
  free(g);
}

int64_t tide_cuda_graph_pool_bytes(const tide_cuda_graph *g) {
  tide_cuda_alloc *a = g ? atomic_load(&allocators[g->device]) : NULL;
  return a ? (int64_t)tide_cuda_alloc_pool_bytes(a, g->pool) : 0;
}

int32_t tide_cuda_launch_stats(int32_t device, int32_t cap, const char **ops, const char **kernels,
                               uint64_t *counts, uint64_t *total, uint64_t *graph_replays) {
  if (tide_device_check(device, "cuda.launch_stats") != 0) return -1;
  if (device == TIDE_CPU) return tide_fail("cuda.launch_stats: expected a CUDA device, got cpu");
  return tide_cuda_runtime_get()->launch_stats(device, cap, ops, kernels, counts, total, graph_replays);
}

int tide_cuda_reset_launch_stats(int32_t device) {
  if (tide_device_check(device, "cuda.reset_launch_stats") != 0) return -1;
  if (device == TIDE_CPU) return tide_fail("cuda.reset_launch_stats: expected a CUDA device, got cpu");
  tide_cuda_runtime_get()->reset_launch_stats(device);
  return 0;
}
