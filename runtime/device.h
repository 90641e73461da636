/* Devices: -1 is the CPU, n >= 0 is CUDA device n. Storage records its
   device; memory for it comes from that device's allocator. */
#ifndef TIDE_DEVICE_H
#define TIDE_DEVICE_H
#include "tide.h"

#define TIDE_CPU (-1)

/* Writes "cpu" or "cuda:N" into buf (always terminated). */
void tide_device_name(int32_t device, char *buf, size_t n);
/* Uninitialised memory on device, or NULL with an error set (no CUDA allocator is built yet). */
void *tide_alloc_on(int32_t device, size_t nbytes);
/* Frees memory from tide_alloc_on with the same device and size. */
void tide_free_on(int32_t device, void *p, size_t nbytes);

#endif
