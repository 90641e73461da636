// The sort family on CUDA (kernels/sort.h): stable sort and topk along one
// dim of a strided input, with the CPU's order (kernels/cpu/sort.c): each
// element becomes the CPU's 64-bit key (NaN largest, -0 equal to +0; bf16 and
// f16 through f32; descending/largest flip the key bits), and rows are
// ordered by (key, position). That pair is a strict total order, so an
// unstable network sort gives the stable result, and topk's ties keep input
// order.
//
// Rows are ordered by bitonic networks over the row padded to a power of two
// with (max key, max position) sentinels, which sort last:
// - rows up to CHUNK (2048): a block per row, in shared memory;
// - longer rows: chunks of CHUNK sorted in shared memory by many blocks, then
//   the steps across chunks one launch each over device scratch, and those
//   within chunks again in shared memory (a 50257-wide vocabulary row pads to
//   65536 pairs, 1 MiB);
// - topk of a long row with k <= CHUNK / 4 (sampling from a vocabulary):
//   each chunk keeps only its k first, and rounds of chunk sorts over those
//   candidates shrink them to one chunk; the strict order makes the union of
//   the chunks' k first hold the row's k first.
// Values are copied from the input bytes at the chosen positions, so they are
// exact for every dtype.
#include "common.cuh"
extern "C" {
#include "sort.h"
#include "dtype.h"
}

namespace {

enum { THREADS = 256, CHUNK = 2048 };  // CHUNK pairs (32 KiB) fill a block's shared memory
// scratch for the rows of one launch of the long-row path
static const size_t SCRATCH_CAP = (size_t)64 << 20;

struct Row {
  int32_t dt, es;
  uint64_t flip;        // 0: ascending / smallest first; all ones: descending / largest first
  int64_t len, n2, k;   // row length, padded length (a power of two), outputs per row
  int64_t sstep, ostep; // input step along dim (elements), output step along dim (elements)
  tide_cuda_strided<2> g;  // row index -> input offset (0) and output offset (1)
};

__device__ __forceinline__ uint64_t float_key(double d) {
  d += 0.0;  // -0 becomes +0, so they tie
  uint64_t u;
  memcpy(&u, &d, 8);
  u ^= (uint64_t)((int64_t)u >> 63) | (1ull << 63);  // negatives order backwards as integers
  return d != d ? UINT64_MAX : u;  // every NaN sorts last, in input order
}

__device__ __forceinline__ uint64_t key_of(const char *p, int32_t dt) {
  if (tide_is_float(dt)) return float_key(tide_load_f64(p, dt));
  return (uint64_t)tide_load_i64(p, dt) ^ (1ull << 63);
}

__device__ __forceinline__ void copy_elem(char *d, const char *s, int32_t es) {
  switch (es) {
    case 1: *(uint8_t *)d = *(const uint8_t *)s; break;
    case 2: *(uint16_t *)d = *(const uint16_t *)s; break;
    case 4: *(uint32_t *)d = *(const uint32_t *)s; break;
    default: *(uint64_t *)d = *(const uint64_t *)s; break;
  }
}

__device__ __forceinline__ void cmp_swap(uint64_t *keys, int64_t *ids, int64_t i, int64_t l, bool asc) {
  uint64_t ki = keys[i], kl = keys[l];
  int64_t ii = ids[i], il = ids[l];
  bool gt = ki > kl || (ki == kl && ii > il);
  if (asc == gt) {  // an ascending pair wants i before l, a descending one l before i
    keys[i] = kl; keys[l] = ki;
    ids[i] = il; ids[l] = ii;
  }
}

// Bitonic steps over the n pairs (a power of two) at keys/ids for sequence sizes s0..s1, each from step
// min(size, n) / 2 down to 1. g0 is the position of pair 0 in the whole padded row: a pair's direction
// follows its global position, so chunks sorted here fit the steps made across chunks. Every thread of
// the block calls it (it holds barriers).
__device__ void bitonic(uint64_t *keys, int64_t *ids, int64_t n, int64_t g0, int64_t s0, int64_t s1) {
  const int t = threadIdx.x, nt = blockDim.x;
  for (int64_t size = s0; size <= s1; size <<= 1) {
    for (int64_t j = (size < n ? size : n) >> 1; j > 0; j >>= 1) {
      for (int64_t i = t; i < n; i += nt) {
        int64_t l = i ^ j;
        if (l > i) cmp_swap(keys, ids, i, l, ((g0 + i) & size) == 0);
      }
      __syncthreads();
    }
  }
}

// Loads n pairs of row r from position p0 into keys/ids: from the input (key, position), or from a
// candidate list (cand_keys/cand_ids, L long); sentinels past position L.
__device__ void load_pairs(const Row &w, const char *in, int64_t r, const uint64_t *cand_keys, const int64_t *cand_ids,
                           int64_t L, int64_t p0, int64_t n, uint64_t *keys, int64_t *ids) {
  const char *src = in + w.g.offset(0, r) * w.es;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    int64_t p = p0 + i;
    if (p >= L) {  // padding sorts after every element
      keys[i] = UINT64_MAX;
      ids[i] = INT64_MAX;
    } else if (cand_keys) {
      keys[i] = cand_keys[p];
      ids[i] = cand_ids[p];
    } else {
      keys[i] = key_of(src + p * w.sstep * w.es, w.dt) ^ w.flip;
      ids[i] = p;
    }
  }
  __syncthreads();
}

