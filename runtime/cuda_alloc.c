#include "cuda_alloc.h"
#include "error.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Layout (see cuda_alloc.h for the policy): every segment is a chain of
   blocks in address order (prev/next); the first block of a segment (its
   head) never changes, because a merge always keeps the lower block, so the
   heads form the segment list. Free blocks sit on their pool's free list,
   kept sorted by (size, address) so the first fit found is the best fit.
   Live blocks are found by pointer through a chained hash table. */

#define ROUND ((size_t)512)
#define SMALL_MAX ((size_t)1 << 20)          /* requests up to 1 MiB are small */
#define SMALL_SEGMENT ((size_t)2 << 20)      /* small pool segments */
#define MEDIUM_MAX ((size_t)10 << 20)        /* large requests under this share ... */
#define MEDIUM_SEGMENT ((size_t)20 << 20)    /* ... 20 MiB segments */
#define LARGE_ROUND ((size_t)2 << 20)        /* bigger ones: rounded to 2 MiB */
#define MAX_REQUEST (SIZE_MAX / 2)
#define RAW_ALIGN ((uintptr_t)256)
#define POOL_TAG ((uint64_t)1 << 63)         /* graph pool tags have the top bit set (cuda_alloc.h) */

enum { POOL_SMALL, POOL_LARGE, NUM_POOLS };

typedef struct blk {
  char *ptr;
  size_t size;
  uint64_t stream;
  int pool, allocated;
  uint64_t reserved_for;        /* released during the capture of this graph pool: held until it is released */
  size_t seg_size;              /* heads only: the segment's size */
  struct blk *prev, *next;      /* address neighbours within the segment */
  struct blk *fprev, *fnext;    /* free list of the pool (free blocks) */
  struct blk *hnext;            /* hash chain (live blocks) */
  struct blk *sprev, *snext;    /* segment list (heads) */
} blk;

struct tide_cuda_alloc {
  pthread_mutex_t lock;
  tide_raw_alloc_fn raw_alloc;
  tide_raw_free_fn raw_free;
  void *ctx;
  blk *free_list[NUM_POOLS];
  blk *segments;
  blk **buckets;
  size_t nbuckets, nlive;
  tide_cuda_alloc_stats st;
  uint64_t capture_pool;        /* the graph pool being captured into, 0 when none */
  blk **deferred;               /* blocks released during captures, held for their pools */
  size_t ndeferred, cap_deferred;
};

/* --- live-block hash table ---------------------------------------------- */

static size_t hash_ptr(const void *p, size_t nbuckets) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
  return (size_t)(x & (nbuckets - 1));
}

/* Doubles the table when it is fuller than one entry per bucket; a failed
   grow just leaves longer chains. */
static void hash_grow(tide_cuda_alloc *a) {
  size_t nb = a->nbuckets * 2;
  blk **b = calloc(nb, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < a->nbuckets; i++)
    for (blk *x = a->buckets[i], *nx; x; x = nx) {
      nx = x->hnext;
      size_t h = hash_ptr(x->ptr, nb);
      x->hnext = b[h]; b[h] = x;
    }
  free(a->buckets);
  a->buckets = b; a->nbuckets = nb;
}

static void hash_insert(tide_cuda_alloc *a, blk *b) {
  if (a->nlive >= a->nbuckets) hash_grow(a);
  size_t h = hash_ptr(b->ptr, a->nbuckets);
  b->hnext = a->buckets[h]; a->buckets[h] = b;
  a->nlive++;
}

static blk *hash_remove(tide_cuda_alloc *a, const void *p) {
  blk **pp = &a->buckets[hash_ptr(p, a->nbuckets)];
  for (; *pp; pp = &(*pp)->hnext)
    if ((*pp)->ptr == p) {
      blk *b = *pp;
      *pp = b->hnext; b->hnext = NULL;
      a->nlive--;
      return b;
    }
  return NULL;
}

/* --- free lists ---------------------------------------------------------- */

static int before(const blk *x, const blk *y) {
  return x->size < y->size || (x->size == y->size && (uintptr_t)x->ptr < (uintptr_t)y->ptr);
}

