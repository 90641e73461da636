// The embedding family on CUDA (kernels/nn_embedding.h), matching
// kernels/cpu/nn_embedding.c.
//
// check_ids finds the first bad id on the device (an integer atomicMin of its
// position, so the id reported is the first, as on the CPU) and brings it
// back to the host: the op layer checks before any lookup.
//
// The backward is deterministic without float atomics and adds each row's
// gradients in the order of i, as the CPU does, bit for bit. It sorts the
// positions i by id with a stable LSD radix sort (8-bit digits, so two passes
// for GPT-2's 50257 ids; a pass is a per-tile digit count, one scan of the
// counts in (digit, tile) order and a scatter where each warp ranks its 32
// ids among equal digits with ballots, so the order within a digit stays the
// order of i), marks where each id's run starts and ends, and then one block
// per row of dweight sums its run in order, one thread per column: every
// element has exactly one owner, which adds its sources in i order, and rows
// without ids are written as zeros in the same pass. Work: O(n) for the sort
// and n*C additions, against n*C*ceil(V/rows_per) comparisons when every
// block walked all ids (the kernel before: 510 blocks x 128 threads x 16384
// ids = 1.07e9 thread steps at GPT-2's sizes).
//
// GPT-2's token + position embedding (gpt2_embedding_forward) is one pass: a
// block per row of the output adds the two table rows, f32/f64 in their type,
// bf16/f16 in f32 rounded once, as the CPU.
#include "common.cuh"
extern "C" {
#include "nn_embedding.h"
#include "dtype.h"
}

// ---- check_ids ------------------------------------------------------------------------------

__global__ void embedding_check_kernel(unsigned long long *first, const int64_t *ids, int64_t n, int64_t V) {
  TIDE_CUDA_FOR(i, n) {
    int64_t v = ids[i];
    if (v < 0 || v >= V) atomicMin(first, (unsigned long long)i);
  }
}

static int embedding_check_ids(const int64_t *ids, int64_t n, int64_t V, int64_t *bad) {
  const char *what = "embedding";
  if (n <= 0) return 0;
  unsigned long long *first = (unsigned long long *)tide_cuda_scratch(sizeof *first);
  if (!first) return -1;
  unsigned long long pos = ~0ull;
  // "none yet": all bits set (an async memset, ordered before the check on the stream)
  cudaError_t e = cudaMemsetAsync(first, 0xFF, sizeof *first, TIDE_CUDA_STREAM);
  int rc = e == cudaSuccess ? 0 : tide_fail("%s on cuda: %s", what, cudaGetErrorString(e));
  if (rc == 0) {
    LAUNCH(embedding_check_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, first, ids, n, V);
    rc = tide_cuda_after_launch(what);
  }
  if (rc == 0) rc = tide_cuda_to_host(&pos, first, sizeof pos, what);
  tide_cuda_scratch_free(first, sizeof *first);
  if (rc) return -1;
  if (pos == ~0ull) return 0;
  if (tide_cuda_to_host(bad, ids + pos, sizeof *bad, what)) return -1;
  return 1;
}

// ---- forward --------------------------------------------------------------------------------

// one thread per output element; elements move whole (any float dtype: bytes are copied)
template <class T>
__global__ void embedding_forward_kernel(T *out, const T *w, const int64_t *ids, int64_t C, int64_t rs, int64_t cs,
                                         int64_t total) {
  TIDE_CUDA_FOR(e, total) {
    int64_t i = e / C, c = e - i * C;
    out[e] = w[ids[i] * rs + c * cs];
  }
}

template <class T>
static int launch_forward(void *out, const void *w, const int64_t *ids, int64_t C, int64_t rs, int64_t cs, int64_t total) {
  TIDE_CUDA_LAUNCH("embedding", embedding_forward_kernel<T>, tide_cuda_blocks(total), TIDE_CUDA_THREADS, 0, (T *)out,
                   (const T *)w, ids, C, rs, cs, total);
  return 0;
}

static int embedding_forward(void *out, const void *weight, const int64_t *ids, int64_t n, int64_t C,
                             int64_t w_row_stride, int64_t w_col_stride, int32_t dtype) {
  int64_t total = n * C;
  if (total <= 0) return 0;
  switch (tide_dtype_size(dtype)) {
    case 1: return launch_forward<uint8_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    case 2: return launch_forward<uint16_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    case 4: return launch_forward<uint32_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
    default: return launch_forward<uint64_t>(out, weight, ids, C, w_row_stride, w_col_stride, total);
  }
}