// Rows that fit shared memory: a block per row (grid-stride), sorted whole, the first k written.
__global__ void order_smem(Row w, int64_t rows, const char *in, char *values, int64_t *indices) {
  CUDAEMU_DYNAMIC_SMEM(uint64_t, sm);
  uint64_t *keys = sm;
  int64_t *ids = (int64_t *)(sm + w.n2);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    load_pairs(w, in, r, nullptr, nullptr, w.len, 0, w.n2, keys, ids);
    bitonic(keys, ids, w.n2, 0, 2, w.n2);
    const char *src = in + w.g.offset(0, r) * w.es;
    int64_t oo = w.g.offset(1, r);
    for (int64_t j = threadIdx.x; j < w.k; j += blockDim.x) {
      int64_t i = ids[j];
      copy_elem(values + (oo + j * w.ostep) * w.es, src + i * w.sstep * w.es, w.es);
      indices[oo + j * w.ostep] = i;
    }
    __syncthreads();  // keys and ids are reused by the block's next row
  }
}

// Long rows from row r0: block b sorts chunk b % nch (CHUNK positions) of row r0 + b / nch, from the
// input (cand_keys NULL, L = the row length) or from candidate lists of length L, and writes its first
// kk pairs at out_keys/out_ids + b * kk. global_dir: the chunk is part of one bitonic sort of the whole
// padded row (kk = CHUNK); else each chunk is sorted ascending on its own (topk candidates).
__global__ void chunk_sort(Row w, int64_t r0, int64_t nch, int64_t L, const uint64_t *cand_keys,
                           const int64_t *cand_ids, int global_dir, int64_t kk, uint64_t *out_keys, int64_t *out_ids,
                           const char *in) {
  CUDAEMU_DYNAMIC_SMEM(uint64_t, sm);
  uint64_t *keys = sm;
  int64_t *ids = (int64_t *)(sm + CHUNK);
  int64_t b = blockIdx.x, rb = b / nch, p0 = (b % nch) * CHUNK;
  load_pairs(w, in, r0 + rb, cand_keys ? cand_keys + rb * L : nullptr, cand_ids ? cand_ids + rb * L : nullptr, L, p0,
             CHUNK, keys, ids);
  bitonic(keys, ids, CHUNK, global_dir ? p0 : 0, 2, CHUNK);
  for (int64_t i = threadIdx.x; i < kk; i += blockDim.x) {
    out_keys[b * kk + i] = keys[i];
    out_ids[b * kk + i] = ids[i];
  }
}

// One bitonic step (sequence size `size`, distance j >= CHUNK) across the chunks of nrows padded rows
// of n2 pairs each: a thread per compared pair.
__global__ void global_step(uint64_t *keys, int64_t *ids, int64_t nrows, int64_t n2, int64_t size, int64_t j, int lj) {
  TIDE_CUDA_FOR(q, nrows * (n2 >> 1)) {
    int64_t row = q / (n2 >> 1), h = q - row * (n2 >> 1);
    int64_t i = ((h >> lj) << (lj + 1)) | (h & (j - 1));  // h with a 0 inserted at bit lj: the pair's lower end
    cmp_swap(keys + row * n2, ids + row * n2, i, i + j, (i & size) == 0);
  }
}

