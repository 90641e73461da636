/* The device caching allocator (runtime/cuda_alloc.h) over host memory: reuse
   without a raw allocation, splitting and coalescing in every free order,
   exact stats, out of memory with a budgeted raw allocator (flush and retry,
   the message, staying usable), streams, threads, and a seeded fragmenting
   workload checked against a shadow list of live blocks. Prints one line per
   check; exits 1 on any failure. */
#include "cuda_alloc.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...) do { checks++; if (cond) { printf("ok   "); } else { printf("FAIL %s:%d: ", __FILE__, __LINE__); failures++; } \
  printf(__VA_ARGS__); printf("\n"); } while (0)

#define MiB ((size_t)1 << 20)

/* A raw allocator over posix_memalign with a byte budget, which remembers its
   segments so tests can check that every block lies inside one. */
#define MAX_SEGS 4096
typedef struct {
  size_t budget, used;
  int nsegs;
  struct { char *p; size_t n; } segs[MAX_SEGS];
  int fail_calls;
} raw_ctx;

static int raw_alloc(void *ctx, size_t n, void **p) {
  raw_ctx *c = ctx;
  if (c->used + n > c->budget || c->nsegs == MAX_SEGS) { c->fail_calls++; return 1; }
  void *q = NULL;
  if (posix_memalign(&q, 256, n) != 0) { c->fail_calls++; return 1; }
  c->segs[c->nsegs].p = q; c->segs[c->nsegs].n = n; c->nsegs++;
  c->used += n;
  *p = q;
  return 0;
}

static void raw_free(void *ctx, void *p) {
  raw_ctx *c = ctx;
  for (int i = 0; i < c->nsegs; i++)
    if (c->segs[i].p == p) {
      c->used -= c->segs[i].n;
      c->segs[i] = c->segs[--c->nsegs];
      free(p);
      return;
    }
  fprintf(stderr, "raw_free of unknown %p\n", p);
  abort();
}

static raw_ctx *new_ctx(size_t budget) {
  raw_ctx *c = calloc(1, sizeof *c);
  c->budget = budget;
  return c;
}

static tide_cuda_alloc_stats stats(tide_cuda_alloc *a) {
  tide_cuda_alloc_stats s;
  tide_cuda_alloc_get_stats(a, &s);
  return s;
}

static void test_reuse(void) {
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  char *p = tide_cuda_alloc_malloc(a, 1000, 0);
  CHECK(p && (uintptr_t)p % 256 == 0, "small block allocated and aligned");
  CHECK(tide_cuda_alloc_release(a, p) == 0, "released");
  char *q = tide_cuda_alloc_malloc(a, 1000, 0);
  CHECK(q == p, "the freed block is reused");
  char *l = tide_cuda_alloc_malloc(a, 12 * MiB, 0);
  tide_cuda_alloc_release(a, l);
  char *l2 = tide_cuda_alloc_malloc(a, 12 * MiB - 100, 0);
  CHECK(l2 == l, "a freed large block is reused");
  tide_cuda_alloc_stats s = stats(a);
  CHECK(s.raw_allocs == 2 && s.requests == 4, "two raw allocations for four requests (%llu, %llu)",
        (unsigned long long)s.raw_allocs, (unsigned long long)s.requests);
  /* Another stream does not take this stream's free blocks (yet). */
  tide_cuda_alloc_release(a, q);
  char *r = tide_cuda_alloc_malloc(a, 1000, 7);
  CHECK(r && r != q && stats(a).raw_allocs == 3, "a block freed on stream 0 is not reused on stream 7");
  tide_cuda_alloc_release(a, r);
  char *r2 = tide_cuda_alloc_malloc(a, 1000, 7);
  CHECK(r2 == r, "but is on its own stream");
  CHECK(tide_cuda_alloc_release(a, r2) == 0 && tide_cuda_alloc_release(a, r2) == -1 &&
        strstr(tide_last_error(), "not a live block"), "a double release is an error: %s", tide_last_error());
  CHECK(tide_cuda_alloc_release(a, (char *)c) == -1, "a foreign pointer is an error");
  CHECK(tide_cuda_alloc_release(a, NULL) == 0, "releasing NULL is a no-op");
  tide_cuda_alloc_release(a, l2);
  tide_cuda_alloc_free(a);
  CHECK(c->nsegs == 0 && c->used == 0, "tide_cuda_alloc_free returns every segment");
  free(c);
}

