/* Devices: -1 is the CPU, n >= 0 is CUDA device n. Storage records its
   device; memory for it comes from that device's allocator (the CPU's, or a
   caching allocator per CUDA device). */
#ifndef TIDE_DEVICE_H
#define TIDE_DEVICE_H
#include "tide.h"

#define TIDE_CPU (-1)

/* Writes "cpu" or "cuda:N" into buf (always terminated). */
void tide_device_name(int32_t device, char *buf, size_t n);
/* 0 when device exists in this build and on this machine, else -1 with an error naming op and why. */
int tide_device_check(int32_t device, const char *op);
/* Checks device and makes it the one CUDA kernels of this thread run on (a no-op for the CPU). */
int tide_device_use(int32_t device, const char *op);
/* Uninitialised memory on device, or NULL with an error set (out of memory names the device, the
   size asked and the bytes the allocator holds). */
void *tide_alloc_on(int32_t device, size_t nbytes);
/* Frees memory from tide_alloc_on with the same device and size. */
void tide_free_on(int32_t device, void *p, size_t nbytes);

/* CUDA graphs (tide.cuda.graph; LuaJIT declares these in lua/tide/cuda.lua). A graph owns a private pool
   of its device's allocator (cuda_alloc.h, "Graph pools"): what the captured work allocates comes from
   it, and what it frees stays reserved, so the addresses are the same at every replay. */
typedef struct tide_cuda_graph tide_cuda_graph;
/* Starts capturing device's work into a new graph (*out); until tide_cuda_graph_end, kernels are recorded,
   not run, and what needs the host fails naming the op. 0, or -1 with an error (a capture already under
   way, no CUDA backend, ...) and *out NULL. */
int tide_cuda_graph_begin(int32_t device, tide_cuda_graph **out);
/* Ends g's capture and makes it replayable; -1 with an error when the capture failed (g cannot be
   replayed then, but must still be freed). Always ends the capture. */
int tide_cuda_graph_end(tide_cuda_graph *g);
/* Launches g's recorded work once, on its device's stream after the work before it; 0 or -1. */
int tide_cuda_graph_replay(tide_cuda_graph *g);
/* Destroys g (ending its capture if it is still under way) and gives its pool back to the allocator;
   NULL is ignored. */
void tide_cuda_graph_free(tide_cuda_graph *g);
/* Bytes of device memory g's private pool holds (0 once freed). */
int64_t tide_cuda_graph_pool_bytes(const tide_cuda_graph *g);
/* The device being captured, or -1 when no capture is under way (or no CUDA backend). */
int32_t tide_cuda_graph_capturing(void);

/* Launch statistics of device (tide.cuda.launch_stats): fills up to cap entries of op names, launch
   names and counts, *total and *graph_replays; returns the number of entries (may exceed cap), or -1
   with an error. */
int32_t tide_cuda_launch_stats(int32_t device, int32_t cap, const char **ops, const char **kernels,
                               uint64_t *counts, uint64_t *total, uint64_t *graph_replays);
/* Zeroes device's launch statistics; 0 or -1. */
int tide_cuda_reset_launch_stats(int32_t device);

#endif
