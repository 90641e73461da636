/* A caching allocator for device memory, in the manner of PyTorch's CUDA
   caching allocator but independent of CUDA: large segments come from an
   injected raw_alloc/raw_free pair (cudaMalloc/cudaFree through dlopen in the
   CUDA backend; host memory in tests), and blocks are carved out of them.

   - Requests are rounded up to 512 bytes. Requests of at most 1 MiB are
     "small" and come from 2 MiB segments; larger ones are "large" and come
     from 20 MiB segments when under 10 MiB (so several medium tensors share
     one cudaMalloc, which is slow and synchronizing) or from a segment of the
     size rounded up to 2 MiB otherwise (at most 2 MiB wasted per big tensor).
   - Free blocks wait in the pool of their size class; a request takes the
     best fit (smallest block that fits, then lowest address) of its pool and
     stream, and splits off the remainder when it is worth keeping (any
     remainder in the small pool; more than 1 MiB in the large pool, so the
     large pool never holds small blocks). A freed block merges with free
     address neighbours of its segment.
   - Each block records the stream it was allocated on, and a free block is
     reused only for a request on the same stream. There is one stream for
     now; cross-stream reuse (recording events on free) comes later. A CUDA
     graph's private pool is such a tag (see "Graph pools" below).
   - When raw_alloc fails, every fully free segment is returned through
     raw_free and the raw allocation is tried once more; then the request
     fails with a message naming the size asked and the bytes allocated and
     reserved, and the allocator stays usable.
   - One mutex per allocator guards everything (raw_alloc/raw_free are called
     with it held). No global state: one allocator per device, created by the
     caller.

   Not wired in yet: runtime/device.c's tide_alloc_on/tide_free_on will route
   device >= 0 here once the CUDA backend loads the runtime (one allocator per
   device, raw_alloc = cudaMalloc, raw_free = cudaFree). */
#ifndef TIDE_CUDA_ALLOC_H
#define TIDE_CUDA_ALLOC_H
#include "tide.h"

/* Obtains n bytes of device memory at *p, aligned to at least 256 bytes;
   returns 0 on success and nonzero when out of memory. */
typedef int (*tide_raw_alloc_fn)(void *ctx, size_t n, void **p);
/* Returns memory obtained from the matching raw_alloc. */
typedef void (*tide_raw_free_fn)(void *ctx, void *p);

typedef struct tide_cuda_alloc tide_cuda_alloc;

typedef struct {
  size_t allocated;          /* bytes in live blocks (block sizes, after rounding) */
  size_t reserved;           /* bytes in segments obtained from raw_alloc */
  size_t peak_allocated;     /* highest value of allocated since creation or reset_peak */
  size_t peak_reserved;      /* highest value of reserved since creation or reset_peak */
  uint64_t raw_allocs;       /* successful raw_alloc calls */
  uint64_t raw_frees;        /* raw_free calls */
  uint64_t requests;         /* tide_cuda_alloc_malloc calls, failed ones included */
  uint64_t ooms;             /* requests that failed for want of memory */
  uint64_t segments;         /* segments held now */
  uint64_t free_blocks;      /* cached free blocks now (a fully free segment is one) */
  uint64_t live_blocks;      /* blocks handed out and not yet released */
} tide_cuda_alloc_stats;

/* Creates an allocator drawing segments from raw_alloc/raw_free (ctx is passed
   to both); returns NULL with an error set if out of host memory. */
tide_cuda_alloc *tide_cuda_alloc_new(tide_raw_alloc_fn raw_alloc, tide_raw_free_fn raw_free, void *ctx);
/* Returns every segment through raw_free (live blocks included: they become
   invalid) and frees the allocator. NULL is ignored. */
void tide_cuda_alloc_free(tide_cuda_alloc *a);
/* Returns a block of at least n bytes (n = 0 gets a minimal block), aligned
   to at least 256 bytes, for use on stream; NULL with an error set when out
   of memory or n is absurdly large (more than SIZE_MAX / 2). */
void *tide_cuda_alloc_malloc(tide_cuda_alloc *a, size_t n, uint64_t stream);
/* Gives back a block from tide_cuda_alloc_malloc to the cache (NULL is a
   no-op); returns 0, or -1 with an error set if p is not a live block. */
int tide_cuda_alloc_release(tide_cuda_alloc *a, void *p);
/* Returns every fully free segment through raw_free; returns the bytes freed. */
size_t tide_cuda_alloc_empty_cache(tide_cuda_alloc *a);
/* Copies the counters into *out. */
void tide_cuda_alloc_get_stats(tide_cuda_alloc *a, tide_cuda_alloc_stats *out);
/* Sets the peaks to the current allocated and reserved bytes. */
void tide_cuda_alloc_reset_peak(tide_cuda_alloc *a);

/* Graph pools (tide.cuda.graph). Between begin_capture and end_capture every
   request is served from pool's own segments (tagged with pool, an id with the
   top bit set, which no stream has), never from the blocks eager work uses, so the
   addresses a captured graph reads and writes stay the graph's for every
   replay. A block of pool released during the capture is reused by the
   capture's later requests (a replay runs in the captured order); a block of
   any other pool released during the capture stays allocated, reserved for
   pool (the graph may read it at each replay); no segment goes back to
   raw_free during a capture. After the capture, blocks of pool released by
   their tensors go back to pool's free lists, where nothing but that pool
   takes them, and empty_cache keeps the pool's segments. */
void tide_cuda_alloc_begin_capture(tide_cuda_alloc *a, uint64_t pool);
void tide_cuda_alloc_end_capture(tide_cuda_alloc *a);
/* Gives pool back when its graph is destroyed: its segments become ordinary
   (their free blocks serve any request; live ones stay live until released)
   and the blocks reserved for it are released. Returns the pool's bytes. */
size_t tide_cuda_alloc_pool_release(tide_cuda_alloc *a, uint64_t pool);
/* The bytes of the segments that pool holds now. */
size_t tide_cuda_alloc_pool_bytes(tide_cuda_alloc *a, uint64_t pool);

#endif
