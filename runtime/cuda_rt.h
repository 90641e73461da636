/* The CUDA runtime as the core sees it. The CUDA backend fills one table of
   entry points (kernels/cuda/runtime.cu: the CUDA runtime under nvcc, the
   CPU emulator of tests/cudaemu under g++); a build without CUDA links
   kernels/cuda/none.c, whose getter returns NULL. The core (device.c's
   caching allocators, transfers, synchronisation) calls only through the
   table, so it is the same object code in all three builds. */
#ifndef TIDE_CUDA_RT_H
#define TIDE_CUDA_RT_H
#include "tide.h"

typedef struct tide_cuda_runtime {
  const char *name;                             /* "CUDA" or "cudaemu" */
  /* Devices the driver reports; 0 without a driver or GPU (not an error). */
  int32_t (*device_count)(void);
  /* Makes device current for this host thread; 0 or -1 with an error set. */
  int (*set_device)(int32_t device);
  /* Raw device memory for the caching allocator (ctx is the device as intptr_t); nonzero when out of memory. */
  int (*raw_alloc)(void *ctx, size_t n, void **p);
  void (*raw_free)(void *ctx, void *p);
  /* Copies n bytes: to_device 1 is host to device, 0 device to host, 2 device to device. Device-to-host
     waits for the work before it; errors (an earlier kernel's fault included) are set and give -1. */
  int (*copy)(void *dst, const void *src, size_t n, int32_t to_device);
  /* Waits for every launched kernel of the current device; a fault becomes an error naming the recent ops. */
  int (*synchronize)(void);
  /* Free and total bytes of the current device. */
  int (*mem_info)(size_t *free_bytes, size_t *total_bytes);
  /* Debug mode: synchronise and check after every launch (TIDE_CUDA_SYNC=1 sets it at start). */
  void (*set_sync_debug)(int32_t on);
  /* Fills n bytes of device memory with 0xFF, on the stream (the allocator's poisoning). */
  int (*poison)(void *p, size_t n);
  /* 1 where every allocation is poisoned by default (the emulator: tests then see unwritten elements);
     TIDE_CUDA_POISON=1 or 0 in the environment overrides it. */
  int32_t poison_by_default;

  /* CUDA graphs. capture_begin starts recording the current device's work (on tide's stream, which is a
     capture stream until capture_end): kernels, cuBLASLt calls, device-to-device copies and memsets are
     recorded, not run, and whatever needs the host (synchronize, copies between host and device,
     tide_cuda_to_host) fails naming the op. One capture at a time in the process; 0 or -1. */
  int (*capture_begin)(void);
  /* Ends the capture (always, even when it failed); *graph is the captured graph, or NULL with -1 and an
     error when something invalidated the capture. */
  int (*capture_end)(void **graph);
  /* The device being captured, or -1 when none. */
  int32_t (*capture_device)(void);
  /* An executable graph from a captured one (the captured one may then be destroyed); 0 or -1. */
  int (*graph_instantiate)(void *graph, void **exec);
  /* Launches an executable graph on tide's stream of the current device, after the work before it; 0 or -1. */
  int (*graph_launch)(void *exec);
  /* Destroys a captured graph and an executable one (either may be NULL); a graph still running finishes. */
  void (*graph_destroy)(void *graph, void *exec);

  /* Launch statistics of device, counted by tide_cuda_after_launch: *total launches, and up to cap
     entries (op name, the name the launch gave, count) by op and launch name; returns the number of
     entries there are (may exceed cap). Names stay valid for the process. */
  int32_t (*launch_stats)(int32_t device, int32_t cap, const char **ops, const char **kernels, uint64_t *counts,
                          uint64_t *total, uint64_t *graph_launches);
  /* Zeroes device's launch statistics. */
  void (*reset_launch_stats)(int32_t device);
} tide_cuda_runtime;

/* The table, or NULL in a build without CUDA (kernels/cuda/runtime.cu or none.c). */
const tide_cuda_runtime *tide_cuda_runtime_get(void);

/* Device scratch memory for a kernel, from the current device's caching allocator (runtime/device.c);
   NULL with an error set when out of memory. Free it with the same size. */
void *tide_cuda_scratch(size_t n);
void tide_cuda_scratch_free(void *p, size_t n);
/* The device that kernels run on now (set by the op layer before it calls a CUDA kernel). */
int32_t tide_cuda_current(void);
/* Records op as dispatched to a CUDA device (the op layer calls it); the last few are named when an
   asynchronous fault surfaces. */
void tide_cuda_note_op(const char *op);
/* "mul, exp, sum": the recent ops of this thread, oldest first, into buf (always terminated). */
void tide_cuda_recent_ops(char *buf, size_t cap);
/* The op a launch named kernel belongs to, for the launch statistics: of the ops this thread dispatched
   last, the newest that has not launched yet, or the newest when it already launched a kernel of that
   name ("" before any op). */
const char *tide_cuda_launching_op(const char *kernel);

#endif