/* Three adjacent blocks of one segment, released in the order ord. */
static void split_coalesce(size_t s0, size_t s1, size_t s2, size_t seg, const int ord[3]) {
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  size_t sz[3] = {s0, s1, s2};
  char *p[3];
  for (int i = 0; i < 3; i++) p[i] = tide_cuda_alloc_malloc(a, sz[i], 0);
  size_t r0 = (s0 + 511) / 512 * 512, r1 = (s1 + 511) / 512 * 512;
  CHECK(p[1] == p[0] + r0 && p[2] == p[1] + r1 && c->nsegs == 1 && c->segs[0].p == p[0] && c->segs[0].n == seg,
        "sizes %zu %zu %zu: three adjacent blocks at the start of one %zu-byte segment", s0, s1, s2, seg);
  tide_cuda_alloc_stats s = stats(a);
  CHECK(s.free_blocks == 1 && s.live_blocks == 3, "the remainder is one free block");
  uint64_t expect_free[3];
  /* Free blocks after each release: the remainder joins block 2 when it is freed. */
  int freed[3] = {0, 0, 0};
  for (int k = 0; k < 3; k++) {
    freed[ord[k]] = 1;
    /* runs of free blocks, with the remainder after block 2 */
    int runs = 0, prev_free = 0;
    for (int i = 0; i < 3; i++) { if (freed[i] && !prev_free) runs++; prev_free = freed[i]; }
    if (!freed[2]) runs++;
    expect_free[k] = (uint64_t)runs;
    CHECK(tide_cuda_alloc_release(a, p[ord[k]]) == 0, "release block %d", ord[k]);
    s = stats(a);
    CHECK(s.free_blocks == expect_free[k], "order %d%d%d step %d: %llu free blocks (want %llu)", ord[0], ord[1], ord[2], k,
          (unsigned long long)s.free_blocks, (unsigned long long)expect_free[k]);
  }
  s = stats(a);
  CHECK(s.free_blocks == 1 && s.segments == 1 && s.allocated == 0 && s.reserved == seg,
        "order %d%d%d: the segment is one free block again", ord[0], ord[1], ord[2]);
  CHECK(tide_cuda_alloc_empty_cache(a) == seg && c->nsegs == 0 && stats(a).raw_frees == 1 && stats(a).reserved == 0,
        "empty_cache returns it through raw_free");
  tide_cuda_alloc_free(a);
  free(c);
}

static void test_split_coalesce(void) {
  static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  for (int i = 0; i < 6; i++) split_coalesce(1000, 2000, 3000, 2 * MiB, orders[i]);
  for (int i = 0; i < 6; i++) split_coalesce(3 * MiB, 2 * MiB + 1, 4 * MiB, 20 * MiB, orders[i]);
  /* A whole small segment, and a large remainder too small to split. */
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  char *p = tide_cuda_alloc_malloc(a, 11 * MiB + 512 * 1024, 0);   /* 12 MiB segment, 512 KiB left: kept whole */
  tide_cuda_alloc_stats s = stats(a);
  CHECK(p && s.reserved == 12 * MiB && s.allocated == 12 * MiB && s.free_blocks == 0,
        "a large-pool remainder of 1 MiB or less is not split off (allocated %zu)", s.allocated);
  char *q = tide_cuda_alloc_malloc(a, 10 * MiB, 0);                /* 10 MiB segment exactly */
  s = stats(a);
  CHECK(q && s.reserved == 22 * MiB && s.free_blocks == 0, "a 10 MiB request gets a 10 MiB segment");
  tide_cuda_alloc_release(a, p);
  char *small = tide_cuda_alloc_malloc(a, 4096, 0);
  CHECK(small && stats(a).raw_allocs == 3, "small requests never take large-pool blocks");
  tide_cuda_alloc_release(a, q);
  tide_cuda_alloc_release(a, small);
  tide_cuda_alloc_free(a);
  free(c);
}

