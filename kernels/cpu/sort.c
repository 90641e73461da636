/* Ordering: sort and topk along one dimension, for every dtype and any
   strides. Each element becomes a 64-bit key whose unsigned order is the
   element order (NaN largest, -0 equal to +0, as torch orders them; bf16 and
   f16 go through f32), so one comparison serves every dtype; descending order
   flips the key bits. Rows are independent and spread over OpenMP threads.
   Values are copied from the input bytes at the chosen positions, so they are
   exact whatever the dtype. */
#include "sort.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
  uint64_t key;
  int64_t idx;
} sort_pair;

static inline uint64_t float_key(double d) {
  d += 0.0;  /* turns -0 into +0 so they tie */
  uint64_t u;
  memcpy(&u, &d, 8);
  /* negative floats order backwards as integers, so invert them; positives
     just move above the negatives */
  u ^= (uint64_t)((int64_t)u >> 63) | (1ull << 63);
  return d != d ? UINT64_MAX : u;  /* every NaN sorts last, in input order */
}

/* Writes the keys of n elements `step` bytes apart, xor flip, into out[0..n).
   The dtype switch sits outside the loops. */
static void load_keys(const char *src, int64_t step, int64_t n, int32_t dt, uint64_t flip, uint64_t *out) {
  switch (dt) {
    case TIDE_F32: for (int64_t i = 0; i < n; i++) out[i] = float_key(*(const float *)(src + i * step)) ^ flip; break;
    case TIDE_F64: for (int64_t i = 0; i < n; i++) out[i] = float_key(*(const double *)(src + i * step)) ^ flip; break;
    case TIDE_BF16:
      for (int64_t i = 0; i < n; i++) out[i] = float_key(tide_bf16_to_f32(*(const uint16_t *)(src + i * step))) ^ flip;
      break;
    case TIDE_F16:
      for (int64_t i = 0; i < n; i++) out[i] = float_key(tide_f16_to_f32(*(const uint16_t *)(src + i * step))) ^ flip;
      break;
    default:
      for (int64_t i = 0; i < n; i++) out[i] = ((uint64_t)tide_load_i64(src + i * step, dt) ^ (1ull << 63)) ^ flip;
      break;
  }
}

/* (key, idx) order: equal keys keep input order, which makes sorting stable
   and topk deterministic. */
static inline int pair_lt(sort_pair a, sort_pair b) { return a.key < b.key || (a.key == b.key && a.idx < b.idx); }

/* Stable merge sort of a[0..n) by key; tmp has room for n. Returns whichever
   of a and tmp holds the result. */
static sort_pair *merge_sort(sort_pair *a, sort_pair *tmp, int64_t n) {
  enum { RUN = 24 };
  for (int64_t s = 0; s < n; s += RUN) {  /* insertion-sort short runs */
    int64_t e = s + RUN < n ? s + RUN : n;
    for (int64_t i = s + 1; i < e; i++) {
      sort_pair x = a[i];
      int64_t j = i;
      while (j > s && a[j - 1].key > x.key) {
        a[j] = a[j - 1];
        j--;
      }
      a[j] = x;
    }
  }
  sort_pair *src = a, *dst = tmp;
  for (int64_t w = RUN; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, o = lo;
      if (mid == hi || src[mid - 1].key <= src[mid].key) {  /* already in order */
        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof *src);
        continue;
      }
      while (i < mid && j < hi) dst[o++] = src[j].key < src[i].key ? src[j++] : src[i++];
      while (i < mid) dst[o++] = src[i++];
      while (j < hi) dst[o++] = src[j++];
    }
    sort_pair *t = src;
    src = dst;
    dst = t;
  }
  return src;
}

/* Stable LSD radix sort of a[0..n) by key, one byte per pass; tmp has room
   for n. Passes whose byte is the same for every key are skipped, so f32
   keys (widened to double, low mantissa bytes zero) take five passes and
   small integers two. Returns whichever of a and tmp holds the result. */
