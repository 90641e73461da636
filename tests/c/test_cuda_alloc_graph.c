/* Graph pools of the device caching allocator (runtime/cuda_alloc.h,
   tide.cuda.graph) over host memory: during a capture requests come only
   from the pool's own segments; the pool's freed blocks serve the capture
   again but never eager requests; a block from outside released during the
   capture stays held until the pool is released; nothing goes back to
   raw_free during a capture, and the pool's segments survive empty_cache
   until the pool is released. Prints one line per check; exits 1 on any
   failure. */
#include "cuda_alloc.h"
#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(cond, ...) do { if (cond) { printf("ok   "); } else { printf("FAIL %s:%d: ", __FILE__, __LINE__); failures++; } \
  printf(__VA_ARGS__); printf("\n"); } while (0)

static int raw_allocs, raw_frees;
static int raw_alloc(void *ctx, size_t n, void **p) {
  (void)ctx;
  raw_allocs++;
  return posix_memalign(p, 256, n) != 0;
}
static void raw_free(void *ctx, void *p) {
  (void)ctx;
  raw_frees++;
  free(p);
}

static tide_cuda_alloc_stats stats(tide_cuda_alloc *a) {
  tide_cuda_alloc_stats s;
  tide_cuda_alloc_get_stats(a, &s);
  return s;
}

#define POOL (((uint64_t)1 << 63) | 7)

int main(void) {
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, NULL);
  /* an eager block, then freed: cached in the ordinary pool */
  void *e = tide_cuda_alloc_malloc(a, 4096, 0);
  void *x = tide_cuda_alloc_malloc(a, 8192, 0);  /* allocated before the capture, freed during it */
  tide_cuda_alloc_release(a, e);
  size_t alloc0 = stats(a).allocated;
  int segs0 = (int)stats(a).segments;

  tide_cuda_alloc_begin_capture(a, POOL);
  void *c1 = tide_cuda_alloc_malloc(a, 4096, 0);
  CHECK(c1 && c1 != e, "a capture does not take the eager cache's free block (%p, %p)", c1, e);
  CHECK((int)stats(a).segments == segs0 + 1, "the capture got a segment of its own");
  CHECK(tide_cuda_alloc_pool_bytes(a, POOL) == stats(a).reserved - (size_t)segs0 * (2u << 20),
        "pool_bytes is that segment");
  tide_cuda_alloc_release(a, c1);
  void *c2 = tide_cuda_alloc_malloc(a, 4096, 0);
  CHECK(c2 == c1, "the capture reuses its own freed block (replays keep the order)");
  CHECK(tide_cuda_alloc_release(a, x) == 0, "releasing an eager block during the capture succeeds");
  CHECK(stats(a).allocated == alloc0 + 4096, "... but the block stays allocated, held for the graph");
  int frees = raw_frees;
  CHECK(tide_cuda_alloc_empty_cache(a) == 0 && raw_frees == frees, "no segment is freed during a capture");
  tide_cuda_alloc_end_capture(a);

  CHECK(tide_cuda_alloc_release(a, x) != 0, "the held block cannot be released twice");
  void *e2 = tide_cuda_alloc_malloc(a, 8192, 0);
  CHECK(e2 != x, "eager requests do not get the held block");
  tide_cuda_alloc_release(a, c2);  /* the graph's output, dropped after the capture */
  void *e3 = tide_cuda_alloc_malloc(a, 4096, 0);
  CHECK(e3 != c2, "eager requests do not get the pool's free block");
  size_t pool = tide_cuda_alloc_pool_bytes(a, POOL);
  tide_cuda_alloc_empty_cache(a);
  CHECK(tide_cuda_alloc_pool_bytes(a, POOL) == pool && pool > 0, "empty_cache keeps the pool's segments");

  size_t before = stats(a).allocated;
  CHECK(tide_cuda_alloc_pool_release(a, POOL) == pool, "pool_release returns the pool's bytes");
  CHECK(stats(a).allocated == before - 8192, "pool_release releases the held block");
  CHECK(tide_cuda_alloc_pool_bytes(a, POOL) == 0, "the pool is empty after its release");
  void *e4 = tide_cuda_alloc_malloc(a, 8192, 0);
  CHECK(e4 == x, "the held block serves eager requests again (%p, %p)", e4, x);
  tide_cuda_alloc_release(a, e2);
  tide_cuda_alloc_release(a, e3);
  tide_cuda_alloc_release(a, e4);
  frees = raw_frees;
  tide_cuda_alloc_empty_cache(a);
  CHECK(raw_frees == frees + 2 && stats(a).segments == 0, "then every segment, the pool's too, goes back (%d)",
        raw_frees - frees);
  CHECK(stats(a).allocated == 0 && stats(a).live_blocks == 0, "nothing left allocated");
  tide_cuda_alloc_free(a);
  if (failures) { printf("%d failures\n", failures); return 1; }
  printf("all passed\n");
  return 0;
}
