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

#endif