static sort_pair *radix_sort(sort_pair *a, sort_pair *tmp, int64_t n) {
  int64_t count[8][256];
  memset(count, 0, sizeof count);
  for (int64_t i = 0; i < n; i++) {
    uint64_t k = a[i].key;
    for (int b = 0; b < 8; b++) count[b][(k >> (8 * b)) & 255]++;
  }
  sort_pair *src = a, *dst = tmp;
  for (int b = 0; b < 8; b++) {
    if (count[b][(a[0].key >> (8 * b)) & 255] == n) continue;
    int64_t pos = 0;
    for (int d = 0; d < 256; d++) {
      int64_t c = count[b][d];
      count[b][d] = pos;
      pos += c;
    }
    for (int64_t i = 0; i < n; i++) dst[count[b][(src[i].key >> (8 * b)) & 255]++] = src[i];
    sort_pair *t = src;
    src = dst;
    dst = t;
  }
  return src;
}

/* Max-heap by (key, idx): the root is the worst of the k kept so far. */
static void sift_down(sort_pair *h, int64_t n, int64_t i) {
  sort_pair x = h[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && pair_lt(h[c], h[c + 1])) c++;
    if (!pair_lt(x, h[c])) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = x;
}

/* One row's geometry: `len` elements `step` bytes apart. */
typedef struct {
  int32_t dt, es;
  uint64_t flip;  /* 0 for ascending / smallest, all ones for descending / largest */
  int64_t len, k;
  int use_heap;
} order_cfg;

/* Writes into h[0..k) the k first elements of the row in (key, idx) order,
   scanning once with a k-element heap: O(len log k), and a GPT-2 vocab row
   with k = 50 mostly costs one comparison per element. */
static void heap_select(const char *src, int64_t step, const order_cfg *c, sort_pair *h) {
  int64_t k = c->k, filled = 0;
  enum { BLOCK = 512 };
  uint64_t keys[BLOCK];
  for (int64_t b = 0; b < c->len; b += BLOCK) {
    int64_t m = c->len - b < BLOCK ? c->len - b : BLOCK;
    load_keys(src + b * step, step, m, c->dt, c->flip, keys);
    for (int64_t j = 0; j < m; j++) {
      if (filled < k) {  /* the first k elements seed the heap */
        h[filled++] = (sort_pair){keys[j], b + j};
        if (filled == k)
          for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i);
      } else if (keys[j] < h[0].key) {
        /* a later element with an equal key loses the tie, so < on keys suffices */
        h[0] = (sort_pair){keys[j], b + j};
        sift_down(h, k, 0);
      }
    }
  }
  for (int64_t e = k - 1; e > 0; e--) {  /* heap sort: ascending (key, idx) */
    sort_pair t = h[0];
    h[0] = h[e];
    h[e] = t;
    sift_down(h, e, 0);
  }
}

/* Orders one row and writes its first k values and indices. buf has room for
   2 * len pairs (or k with the heap). */
static void order_row(const char *src, int64_t sstep, char *vdst, int64_t *idst, int64_t ostep, const order_cfg *c, sort_pair *buf) {
  const sort_pair *res;
  if (c->use_heap) {
    heap_select(src, sstep, c, buf);
    res = buf;
  } else {
    /* keys go to the (malloc'd, untyped) second half first, then pair up */
    uint64_t *keys = (uint64_t *)(buf + c->len);
    load_keys(src, sstep, c->len, c->dt, c->flip, keys);
    for (int64_t i = 0; i < c->len; i++) buf[i] = (sort_pair){keys[i], i};
    /* radix passes cost the same for any n; short rows merge faster */
    res = c->len > 256 ? radix_sort(buf, buf + c->len, c->len) : merge_sort(buf, buf + c->len, c->len);
  }
  for (int64_t j = 0; j < c->k; j++) {
    int64_t i = res[j].idx;
    memcpy(vdst + j * ostep * c->es, src + i * sstep, (size_t)c->es);
    idst[j * ostep] = i;
  }
}