// ---- GPT-2's token + position embedding ------------------------------------------------------

template <class S> struct EmbAdd;
template <> struct EmbAdd<float> {
  static __device__ __forceinline__ float add(float a, float b) { return a + b; }
};
template <> struct EmbAdd<double> {
  static __device__ __forceinline__ double add(double a, double b) { return a + b; }
};
struct Bf16 { uint16_t x; };
struct F16 { uint16_t x; };
template <> struct EmbAdd<Bf16> {
  static __device__ __forceinline__ Bf16 add(Bf16 a, Bf16 b) {
    return Bf16{tide_f32_to_bf16(tide_bf16_to_f32(a.x) + tide_bf16_to_f32(b.x))};
  }
};
template <> struct EmbAdd<F16> {
  static __device__ __forceinline__ F16 add(F16 a, F16 b) {
    return F16{tide_f32_to_f16(tide_f16_to_f32(a.x) + tide_f16_to_f32(b.x))};
  }
};

// grid-stride over the n = B*T output rows, the block's threads over the columns
template <class S>
__global__ void gpt2_embedding_forward_kernel(S *out, const S *wte, const S *wpe, const int64_t *ids, const int64_t *pos,
                                              int64_t pbs, int64_t n, int64_t T, int64_t C, int64_t past, int64_t trs,
                                              int64_t tcs, int64_t prs, int64_t pcs) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    int64_t b = i / T, t = i - b * T;
    int64_t p = pos ? pos[b * pbs + t] : past + t;
    const S *a = wte + ids[i] * trs, *e = wpe + p * prs;
    S *o = out + i * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = EmbAdd<S>::add(a[c * tcs], e[c * pcs]);
  }
}

template <class S>
static int launch_gpt2_forward(void *out, const void *wte, const void *wpe, const int64_t *ids, const int64_t *pos,
                               int64_t pbs, int64_t n, int64_t T, int64_t C, int64_t past, int64_t trs, int64_t tcs,
                               int64_t prs, int64_t pcs) {
  int threads = C >= 256 ? 256 : (int)((C + 31) / 32 * 32);
  unsigned blocks = (unsigned)(n < 65535 * 8 ? n : 65535 * 8);
  TIDE_CUDA_LAUNCH("gpt2_embedding", gpt2_embedding_forward_kernel<S>, blocks, threads, 0, (S *)out, (const S *)wte,
                   (const S *)wpe, ids, pos, pbs, n, T, C, past, trs, tcs, prs, pcs);
  return 0;
}

static int gpt2_embedding_forward(void *out, const void *wte, const void *wpe, const int64_t *ids,
                                  const int64_t *pos_ids, int64_t pos_b_stride, int64_t B, int64_t T, int64_t C,
                                  int64_t past, int64_t trs, int64_t tcs, int64_t prs, int64_t pcs, int32_t dtype) {
  int64_t n = B * T;
  if (n <= 0 || C <= 0) return 0;
  switch (dtype) {
    case TIDE_F32: return launch_gpt2_forward<float>(out, wte, wpe, ids, pos_ids, pos_b_stride, n, T, C, past, trs, tcs, prs, pcs);
    case TIDE_F64: return launch_gpt2_forward<double>(out, wte, wpe, ids, pos_ids, pos_b_stride, n, T, C, past, trs, tcs, prs, pcs);
    case TIDE_BF16: return launch_gpt2_forward<Bf16>(out, wte, wpe, ids, pos_ids, pos_b_stride, n, T, C, past, trs, tcs, prs, pcs);
    case TIDE_F16: return launch_gpt2_forward<F16>(out, wte, wpe, ids, pos_ids, pos_b_stride, n, T, C, past, trs, tcs, prs, pcs);
    default: return tide_fail("gpt2_embedding: the tables must be f32, f64, bf16 or f16, got %s", tide_dtype_name(dtype));
  }
}

// ---- backward: a stable sort of the ids, then one owner per row ---------------------------------

enum { SORT_TILE = 256, DIGITS = 256, SCAN_THREADS = 256 };
static const unsigned FULL_MASK = 0xffffffffu;

__device__ __forceinline__ int popcount32(unsigned x) {
#if defined(__CUDA_ARCH__)
  return __popc(x);
#else
  return __builtin_popcount(x);
#endif
}