static void free_insert(tide_cuda_alloc *a, blk *b) {
  blk **head = &a->free_list[b->pool], *prev = NULL, *cur = *head;
  while (cur && before(cur, b)) { prev = cur; cur = cur->fnext; }
  b->fprev = prev; b->fnext = cur;
  if (cur) cur->fprev = b;
  if (prev) prev->fnext = b; else *head = b;
  a->st.free_blocks++;
}

static void free_remove(tide_cuda_alloc *a, blk *b) {
  if (b->fprev) b->fprev->fnext = b->fnext; else a->free_list[b->pool] = b->fnext;
  if (b->fnext) b->fnext->fprev = b->fprev;
  b->fprev = b->fnext = NULL;
  a->st.free_blocks--;
}

/* The smallest free block of the pool and stream holding size bytes. */
static blk *best_fit(tide_cuda_alloc *a, int pool, size_t size, uint64_t stream) {
  for (blk *b = a->free_list[pool]; b; b = b->fnext)
    if (b->size >= size && b->stream == stream) return b;
  return NULL;
}

/* --- segments ------------------------------------------------------------ */

static void note_peaks(tide_cuda_alloc *a) {
  if (a->st.allocated > a->st.peak_allocated) a->st.peak_allocated = a->st.allocated;
  if (a->st.reserved > a->st.peak_reserved) a->st.peak_reserved = a->st.reserved;
}

static void segment_unlink(tide_cuda_alloc *a, blk *h) {
  if (h->sprev) h->sprev->snext = h->snext; else a->segments = h->snext;
  if (h->snext) h->snext->sprev = h->sprev;
  a->st.segments--;
  a->st.reserved -= h->seg_size;
}

/* Returns fully free segments through raw_free; the bytes freed. None during
   a capture: freeing device memory waits for the device. */
static size_t empty_cache_locked(tide_cuda_alloc *a) {
  size_t freed = 0;
  if (a->capture_pool) return 0;
  for (blk *h = a->segments, *nh; h; h = nh) {
    nh = h->snext;
    if (h->allocated || h->next || (h->stream & POOL_TAG)) continue;  /* a graph's pool stays with it */
    free_remove(a, h);
    segment_unlink(a, h);
    a->raw_free(a->ctx, h->ptr);
    a->st.raw_frees++;
    freed += h->seg_size;
    free(h);
  }
  return freed;
}

/* A new segment of seg bytes as one free block (not on a free list), or NULL
   with *oom set when raw_alloc failed even after flushing the cache. */
static blk *new_segment(tide_cuda_alloc *a, size_t seg, int pool, uint64_t stream, int *oom) {
  blk *h = calloc(1, sizeof *h);
  if (!h) { tide_fail("cuda allocator: out of host memory for a block record"); return NULL; }
  void *p = NULL;
  int rc = a->raw_alloc(a->ctx, seg, &p);
  if (rc != 0 || !p) {
    if (empty_cache_locked(a) > 0) { p = NULL; rc = a->raw_alloc(a->ctx, seg, &p); }
    if (rc != 0 || !p) { free(h); *oom = 1; return NULL; }
  }
  if ((uintptr_t)p % RAW_ALIGN != 0) {
    a->raw_free(a->ctx, p);
    free(h);
    tide_fail("cuda allocator: raw_alloc returned %p, not aligned to %u bytes", p, (unsigned)RAW_ALIGN);
    return NULL;
  }
  a->st.raw_allocs++;
  h->ptr = p; h->size = h->seg_size = seg; h->pool = pool; h->stream = stream;
  h->snext = a->segments;
  if (a->segments) a->segments->sprev = h;
  a->segments = h;
  a->st.segments++;
  a->st.reserved += seg;
  note_peaks(a);
  return h;
}

/* --- public -------------------------------------------------------------- */