static void test_stats(void) {
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  char *x = tide_cuda_alloc_malloc(a, 100, 0);           /* 512 B in a 2 MiB segment */
  char *y = tide_cuda_alloc_malloc(a, 2 * MiB + 1, 0);   /* 2 MiB + 512 in a 20 MiB segment */
  char *z = tide_cuda_alloc_malloc(a, 30 * MiB, 0);      /* its own 30 MiB segment */
  char *w = tide_cuda_alloc_malloc(a, 0, 0);             /* 512 B, next to x */
  CHECK(w == x + 512, "a zero-byte request gets a minimal block of its own");
  tide_cuda_alloc_release(a, x);
  tide_cuda_alloc_stats s = stats(a);
  size_t peak = 512 + 2 * MiB + 512 + 30 * MiB + 512;
  CHECK(s.allocated == 2 * MiB + 512 + 30 * MiB + 512, "allocated %zu", s.allocated);
  CHECK(s.reserved == 52 * MiB && s.peak_reserved == 52 * MiB, "reserved %zu", s.reserved);
  CHECK(s.peak_allocated == peak, "peak allocated %zu (want %zu)", s.peak_allocated, peak);
  CHECK(s.raw_allocs == 3 && s.raw_frees == 0 && s.requests == 4 && s.ooms == 0 && s.segments == 3 && s.live_blocks == 3,
        "counts: %llu raw allocs, %llu requests, %llu segments", (unsigned long long)s.raw_allocs,
        (unsigned long long)s.requests, (unsigned long long)s.segments);
  CHECK(s.free_blocks == 3, "free blocks: x, the small remainder, the 20 MiB remainder (%llu)", (unsigned long long)s.free_blocks);
  CHECK(tide_cuda_alloc_empty_cache(a) == 0, "empty_cache frees nothing while every segment has a live block");
  tide_cuda_alloc_release(a, w);
  CHECK(tide_cuda_alloc_empty_cache(a) == 2 * MiB, "the small segment goes once w is released");
  s = stats(a);
  CHECK(s.reserved == 50 * MiB && s.raw_frees == 1 && s.allocated == 2 * MiB + 512 + 30 * MiB && s.peak_allocated == peak,
        "reserved %zu, %llu raw frees, peak kept", s.reserved, (unsigned long long)s.raw_frees);
  tide_cuda_alloc_release(a, y);
  tide_cuda_alloc_release(a, z);
  tide_cuda_alloc_reset_peak(a);
  s = stats(a);
  CHECK(s.allocated == 0 && s.peak_allocated == 0 && s.peak_reserved == 50 * MiB, "reset_peak");
  CHECK(tide_cuda_alloc_empty_cache(a) == 50 * MiB, "empty_cache returns the rest");
  s = stats(a);
  CHECK(s.reserved == 0 && s.raw_frees == 3 && s.segments == 0 && s.free_blocks == 0 && c->used == 0, "nothing held");
  tide_cuda_alloc_free(a);
  free(c);
}