// the position of the k-th id in the current order (perm NULL: the identity, before the first pass)
__device__ __forceinline__ int64_t at(const int32_t *perm, int64_t k) { return perm ? (int64_t)perm[k] : k; }

// hist[d * nb + tile] = how many ids of the tile have digit d (shared integer atomics: exact counts)
__global__ void radix_hist_kernel(int32_t *hist, const int64_t *ids, const int32_t *perm, int64_t n, int shift, int64_t nb) {
  __shared__ int32_t cnt[DIGITS];
  for (int d = threadIdx.x; d < DIGITS; d += blockDim.x) cnt[d] = 0;
  __syncthreads();
  int64_t k0 = (int64_t)blockIdx.x * SORT_TILE, k1 = k0 + SORT_TILE < n ? k0 + SORT_TILE : n;
  for (int64_t k = k0 + threadIdx.x; k < k1; k += blockDim.x) atomicAdd(&cnt[(ids[at(perm, k)] >> shift) & 255], 1);
  __syncthreads();
  for (int d = threadIdx.x; d < DIGITS; d += blockDim.x) hist[(int64_t)d * nb + blockIdx.x] = cnt[d];
}

// exclusive prefix sum of h[0..m) in place, one block: each thread scans a contiguous piece
__global__ void radix_scan_kernel(int32_t *h, int64_t m) {
  __shared__ int32_t part[SCAN_THREADS];
  int64_t per = (m + SCAN_THREADS - 1) / SCAN_THREADS;
  int64_t a = threadIdx.x * per, b = a + per < m ? a + per : m;
  int32_t s = 0;
  for (int64_t k = a; k < b; k++) s += h[k];
  part[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t run = 0;
    for (int j = 0; j < SCAN_THREADS; j++) {
      int32_t v = part[j];
      part[j] = run;
      run += v;
    }
  }
  __syncthreads();
  int32_t run = part[threadIdx.x];
  for (int64_t k = a; k < b; k++) {
    int32_t v = h[k];
    h[k] = run;
    run += v;
  }
}

// One warp per tile, 32 ids a round in order: each lane finds the lanes with its digit (8 ballots),
// its rank among them is the number of such lanes below it, and the lowest of them moves the
// digit's base on; so equal digits keep the order of k, and the pass is stable.
__global__ void radix_scatter_kernel(int32_t *out, const int32_t *perm, const int64_t *ids, const int32_t *hist,
                                     int64_t n, int shift, int64_t nb) {
  __shared__ int32_t base[DIGITS];
  int lane = threadIdx.x;
  for (int d = lane; d < DIGITS; d += 32) base[d] = hist[(int64_t)d * nb + blockIdx.x];
  __syncwarp();
  int64_t k0 = (int64_t)blockIdx.x * SORT_TILE;
  unsigned below = (1u << lane) - 1;
  for (int r = 0; r < SORT_TILE && k0 + r < n; r += 32) {  // the bound is the same for every lane
    int64_t k = k0 + r + lane;
    bool valid = k < n;
    int64_t i = valid ? at(perm, k) : 0;
    unsigned d = valid ? (unsigned)((ids[i] >> shift) & 255) : 0;
    unsigned peers = __ballot_sync(FULL_MASK, valid);
    for (int bit = 0; bit < 8; bit++) {
      unsigned set = __ballot_sync(FULL_MASK, (d >> bit) & 1);
      peers &= ((d >> bit) & 1) ? set : ~set;
    }
    int rank = popcount32(peers & below);
    if (valid) out[base[d] + rank] = (int32_t)i;
    __syncwarp();  // every lane read base[d] before its leader moves it
    if (valid && rank == 0) base[d] += popcount32(peers);
    __syncwarp();
  }
}

// first[v] / end[v]: the run of id v in the sorted order (first stays -1 for an id that is absent)
__global__ void run_bounds_kernel(int32_t *first, int32_t *end, const int32_t *perm, const int64_t *ids, int64_t n) {
  TIDE_CUDA_FOR(k, n) {
    int64_t v = ids[at(perm, k)];
    if (k == 0 || ids[at(perm, k - 1)] != v) first[v] = (int32_t)k;
    if (k == n - 1 || ids[at(perm, k + 1)] != v) end[v] = (int32_t)(k + 1);
  }
}

