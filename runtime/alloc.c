#include "alloc.h"
#include "error.h"
#include <stdatomic.h>
#include <stdlib.h>

/* Allocator accounting is process-wide by nature (one heap); it is kept in
   atomics here and read only through tide_mem_get_stats(). */
static _Atomic int64_t live_bytes, peak_bytes, total_allocated, allocations;

void *tide_alloc(size_t nbytes) {
  size_t rounded = (nbytes + 63) & ~(size_t)63;
  if (rounded == 0) rounded = 64;
  void *p = aligned_alloc(64, rounded);
  if (!p) {
    tide_fail("out of memory allocating %zu bytes", nbytes);
    return NULL;
  }
  int64_t live = atomic_fetch_add(&live_bytes, (int64_t)nbytes) + (int64_t)nbytes;
  int64_t peak = atomic_load(&peak_bytes);
  while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live)) {}
  atomic_fetch_add(&total_allocated, (int64_t)nbytes);
  atomic_fetch_add(&allocations, 1);
  return p;
}

void tide_free(void *p, size_t nbytes) {
  if (!p) return;
  free(p);
  atomic_fetch_sub(&live_bytes, (int64_t)nbytes);
}

void tide_mem_get_stats(tide_mem_stats *s) {
  s->live_bytes = atomic_load(&live_bytes);
  s->peak_bytes = atomic_load(&peak_bytes);
  s->total_allocated = atomic_load(&total_allocated);
  s->allocations = atomic_load(&allocations);
}

int64_t tide_mem_live_bytes(void) { return atomic_load(&live_bytes); }