// The steps of distance < CHUNK of sequence size `size` (> CHUNK), a chunk per block, in shared memory.
__global__ void merge_chunks(uint64_t *keys, int64_t *ids, int64_t n2, int64_t size) {
  CUDAEMU_DYNAMIC_SMEM(uint64_t, sm);
  uint64_t *k = sm;
  int64_t *d = (int64_t *)(sm + CHUNK);
  int64_t base = (int64_t)blockIdx.x * CHUNK;  // chunks never straddle rows: n2 is a multiple of CHUNK
  for (int64_t i = threadIdx.x; i < CHUNK; i += blockDim.x) {
    k[i] = keys[base + i];
    d[i] = ids[base + i];
  }
  __syncthreads();
  bitonic(k, d, CHUNK, base % n2, size, size);
  for (int64_t i = threadIdx.x; i < CHUNK; i += blockDim.x) {
    keys[base + i] = k[i];
    ids[base + i] = d[i];
  }
}

// The first k of each of nrows ordered position lists (`stride` apart) as the outputs of rows r0...
__global__ void write_out(Row w, int64_t r0, int64_t nrows, const int64_t *ids, int64_t stride, const char *in,
                          char *values, int64_t *indices) {
  TIDE_CUDA_FOR(q, nrows * w.k) {
    int64_t rb = q / w.k, j = q - rb * w.k, r = r0 + rb;
    int64_t i = ids[rb * stride + j];
    int64_t oo = w.g.offset(1, r);
    copy_elem(values + (oo + j * w.ostep) * w.es, in + (w.g.offset(0, r) + i * w.sstep) * w.es, w.es);
    indices[oo + j * w.ostep] = i;
  }
}

unsigned grid_of(int64_t blocks) { return (unsigned)(blocks < 65535 * 8 ? blocks : 65535 * 8); }

// Long rows in batches of rows: the whole padded row sorted by chunk sorts, global steps and chunk
// merges (a launch per step: launch boundaries are the barriers between blocks), then the first k.
int sort_long(const Row &w, int64_t rows, const char *in, char *values, int64_t *indices, const char *what) {
  size_t per = (size_t)w.n2 * 16;
  int64_t batch = (int64_t)(SCRATCH_CAP / per);
  if (batch > rows) batch = rows;
  if (batch > 65535 * 8 / (w.n2 / CHUNK)) batch = 65535 * 8 / (w.n2 / CHUNK);
  if (batch < 1) batch = 1;
  size_t bytes = per * (size_t)batch;
  uint64_t *keys = (uint64_t *)tide_cuda_scratch(bytes);
  if (!keys) return -1;
  int64_t nch = w.n2 / CHUNK;
  int rc = 0;
  for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += batch) {
    int64_t nb = rows - r0 < batch ? rows - r0 : batch;
    int64_t *ids = (int64_t *)(keys + nb * w.n2);
    LAUNCH(chunk_sort, (unsigned)(nb * nch), THREADS, CHUNK * 16, TIDE_CUDA_STREAM, w, r0, nch, w.len,
           (const uint64_t *)nullptr, (const int64_t *)nullptr, 1, (int64_t)CHUNK, keys, ids, in);
    rc = tide_cuda_after_launch(what);
    for (int64_t size = 2 * CHUNK; size <= w.n2 && rc == 0; size <<= 1) {
      for (int64_t j = size >> 1; j >= CHUNK && rc == 0; j >>= 1) {
        int lj = 0;
        while (((int64_t)1 << lj) < j) lj++;
        LAUNCH(global_step, tide_cuda_blocks(nb * w.n2 / 2), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, keys, ids, nb,
               w.n2, size, j, lj);
        rc = tide_cuda_after_launch(what);
      }
      if (rc == 0) {
        LAUNCH(merge_chunks, (unsigned)(nb * nch), THREADS, CHUNK * 16, TIDE_CUDA_STREAM, keys, ids, w.n2, size);
        rc = tide_cuda_after_launch(what);
      }
    }
    if (rc == 0) {
      LAUNCH(write_out, tide_cuda_blocks(nb * w.k), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, w, r0, nb,
             (const int64_t *)ids, w.n2, in, values, indices);
      rc = tide_cuda_after_launch(what);
    }
  }
  tide_cuda_scratch_free(keys, bytes);  // stream-ordered: later users of the block run after these kernels
  return rc;
}

