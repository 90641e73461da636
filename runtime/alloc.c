#include "alloc.h"
#include "error.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Allocator accounting and the block cache are process-wide by nature (one
   heap, shared by every tensor); they live here and are reached only through
   the functions below.

   Why a cache: a large block from malloc is fresh mmap'd memory, and the
   first write to each page faults. A training step frees and re-allocates
   the same large temporaries every step, so without reuse an elementwise op
   writing a new 64 MB result runs at a quarter of memory bandwidth. Blocks of
   at least CACHE_MIN bytes are therefore kept on free lists by size class
   (classes 1, 1.25, 1.5, 1.75 x 2^k, so at most 25% is wasted) up to a limit,
   and handed out again before asking malloc. */

#define CACHE_MIN ((size_t)1 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define NUM_CLASSES (4 * 44)

typedef struct block {
  struct block *next;
} block;

static _Atomic int64_t live_bytes, peak_bytes, total_allocated, allocations;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static block *free_lists[NUM_CLASSES];
static int64_t cached_bytes;
static int64_t cache_limit = -1; /* -1: not yet set; see default_limit */

/* Size class index and byte size for a request of at least CACHE_MIN. */
static int size_class(size_t n, size_t *class_bytes) {
  int k = 63 - __builtin_clzll((unsigned long long)n);  /* 2^k <= n < 2^(k+1) */
  size_t base = (size_t)1 << k, step = base / 4;
  size_t q = (n - base + step - 1) / step;               /* 0..4 quarters above 2^k */
  *class_bytes = base + q * step;
  return (k - 20) * 4 + (int)q;  /* q == 4 lands on the next power's first class */
}

/* Sanitizer builds cache nothing by default: a cached block handed out again
   would hide a use-after-free from AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define TIDE_CACHE_DEFAULT_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TIDE_CACHE_DEFAULT_OFF 1
#endif
#endif

static int64_t default_limit(void) {
#ifdef TIDE_CACHE_DEFAULT_OFF
  return 0;
#endif
  /* A sixteenth of RAM, at most 1 GiB. Measured (cached bytes after a step
     with no limit): the tiny recipe's GPT-2 (d=64, 2 layers, vocab 4096,
     8x64 tokens) reuses 35 MB; d=768, vocab 50257, 4x256 tokens reuses
     2.2 GB, so large CPU runs may raise it with tide.set_cache_limit. Before,
     a quarter of RAM was kept and never given back. */
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  int64_t gib = (int64_t)1 << 30;
  if (pages <= 0 || page <= 0) return gib;
  int64_t sixteenth = (int64_t)pages * page / 16;
  return sixteenth < gib ? sixteenth : gib;
}

static void account_alloc(size_t nbytes) {
  int64_t live = atomic_fetch_add(&live_bytes, (int64_t)nbytes) + (int64_t)nbytes;
  int64_t peak = atomic_load(&peak_bytes);
  while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live)) {}
  atomic_fetch_add(&total_allocated, (int64_t)nbytes);
  atomic_fetch_add(&allocations, 1);
}

/* Frees every cached block; the caller holds cache_lock. */
static void drain_locked(void) {
  for (int c = 0; c < NUM_CLASSES; c++) {
    while (free_lists[c]) {
      block *b = free_lists[c];
      free_lists[c] = b->next;
      free(b);
    }
  }
  cached_bytes = 0;
}

/* New memory from the system. Blocks of 2 MiB and more are 2 MiB aligned and
   advised for transparent huge pages: the first write to fresh memory costs a
   page fault per page, and with 2 MiB pages there are 512 times fewer (a new
   64 MB result: about 38 ms of faults with 4 KiB pages, 6 ms with 2 MiB). */
static void *fresh_block(size_t n) {
  if (n < HUGE_PAGE) return aligned_alloc(64, n);
  void *p = aligned_alloc(HUGE_PAGE, (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, n, MADV_HUGEPAGE);  /* advice only: failure changes nothing */
#endif
  return p;
}

void *tide_alloc(size_t nbytes) {
  size_t rounded = (nbytes + 63) & ~(size_t)63;
  if (rounded == 0) rounded = 64;
  void *p = NULL;
  if (rounded >= CACHE_MIN && rounded < ((size_t)1 << 62)) {
    size_t cls_bytes;
    int c = size_class(rounded, &cls_bytes);
    rounded = cls_bytes;
    if (c < NUM_CLASSES) {
      pthread_mutex_lock(&cache_lock);
      if (free_lists[c]) {
        block *b = free_lists[c];
        free_lists[c] = b->next;
        cached_bytes -= (int64_t)cls_bytes;
        p = b;
      }
      pthread_mutex_unlock(&cache_lock);
    }
  }
  if (!p) p = fresh_block(rounded);
  if (!p) {  /* memory may be sitting in the cache: give it back and retry */
    pthread_mutex_lock(&cache_lock);
    drain_locked();
    pthread_mutex_unlock(&cache_lock);
    p = fresh_block(rounded);
  }
  if (!p) {
    tide_fail("out of memory allocating %zu bytes", nbytes);
    return NULL;
  }
  account_alloc(nbytes);
  return p;
}

void tide_free(void *p, size_t nbytes) {
  if (!p) return;
  atomic_fetch_sub(&live_bytes, (int64_t)nbytes);
  size_t rounded = (nbytes + 63) & ~(size_t)63;
  if (rounded >= CACHE_MIN && rounded < ((size_t)1 << 62)) {
    size_t cls_bytes;
    int c = size_class(rounded, &cls_bytes);
    if (c < NUM_CLASSES) {
      pthread_mutex_lock(&cache_lock);
      if (cache_limit < 0) cache_limit = default_limit();
      if (cached_bytes + (int64_t)cls_bytes <= cache_limit) {
        block *b = p;
        b->next = free_lists[c];
        free_lists[c] = b;
        cached_bytes += (int64_t)cls_bytes;
        p = NULL;
      }
      pthread_mutex_unlock(&cache_lock);
    }
  }
  free(p);
}

void tide_mem_account(int64_t delta) {
  if (delta > 0) {
    int64_t live = atomic_fetch_add(&live_bytes, delta) + delta;
    int64_t peak = atomic_load(&peak_bytes);
    while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live)) {}
  } else {
    atomic_fetch_sub(&live_bytes, -delta);
  }
}

void tide_mem_get_stats(tide_mem_stats *s) {
  s->live_bytes = atomic_load(&live_bytes);
  s->peak_bytes = atomic_load(&peak_bytes);
  s->total_allocated = atomic_load(&total_allocated);
  s->allocations = atomic_load(&allocations);
  pthread_mutex_lock(&cache_lock);
  s->cached_bytes = cached_bytes;
  s->cache_limit = cache_limit < 0 ? default_limit() : cache_limit;
  pthread_mutex_unlock(&cache_lock);
}

int64_t tide_mem_live_bytes(void) { return atomic_load(&live_bytes); }

void tide_mem_empty_cache(void) {
  pthread_mutex_lock(&cache_lock);
  drain_locked();
  pthread_mutex_unlock(&cache_lock);
}

void tide_mem_set_cache_limit(int64_t bytes) {
  pthread_mutex_lock(&cache_lock);
  cache_limit = bytes < 0 ? default_limit() : bytes;
  if (cached_bytes > cache_limit) drain_locked();
  pthread_mutex_unlock(&cache_lock);
}
