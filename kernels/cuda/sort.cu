// The sort family on CUDA (kernels/sort.h): stable sort and topk along one
// dim of a strided input, with the CPU's order (kernels/cpu/sort.c): each
// element becomes the CPU's 64-bit key (NaN largest, -0 equal to +0; bf16 and
// f16 through f32; descending/largest flip the key bits), and rows are
// ordered by (key, position). That pair is a strict total order, so an
// unstable network sort gives the stable result, and topk's ties keep input
// order.
//
// A block orders one row with a bitonic network over the row padded to a
// power of two with (max key, max position) sentinels, which sort last:
// in shared memory for rows up to SMEM_ROW, else in device scratch (a
// 50257-wide vocabulary row pads to 65536 pairs, 1 MiB). topk keeps the first
// k of the sorted row. Values are copied from the input bytes at the chosen
// positions, so they are exact for every dtype.
#include "common.cuh"
extern "C" {
#include "sort.h"
#include "dtype.h"
}

namespace {

enum { THREADS = 256, SMEM_ROW = 2048 };
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

// Orders row r into keys/ids (n2 pairs: shared or scratch memory) and writes its first k values and
// positions. Every thread of the block calls it (it holds barriers).
__device__ void order_row(const Row &w, int64_t r, const char *in, char *values, int64_t *indices, uint64_t *keys,
                          int64_t *ids) {
  const int t = threadIdx.x, nt = blockDim.x;
  const char *src = in + w.g.offset(0, r) * w.es;
  for (int64_t i = t; i < w.n2; i += nt) {
    if (i < w.len) {
      keys[i] = key_of(src + i * w.sstep * w.es, w.dt) ^ w.flip;
      ids[i] = i;
    } else {  // padding sorts after every element
      keys[i] = UINT64_MAX;
      ids[i] = INT64_MAX;
    }
  }
  __syncthreads();
  for (int64_t size = 2; size <= w.n2; size <<= 1) {
    for (int64_t j = size >> 1; j > 0; j >>= 1) {
      for (int64_t i = t; i < w.n2; i += nt) {
        int64_t l = i ^ j;
        if (l > i) {
          uint64_t ki = keys[i], kl = keys[l];
          int64_t ii = ids[i], il = ids[l];
          bool gt = ki > kl || (ki == kl && ii > il);
          if (((i & size) == 0) == gt) {  // ascending halves want i < l, descending ones i > l
            keys[i] = kl; keys[l] = ki;
            ids[i] = il; ids[l] = ii;
          }
        }
      }
      __syncthreads();
    }
  }
  int64_t oo = w.g.offset(1, r);
  for (int64_t j = t; j < w.k; j += nt) {
    int64_t i = ids[j];
    copy_elem(values + (oo + j * w.ostep) * w.es, src + i * w.sstep * w.es, w.es);
    indices[oo + j * w.ostep] = i;
  }
  __syncthreads();  // keys and ids are reused by the block's next row
}

__global__ void order_smem(Row w, int64_t rows, const char *in, char *values, int64_t *indices) {
  CUDAEMU_DYNAMIC_SMEM(uint64_t, sm);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    order_row(w, r, in, values, indices, sm, (int64_t *)(sm + w.n2));
}

// rows [r0, r0 + gridDim.x) with at most `rows`, each block in its own n2-pair slice of scratch
__global__ void order_scratch(Row w, int64_t r0, int64_t rows, const char *in, char *values, int64_t *indices,
                              uint64_t *scratch) {
  int64_t r = r0 + blockIdx.x;
  if (r >= rows) return;  // the whole block leaves together
  uint64_t *keys = scratch + (int64_t)blockIdx.x * 2 * w.n2;
  order_row(w, r, in, values, indices, keys, (int64_t *)(keys + w.n2));
}

int order(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *ashape,
          const int64_t *astride, int32_t dim, int64_t k, bool flip, const char *what) {
  int32_t nd = ndim ? ndim : 1;  // a 0-d input is one element along dim 0
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS], ostride[TIDE_MAX_DIMS];
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
  // threads: one per pair compared (n2 / 2), at least a warp, at most THREADS
  int threads = (int)(w.n2 / 2 < THREADS ? w.n2 / 2 : THREADS);
  if (threads < 32) threads = 32;
  char *v = (char *)values;
  const char *in = (const char *)inp;
  if (w.n2 <= SMEM_ROW) {
    unsigned grid = (unsigned)(rows < 65535 * 8 ? rows : 65535 * 8);
    TIDE_CUDA_LAUNCH(what, order_smem, grid, threads, (size_t)w.n2 * 16, w, rows, in, v, indices);
    return 0;
  }
  size_t per = (size_t)w.n2 * 16;
  int64_t batch = (int64_t)(SCRATCH_CAP / per);
  if (batch < 1) batch = 1;
  if (batch > rows) batch = rows;
  if (batch > 65535 * 8) batch = 65535 * 8;
  size_t bytes = per * (size_t)batch;
  uint64_t *scratch = (uint64_t *)tide_cuda_scratch(bytes);
  if (!scratch) return -1;
  int rc = 0;
  for (int64_t r0 = 0; r0 < rows && rc == 0; r0 += batch) {
    int64_t nb = rows - r0 < batch ? rows - r0 : batch;
    LAUNCH(order_scratch, (unsigned)nb, threads, 0, TIDE_CUDA_STREAM, w, r0, rows, in, v, indices, scratch);
    rc = tide_cuda_after_launch(what);
  }
  tide_cuda_scratch_free(scratch, bytes);  // stream-ordered: later users of the block run after these kernels
  return rc;
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
