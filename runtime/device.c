#include "device.h"
#include "alloc.h"
#include "error.h"
#include <stdio.h>

void tide_device_name(int32_t device, char *buf, size_t n) {
  if (device == TIDE_CPU) snprintf(buf, n, "cpu");
  else if (device >= 0) snprintf(buf, n, "cuda:%d", device);
  else snprintf(buf, n, "invalid device %d", device);
}

void *tide_alloc_on(int32_t device, size_t nbytes) {
  if (device == TIDE_CPU) return tide_alloc(nbytes);
  char name[32];
  tide_device_name(device, name, sizeof name);
  tide_fail("cannot allocate on %s: tide has no allocator for it yet (only cpu)", name);
  return NULL;
}

void tide_free_on(int32_t device, void *p, size_t nbytes) {
  if (device == TIDE_CPU) tide_free(p, nbytes);
}