// dw[v, c] = 0 + g[i0, c] + g[i1, c] + ... over the run of v (i ascending), one thread per element
template <class T>
__global__ void rows_sum_kernel(T *dw, const T *g, const int32_t *perm, const int32_t *first, const int32_t *end,
                                int64_t V, int64_t C) {
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    int32_t a = first[v], b = a >= 0 ? end[v] : a;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T acc = (T)0;
      for (int32_t k = a; k < b; k++) acc = acc + g[at(perm, k) * C + c];
      dw[v * C + c] = acc;
    }
  }
}

template <class T>
static int launch_backward(void *dweight, const void *dout, const int64_t *ids, int64_t n, int64_t V, int64_t C) {
  const char *what = "embedding_backward";
  if (n > 0x7fffffff) return tide_fail("%s: %lld ids are too many for the CUDA kernel (at most 2^31 - 1)", what, (long long)n);
  int nbits = 0;
  while (nbits < 63 && ((V - 1) >> nbits) > 0) nbits++;
  int passes = n > 1 ? (nbits + 7) / 8 : 0;  // V == 1 or one id: the order of i is already sorted
  int64_t nb = (n + SORT_TILE - 1) / SORT_TILE;
  size_t perm_bytes = (size_t)n * sizeof(int32_t), hist_bytes = (size_t)nb * DIGITS * sizeof(int32_t);
  size_t bounds_bytes = (size_t)V * sizeof(int32_t);
  size_t total = 2 * perm_bytes + hist_bytes + 2 * bounds_bytes;
  char *scratch = (char *)tide_cuda_scratch(total);
  if (!scratch) return -1;
  int32_t *perm[2] = {(int32_t *)scratch, (int32_t *)(scratch + perm_bytes)};
  int32_t *hist = (int32_t *)(scratch + 2 * perm_bytes);
  int32_t *first = (int32_t *)(scratch + 2 * perm_bytes + hist_bytes), *end = first + V;
  const int32_t *sorted = nullptr;  // nullptr: the identity
  int rc = 0;
// launches while nothing failed, keeping the first error (the scratch is freed below either way)
#define EMB_LAUNCH(kernel, grid, block, ...)                                 \
  do {                                                                       \
    if (rc == 0) {                                                           \
      LAUNCH(kernel, grid, block, 0, TIDE_CUDA_STREAM, __VA_ARGS__);         \
      rc = tide_cuda_after_launch(what);                                     \
    }                                                                        \
  } while (0)
  for (int p = 0; p < passes; p++) {
    int32_t *out = perm[p & 1];
    int shift = 8 * p;
    EMB_LAUNCH(radix_hist_kernel, (unsigned)nb, 128, hist, ids, sorted, n, shift, nb);
    EMB_LAUNCH(radix_scan_kernel, 1, SCAN_THREADS, hist, nb * DIGITS);
    EMB_LAUNCH(radix_scatter_kernel, (unsigned)nb, 32, out, sorted, ids, hist, n, shift, nb);
    sorted = out;
  }
  if (rc == 0) {
    cudaError_t e = cudaMemsetAsync(first, 0xFF, bounds_bytes, TIDE_CUDA_STREAM);  // -1: no id
    if (e != cudaSuccess) rc = tide_fail("%s on cuda: %s", what, cudaGetErrorString(e));
  }
  if (n > 0) EMB_LAUNCH(run_bounds_kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, first, end, sorted, ids, n);
  int threads = C >= 256 ? 256 : (int)((C + 31) / 32 * 32);
  // rows grid-strided over a few waves of blocks (most rows of a vocabulary only get zeros)
  unsigned blocks = (unsigned)(V < 8192 ? V : 8192);
  EMB_LAUNCH(rows_sum_kernel<T>, blocks, threads, (T *)dweight, (const T *)dout, sorted, first, end, V, C);
#undef EMB_LAUNCH
  tide_cuda_scratch_free(scratch, total);
  return rc;
}

static int embedding_backward(void *dweight, const void *dout, const int64_t *ids, int64_t n, int64_t V, int64_t C,
                              int32_t cd) {
  if (cd != TIDE_F32 && cd != TIDE_F64)
    return tide_fail("embedding_backward: the CUDA kernel sums in f32 or f64, got %s", tide_dtype_name(cd));
  if (V <= 0 || C <= 0) return 0;
  if (cd == TIDE_F32) return launch_backward<float>(dweight, dout, ids, n, V, C);
  return launch_backward<double>(dweight, dout, ids, n, V, C);
}

extern "C" const struct tide_embedding_kernels tide_cuda_embedding = {embedding_check_ids, embedding_forward,
                                                                      embedding_backward, gpt2_embedding_forward};