tide_cuda_alloc *tide_cuda_alloc_new(tide_raw_alloc_fn raw_alloc, tide_raw_free_fn raw_free, void *ctx) {
  if (!raw_alloc || !raw_free) { tide_fail("cuda allocator: raw_alloc and raw_free are required"); return NULL; }
  tide_cuda_alloc *a = calloc(1, sizeof *a);
  if (!a) { tide_fail("cuda allocator: out of host memory"); return NULL; }
  a->nbuckets = 64;
  a->buckets = calloc(a->nbuckets, sizeof *a->buckets);
  if (!a->buckets || pthread_mutex_init(&a->lock, NULL) != 0) {
    free(a->buckets); free(a);
    tide_fail("cuda allocator: out of host memory");
    return NULL;
  }
  a->raw_alloc = raw_alloc; a->raw_free = raw_free; a->ctx = ctx;
  return a;
}

void tide_cuda_alloc_free(tide_cuda_alloc *a) {
  if (!a) return;
  for (blk *h = a->segments, *nh; h; h = nh) {
    nh = h->snext;
    a->raw_free(a->ctx, h->ptr);
    for (blk *b = h, *nb; b; b = nb) { nb = b->next; free(b); }
  }
  pthread_mutex_destroy(&a->lock);
  free(a->deferred);
  free(a->buckets);
  free(a);
}

void *tide_cuda_alloc_malloc(tide_cuda_alloc *a, size_t n, uint64_t stream) {
  pthread_mutex_lock(&a->lock);
  a->st.requests++;
  if (n > MAX_REQUEST) {
    a->st.ooms++;
    pthread_mutex_unlock(&a->lock);
    tide_fail("cuda allocator: a request of %zu bytes is too large", n);
    return NULL;
  }
  if (a->capture_pool) stream = a->capture_pool;  /* only the graph's own segments serve its capture */
  size_t size = n == 0 ? ROUND : (n + ROUND - 1) / ROUND * ROUND;
  int pool = size <= SMALL_MAX ? POOL_SMALL : POOL_LARGE;
  blk *b = best_fit(a, pool, size, stream);
  if (b) free_remove(a, b);
  else {
    size_t seg = pool == POOL_SMALL ? SMALL_SEGMENT
               : size < MEDIUM_MAX ? MEDIUM_SEGMENT
               : (size + LARGE_ROUND - 1) / LARGE_ROUND * LARGE_ROUND;
    int oom = 0;
    b = new_segment(a, seg, pool, stream, &oom);
    if (!b) {
      if (oom) {
        a->st.ooms++;
        tide_fail("cuda allocator: out of device memory: tried to allocate %zu bytes (a %zu-byte segment); "
                  "%zu bytes allocated, %zu bytes reserved in total by tide's allocator", n, seg,
                  a->st.allocated, a->st.reserved);
      }
      pthread_mutex_unlock(&a->lock);
      return NULL;
    }
  }
  /* Split when the remainder is worth keeping; otherwise hand out the whole block. */
  size_t rest = b->size - size;
  if (rest > 0 && (pool == POOL_SMALL || rest > SMALL_MAX)) {
    blk *r = calloc(1, sizeof *r);
    if (r) {
      r->ptr = b->ptr + size; r->size = rest; r->pool = pool; r->stream = b->stream;
      r->prev = b; r->next = b->next;
      if (b->next) b->next->prev = r;
      b->next = r;
      b->size = size;
      free_insert(a, r);
    }
  }
  b->allocated = 1;
  hash_insert(a, b);
  a->st.allocated += b->size;
  a->st.live_blocks++;
  note_peaks(a);
  void *p = b->ptr;
  pthread_mutex_unlock(&a->lock);
  return p;
}

/* Gives b (removed from the hash table) back to its pool's free list. */
static void release_locked(tide_cuda_alloc *a, blk *b) {
  b->allocated = 0;
  a->st.allocated -= b->size;
  a->st.live_blocks--;
  /* Merge with free neighbours; the lower block survives, so heads stay put. */
  blk *nx = b->next;
  if (nx && !nx->allocated) {
    free_remove(a, nx);
    b->size += nx->size;
    b->next = nx->next;
    if (nx->next) nx->next->prev = b;
    free(nx);
  }
  blk *pv = b->prev;
  if (pv && !pv->allocated) {
    free_remove(a, pv);
    pv->size += b->size;
    pv->next = b->next;
    if (b->next) b->next->prev = pv;
    free(b);
    b = pv;
  }
  free_insert(a, b);
}