static void test_oom(void) {
  raw_ctx *c = new_ctx(64 * MiB);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  tide_cuda_alloc_release(a, tide_cuda_alloc_malloc(a, 1000, 0));   /* 2 MiB cached */
  char *big = tide_cuda_alloc_malloc(a, 30 * MiB, 0);
  CHECK(big && stats(a).reserved == 32 * MiB, "30 MiB live, 2 MiB cached");
  char *p = tide_cuda_alloc_malloc(a, 40 * MiB, 0);
  const char *msg = tide_last_error();
  tide_cuda_alloc_stats s = stats(a);
  CHECK(!p && strstr(msg, "out of device memory") && strstr(msg, "41943040 bytes") &&
        strstr(msg, "31457280 bytes allocated") && strstr(msg, "31457280 bytes reserved"),
        "40 MiB does not fit even after flushing: %s", msg);
  CHECK(s.raw_frees == 1 && s.reserved == 30 * MiB && s.ooms == 1 && c->fail_calls == 2,
        "the cache was flushed and the raw allocation retried once");
  tide_cuda_alloc_release(a, tide_cuda_alloc_malloc(a, 1000, 0));   /* 2 MiB cached again */
  char *q = tide_cuda_alloc_malloc(a, 33 * MiB, 0);                 /* 34 MiB segment: fits only after the flush */
  s = stats(a);
  CHECK(q && s.reserved == 64 * MiB && s.raw_frees == 2 && s.ooms == 1, "a request that fits after flushing succeeds");
  tide_cuda_alloc_release(a, q);
  tide_cuda_alloc_release(a, big);
  char *r = tide_cuda_alloc_malloc(a, 60 * MiB, 0);
  CHECK(r != NULL, "after releasing, 60 MiB fits (the cached segments are flushed for it)");
  tide_cuda_alloc_release(a, r);
  CHECK(tide_cuda_alloc_malloc(a, SIZE_MAX, 0) == NULL && strstr(tide_last_error(), "too large"),
        "SIZE_MAX is an error, not a wrap: %s", tide_last_error());
  CHECK(tide_cuda_alloc_malloc(a, SIZE_MAX - 100, 0) == NULL && tide_cuda_alloc_malloc(a, SIZE_MAX / 2 + 1, 0) == NULL,
        "so are sizes near it");
  char *t = tide_cuda_alloc_malloc(a, 1000, 0);
  CHECK(t != NULL, "the allocator stays usable");
  tide_cuda_alloc_release(a, t);
  tide_cuda_alloc_empty_cache(a);
  CHECK(c->used == 0 && stats(a).allocated == 0, "everything returned");
  tide_cuda_alloc_free(a);
  free(c);
}

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return rng_state;
}

#define SLOTS 256
static void test_random(uint64_t seed) {
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  rng_state = seed;
  struct { char *p; size_t n; unsigned char tag; } live[SLOTS] = {{0}};
  int overlaps = 0, misaligned = 0, outside = 0, clobbered = 0, failed = 0, ops = 0;
  int mismatched = 0;
  for (int it = 0; it < 5000; it++) {
    if (it % 500 == 499) {   /* return idle segments now and then, with blocks live */
      tide_cuda_alloc_empty_cache(a);
      tide_cuda_alloc_stats s = stats(a);
      if (s.reserved != c->used || s.segments != (uint64_t)c->nsegs) mismatched++;
    }
    int i = (int)(rnd() % SLOTS);
    if (live[i].p) {
      if (live[i].p[0] != (char)live[i].tag || live[i].p[live[i].n - 1] != (char)live[i].tag) clobbered++;
      if (tide_cuda_alloc_release(a, live[i].p) != 0) failed++;
      live[i].p = NULL;
      ops++;
      continue;
    }
    uint64_t kind = rnd() % 100;
    size_t n = kind < 70 ? 1 + rnd() % 65536 : kind < 90 ? 1 + rnd() % (8 * MiB) : kind < 97 ? MiB / 2 + rnd() % MiB
             : 10 * MiB + rnd() % (30 * MiB);
    char *p = tide_cuda_alloc_malloc(a, n, 0);
    ops++;
    if (!p) { failed++; continue; }
    if ((uintptr_t)p % 256) misaligned++;
    int in = 0;
    for (int s = 0; s < c->nsegs; s++)
      if (p >= c->segs[s].p && p + n <= c->segs[s].p + c->segs[s].n) in = 1;
    if (!in) outside++;
    for (int j = 0; j < SLOTS; j++)
      if (live[j].p && p < live[j].p + live[j].n && live[j].p < p + n) overlaps++;
    live[i].p = p; live[i].n = n; live[i].tag = (unsigned char)(rnd() | 1);
    p[0] = (char)live[i].tag; p[n - 1] = (char)live[i].tag;
  }
  tide_cuda_alloc_stats s = stats(a);
  CHECK(!overlaps && !misaligned && !outside && !clobbered && !failed && !mismatched,
        "seed %llu: %d ops, %llu raw allocs, %llu segments, %llu free blocks: overlaps %d misaligned %d outside %d clobbered %d failed %d stats mismatched %d",
        (unsigned long long)seed, ops, (unsigned long long)s.raw_allocs, (unsigned long long)s.segments,
        (unsigned long long)s.free_blocks, overlaps, misaligned, outside, clobbered, failed, mismatched);
  CHECK(s.raw_allocs < (uint64_t)ops / 4, "seed %llu: blocks are reused (%llu raw allocs for %d ops)",
        (unsigned long long)seed, (unsigned long long)s.raw_allocs, ops);
  for (int i = 0; i < SLOTS; i++) if (live[i].p) tide_cuda_alloc_release(a, live[i].p);
  s = stats(a);
  CHECK(s.allocated == 0 && s.live_blocks == 0 && s.free_blocks == s.segments && s.reserved == c->used,
        "seed %llu: all released, every segment coalesced into one free block (%llu segments, %llu free blocks)",
        (unsigned long long)seed, (unsigned long long)s.segments, (unsigned long long)s.free_blocks);
  tide_cuda_alloc_empty_cache(a);
  s = stats(a);
  CHECK(s.reserved == 0 && s.segments == 0 && c->nsegs == 0 && s.raw_allocs == s.raw_frees,
        "seed %llu: empty_cache returns all memory (%llu raw allocs, %llu raw frees)", (unsigned long long)seed,
        (unsigned long long)s.raw_allocs, (unsigned long long)s.raw_frees);
  tide_cuda_alloc_free(a);
  free(c);
}