/* Element offset of row r (a linear position over every dim but `dim`). */
static int64_t row_offset(int64_t r, int32_t nd, const int64_t *shape, const int64_t *stride, int32_t dim) {
  int64_t off = 0;
  for (int32_t d = nd - 1; d >= 0; d--) {
    if (d == dim) continue;
    off += (r % shape[d]) * stride[d];
    r /= shape[d];
  }
  return off;
}

static inline int thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/* Shared body of sort (k = size along dim, full sort) and topk: values and
   indices are contiguous with inp's shape, dim of size k. */
static int order(void *values, int64_t *indices, const char *inp, int32_t dtype, int32_t ndim, const int64_t *ashape,
                 const int64_t *astrides, int32_t dim, int64_t k, int32_t flip, int topk, const char *what) {
  /* a 0-d tensor orders as one element along dimension 1 */
  int32_t nd = ndim ? ndim : 1;
  int64_t shape[TIDE_MAX_DIMS] = {0}, astride[TIDE_MAX_DIMS] = {0}, oshape[TIDE_MAX_DIMS] = {0}, ostride[TIDE_MAX_DIMS] = {0};
  for (int32_t i = 0; i < nd; i++) {
    shape[i] = oshape[i] = ndim ? ashape[i] : 1;
    astride[i] = ndim ? astrides[i] : 0;
  }
  int64_t len = shape[dim];
  oshape[dim] = k;
  int64_t os = 1;  /* row-major strides of the outputs */
  for (int32_t i = nd - 1; i >= 0; i--) { ostride[i] = os; os *= oshape[i] > 0 ? oshape[i] : 1; }
  int64_t rows = 1;
  for (int32_t i = 0; i < nd; i++)
    if (i != dim) rows *= shape[i];
  if (rows > 0 && k > 0) {
    order_cfg c = {dtype, tide_dtype_size(dtype), flip ? UINT64_MAX : 0, len, k, topk && k * 8 <= len};
    int64_t per = c.use_heap ? k : 2 * len;
    int nt = 1;
#ifdef _OPENMP
    if (rows > 1 && rows * len >= TIDE_GRAIN / 4) {
      nt = omp_get_max_threads();
      if (rows < nt) nt = (int)rows;
    }
#endif
    if (per > INT64_MAX / 16 / nt)
      return tide_fail("%s: dimension %d of size %lld is too large", what, dim + 1, (long long)len);
    sort_pair *scratch = malloc((size_t)(per * nt) * sizeof *scratch);
    if (!scratch) return tide_fail("%s: out of memory for %lld sort entries", what, (long long)(per * nt));
    int64_t sstep = astride[dim] * c.es, ostep = ostride[dim];
    char *vdata = values;
    int64_t *idata = indices;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      sort_pair *buf = scratch + per * thread_id();
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
        int64_t ao = row_offset(r, nd, shape, astride, dim), oo = row_offset(r, nd, oshape, ostride, dim);
        order_row(inp + ao * c.es, sstep, vdata + oo * c.es, idata + oo, ostep, &c, buf);
      }
    }
    free(scratch);
  }
  return 0;
}

static int sort(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
                const int64_t *stride, int32_t dim, int32_t descending) {
  int64_t len = ndim ? shape[dim] : 1;
  return order(values, indices, inp, dtype, ndim, shape, stride, dim, len, descending != 0, 0, "sort");
}

static int topk(void *values, int64_t *indices, const void *inp, int32_t dtype, int32_t ndim, const int64_t *shape,
                const int64_t *stride, int32_t dim, int64_t k, int32_t largest) {
  return order(values, indices, inp, dtype, ndim, shape, stride, dim, k, largest != 0, 1, "topk");
}

const struct tide_sort_kernels tide_cpu_sort = {
  .sort = sort,
  .topk = topk,
};