// topk of long rows with k <= CHUNK / 4: each chunk keeps its k best (the k best of a row are among
// them, the order being strict), rounds of chunk sorts shrink the candidate lists until one chunk holds
// them all, and its first k are the answer, in order.
int topk_long(const Row &w, int64_t rows, const char *in, char *values, int64_t *indices, const char *what) {
  int64_t nch0 = (w.len + CHUNK - 1) / CHUNK, per_row = nch0 * w.k;
  int64_t batch = (int64_t)(SCRATCH_CAP / 2 / ((size_t)per_row * 16));
  if (batch > rows) batch = rows;
  if (batch > 65535 * 8 / nch0) batch = 65535 * 8 / nch0;
  if (batch < 1) batch = 1;
  size_t half = (size_t)batch * (size_t)per_row * 16, bytes = 2 * half;
  char *scratch = (char *)tide_cuda_scratch(bytes);
  if (!scratch) return -1;
  int rc = 0;
  for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += batch) {
    int64_t nb = rows - r0 < batch ? rows - r0 : batch;
    const uint64_t *ck = nullptr;
    const int64_t *ci = nullptr;
    int64_t L = w.len;
    int side = 0;
    for (;;) {
      int64_t nch = (L + CHUNK - 1) / CHUNK;
      uint64_t *ok = (uint64_t *)(scratch + side * half);
      int64_t *oi = (int64_t *)(ok + nb * nch * w.k);
      LAUNCH(chunk_sort, (unsigned)(nb * nch), THREADS, CHUNK * 16, TIDE_CUDA_STREAM, w, r0, nch, L, ck, ci, 0, w.k,
             ok, oi, in);
      if ((rc = tide_cuda_after_launch(what)) != 0) break;
      if (nch == 1) {
        LAUNCH(write_out, tide_cuda_blocks(nb * w.k), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, w, r0, nb,
               (const int64_t *)oi, w.k, in, values, indices);
        rc = tide_cuda_after_launch(what);
        break;
      }
      ck = ok;
      ci = oi;
      L = nch * w.k;
      side ^= 1;
    }
  }
  tide_cuda_scratch_free(scratch, bytes);
  return rc;
}

int order(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *ashape,
          const int64_t *astride, int32_t dim, int64_t k, bool flip, const char *what) {
  int32_t nd = ndim ? ndim : 1;  // a 0-d input is one element along dim 0
  int64_t shape[TIDE_MAX_DIMS] = {0}, stride[TIDE_MAX_DIMS] = {0}, ostride[TIDE_MAX_DIMS] = {0};
  for (int32_t i = 0; i < nd; i++) {
    shape[i] = ndim ? ashape[i] : 1;
    stride[i] = ndim ? astride[i] : 0;
  }
  int64_t os = 1;  // row-major strides of the outputs (dim of size k)
  for (int32_t i = nd - 1; i >= 0; i--) {
    ostride[i] = os;
    int64_t s = i == dim ? k : shape[i];
    os *= s > 0 ? s : 1;
  }
  Row w;
  memset(&w, 0, sizeof w);
  w.dt = dtype;
  w.es = (int32_t)tide_dtype_size(dtype);
  w.flip = flip ? UINT64_MAX : 0;
  w.len = shape[dim];
  w.k = k;
  w.sstep = stride[dim];
  w.ostep = ostride[dim];
  int64_t rows = 1;
  int32_t m = 0;
  for (int32_t i = 0; i < nd; i++) {
    if (i == dim) continue;
    rows *= shape[i];
    w.g.shape[m] = shape[i];
    w.g.stride[0][m] = stride[i];
    w.g.stride[1][m] = ostride[i];
    m++;
  }
  w.g.ndim = m;
  if (rows == 0 || k == 0) return 0;
  if (w.len > ((int64_t)1 << 40)) return tide_fail("%s: dimension %d of size %lld is too large", what, dim + 1, (long long)w.len);
  w.n2 = 1;
  while (w.n2 < w.len) w.n2 <<= 1;
  char *v = (char *)values;
  const char *in = (const char *)inp;
  if (w.n2 <= CHUNK) {
    // threads: one per pair compared (n2 / 2), at least a warp, at most THREADS
    int threads = (int)(w.n2 / 2 < (int64_t)THREADS ? w.n2 / 2 : (int64_t)THREADS);
    if (threads < 32) threads = 32;
    TIDE_CUDA_LAUNCH(what, order_smem, grid_of(rows), threads, (size_t)w.n2 * 16, w, rows, in, v, indices);
    return 0;
  }
  if (w.k <= CHUNK / 4) return topk_long(w, rows, in, v, indices, what);
  return sort_long(w, rows, in, v, indices, what);
}

int sort(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
         const int64_t *stride, int32_t dim, int32_t descending) {
  int64_t len = ndim ? shape[dim] : 1;
  return order(values, indices, inp, dtype, ndim, shape, stride, dim, len, descending != 0, "sort");
}

int topk(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
         const int64_t *stride, int32_t dim, int64_t k, int32_t largest) {
  return order(values, indices, inp, dtype, ndim, shape, stride, dim, k, largest != 0, "topk");
}

}  // namespace

extern "C" const struct tide_sort_kernels tide_cuda_sort = {sort, topk};