typedef struct { tide_cuda_alloc *a; unsigned seed; int bad; } worker_arg;

static void *worker(void *arg) {
  worker_arg *w = arg;
  char *mine[32] = {0};
  unsigned s = w->seed;
  for (int it = 0; it < 20000; it++) {
    s = s * 1103515245u + 12345u;
    int i = (int)((s >> 16) % 32);
    if (mine[i]) {
      if (mine[i][0] != (char)w->seed) w->bad++;
      tide_cuda_alloc_release(w->a, mine[i]);
      mine[i] = NULL;
    } else {
      mine[i] = tide_cuda_alloc_malloc(w->a, 1 + (s >> 8) % 200000, 0);
      if (!mine[i]) { w->bad++; continue; }
      mine[i][0] = (char)w->seed;
    }
  }
  for (int i = 0; i < 32; i++) tide_cuda_alloc_release(w->a, mine[i]);
  return NULL;
}

static void test_threads(void) {
  raw_ctx *c = new_ctx(SIZE_MAX);
  tide_cuda_alloc *a = tide_cuda_alloc_new(raw_alloc, raw_free, c);
  pthread_t th[4];
  worker_arg args[4];
  for (int i = 0; i < 4; i++) { args[i] = (worker_arg){a, 11u + (unsigned)i, 0}; pthread_create(&th[i], NULL, worker, &args[i]); }
  int bad = 0;
  for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); bad += args[i].bad; }
  tide_cuda_alloc_stats s = stats(a);
  CHECK(!bad && s.allocated == 0 && s.live_blocks == 0 && s.free_blocks == s.segments,
        "four threads: no clobbered block, everything released and coalesced");
  tide_cuda_alloc_empty_cache(a);
  CHECK(c->nsegs == 0, "and returned");
  tide_cuda_alloc_free(a);
  free(c);
}

int main(void) {
  test_reuse();
  test_split_coalesce();
  test_stats();
  test_oom();
  test_random(1);
  test_random(0x9e3779b97f4a7c15ULL);
  test_threads();
  printf("%d/%d checks passed\n", checks - failures, checks);
  return failures ? 1 : 0;
}