int tide_cuda_alloc_release(tide_cuda_alloc *a, void *p) {
  if (!p) return 0;
  pthread_mutex_lock(&a->lock);
  blk *b = hash_remove(a, p);
  if (!b || b->reserved_for) {
    if (b) hash_insert(a, b);
    pthread_mutex_unlock(&a->lock);
    return tide_fail("cuda allocator: %p is not a live block of this allocator (freed twice, or never allocated here)", p);
  }
  if (a->capture_pool && b->stream != a->capture_pool) {
    /* The graph being captured may read this block on every replay, so it must
       not serve eager work: it stays allocated, reserved for the graph's pool,
       until tide_cuda_alloc_pool_release. (A block of the pool itself is reused
       within the capture: replays keep the captured order.) */
    if (a->ndeferred == a->cap_deferred) {
      size_t nc = a->cap_deferred ? a->cap_deferred * 2 : 64;
      blk **d = realloc(a->deferred, nc * sizeof *d);
      if (!d) {
        hash_insert(a, b);
        pthread_mutex_unlock(&a->lock);
        return tide_fail("cuda allocator: out of host memory for a block freed during a graph capture");
      }
      a->deferred = d; a->cap_deferred = nc;
    }
    hash_insert(a, b);
    b->reserved_for = a->capture_pool;
    a->deferred[a->ndeferred++] = b;
    pthread_mutex_unlock(&a->lock);
    return 0;
  }
  release_locked(a, b);
  pthread_mutex_unlock(&a->lock);
  return 0;
}

void tide_cuda_alloc_begin_capture(tide_cuda_alloc *a, uint64_t pool) {
  pthread_mutex_lock(&a->lock);
  a->capture_pool = pool;
  pthread_mutex_unlock(&a->lock);
}

void tide_cuda_alloc_end_capture(tide_cuda_alloc *a) {
  pthread_mutex_lock(&a->lock);
  a->capture_pool = 0;
  pthread_mutex_unlock(&a->lock);
}

size_t tide_cuda_alloc_pool_release(tide_cuda_alloc *a, uint64_t pool) {
  if (!pool) return 0;
  pthread_mutex_lock(&a->lock);
  size_t bytes = 0;
  /* the pool's segments become ordinary ones: their free blocks serve any request now */
  for (blk *h = a->segments; h; h = h->snext)
    if (h->stream == pool) {
      bytes += h->seg_size;
      for (blk *b = h; b; b = b->next) b->stream = 0;
    }
  size_t keep = 0;
  for (size_t i = 0; i < a->ndeferred; i++) {
    blk *b = a->deferred[i];
    if (b->reserved_for != pool) { a->deferred[keep++] = b; continue; }
    b->reserved_for = 0;
    hash_remove(a, b->ptr);
    release_locked(a, b);
  }
  a->ndeferred = keep;
  pthread_mutex_unlock(&a->lock);
  return bytes;
}

size_t tide_cuda_alloc_pool_bytes(tide_cuda_alloc *a, uint64_t pool) {
  pthread_mutex_lock(&a->lock);
  size_t bytes = 0;
  for (blk *h = a->segments; h; h = h->snext)
    if (pool && h->stream == pool) bytes += h->seg_size;
  pthread_mutex_unlock(&a->lock);
  return bytes;
}

size_t tide_cuda_alloc_empty_cache(tide_cuda_alloc *a) {
  pthread_mutex_lock(&a->lock);
  size_t freed = empty_cache_locked(a);
  pthread_mutex_unlock(&a->lock);
  return freed;
}

void tide_cuda_alloc_get_stats(tide_cuda_alloc *a, tide_cuda_alloc_stats *out) {
  pthread_mutex_lock(&a->lock);
  *out = a->st;
  pthread_mutex_unlock(&a->lock);
}

void tide_cuda_alloc_reset_peak(tide_cuda_alloc *a) {
  pthread_mutex_lock(&a->lock);
  a->st.peak_allocated = a->st.allocated;
  a->st.peak_reserved = a->st.reserved;
  pthread_mutex_unlock(&a->lock);
}
