// The random family on CUDA (kernels/random.h), over the Philox stream layout
// of runtime/philox.h: element i of a call takes slot i % E of block i / E, so
// a thread per Philox block reproduces the CPU's values bit for bit whatever
// the thread count. Every double operation of the layout goes through
// TIDE_PHILOX_ADD/MUL/DIV (the _rn intrinsics under nvcc): no fused multiply-add.
#include "common.cuh"
extern "C" {
#include "random.h"
#include "dtype.h"
#include "philox.h"
}
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

namespace {

enum { DIST_UNIFORM, DIST_NORMAL, DIST_INT, DIST_BERNOULLI };

// Everything a fill needs, fixed on the host and passed by value.
struct FillPlan {
  int32_t kind, per_block, wide, dtype, es;
  uint64_t seed, base;
  double low, high, width, top, bottom;  // uniform
  double mean, std;                      // normal
  int64_t ilow;                          // randint
  uint64_t range;
  double p;                              // bernoulli
};

// One Philox block's values: E doubles (uniform: already values of the dtype;
// normal: to be rounded on store; bernoulli: 0/1) or E int64 (randint).
__device__ __forceinline__ void gen_block(const FillPlan &pl, int64_t b, double *v, int64_t *iv) {
  uint32_t w[4];
  tide_philox_block(pl.seed, pl.base, (uint64_t)b, w);
  switch (pl.kind) {
    case DIST_UNIFORM: {
      double u[4];
      if (pl.per_block == 4) {
        for (int s = 0; s < 4; s++) u[s] = tide_philox_u24(w[s]);
      } else {
        u[0] = tide_philox_u53(w[0], w[1]);
        u[1] = tide_philox_u53(w[2], w[3]);
      }
      for (int s = 0; s < pl.per_block; s++) {
        double r = tide_philox_round_to(TIDE_PHILOX_ADD(pl.low, TIDE_PHILOX_MUL(u[s], pl.width)), pl.dtype);
        if (r >= pl.high) r = pl.top;
        else if (r < pl.low) r = pl.bottom;
        v[s] = r;
      }
      break;
    }
    case DIST_NORMAL: {
      double z[4];
      if (pl.per_block == 4) {
        tide_philox_normal2_w32(w[0], w[1], &z[0], &z[1]);
        tide_philox_normal2_w32(w[2], w[3], &z[2], &z[3]);
      } else {
        tide_philox_normal2_w64(w, &z[0], &z[1]);
      }
      for (int s = 0; s < pl.per_block; s++) v[s] = TIDE_PHILOX_ADD(pl.mean, TIDE_PHILOX_MUL(pl.std, z[s]));
      break;
    }
    case DIST_BERNOULLI:
      for (int s = 0; s < 2; s++) v[s] = tide_philox_u53(w[2 * s], w[2 * s + 1]) < pl.p ? 1.0 : 0.0;
      break;
    default:
      if (pl.wide) {
        uint64_t hi = (uint64_t)w[3] << 32 | w[2], lo = (uint64_t)w[1] << 32 | w[0];
        iv[0] = (int64_t)((uint64_t)pl.ilow + tide_philox_bounded128(hi, lo, pl.range));
      } else {
        for (int s = 0; s < 2; s++) {
          uint64_t x = (uint64_t)w[2 * s + 1] << 32 | w[2 * s];
          iv[s] = (int64_t)((uint64_t)pl.ilow + tide_philox_bounded64(x, pl.range));
        }
      }
  }
}

// Writes one value into p, as kernels/cpu/random.c's store does.
__device__ __forceinline__ void store(const FillPlan &pl, char *p, double v, int64_t iv) {
  if (pl.kind == DIST_INT) {
    switch (pl.dtype) {
      case TIDE_I64: *(int64_t *)p = iv; return;
      case TIDE_I32: *(int32_t *)p = (int32_t)iv; return;
      case TIDE_U8: case TIDE_BOOL: *(uint8_t *)p = (uint8_t)iv; return;
      case TIDE_U16: *(uint16_t *)p = (uint16_t)iv; return;
      default: tide_store_f64(p, pl.dtype, (double)iv); return;
    }
  }
  tide_store_f64(p, pl.dtype, v);
}

// A thread per Philox block; with one thread in all (aliasing outputs) the
// blocks go in order, so the last element in logical order wins as on the CPU.
__global__ void fill_kernel(char *data, tide_cuda_strided<1> g, int64_t n, FillPlan pl) {
  int64_t E = pl.per_block, blocks = (n + E - 1) / E;
  TIDE_CUDA_FOR(b, blocks) {
    double v[4];
    int64_t iv[4];
    gen_block(pl, b, v, iv);
    for (int64_t s = 0; s < E && b * E + s < n; s++)
      store(pl, data + g.offset(0, b * E + s) * pl.es, v[s], iv[s]);
  }
}

// 1 when no two elements of the view can share memory (kernels/cpu/random.c's test).
int provably_disjoint(int32_t ndim, const int64_t *shape, const int64_t *stride) {
  int64_t st[TIDE_MAX_DIMS], sz[TIDE_MAX_DIMS];
  int n = 0;
  for (int32_t d = 0; d < ndim; d++) {
    if (shape[d] <= 1) continue;
    int64_t s = stride[d] < 0 ? -stride[d] : stride[d];
    int k = n++;
    while (k > 0 && st[k - 1] > s) { st[k] = st[k - 1]; sz[k] = sz[k - 1]; k--; }
    st[k] = s;
    sz[k] = shape[d];
  }
  int64_t extent = 0;
  for (int k = 0; k < n; k++) {
    if (st[k] <= extent) return 0;
    extent += st[k] * (sz[k] - 1);
  }
  return 1;
}

int run_fill(FillPlan &pl, const char *op, void *data, int32_t ndim, const int64_t *shape, const int64_t *stride,
             uint64_t seed, uint64_t offset) {
  tide_cuda_strided<1> g;
  const int64_t *st[1] = {stride};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  pl.seed = seed;
  pl.base = offset;
  pl.es = (int32_t)tide_dtype_size(pl.dtype);
  if (n == 0) return 0;
  int64_t blocks = (n + pl.per_block - 1) / pl.per_block;
  if (provably_disjoint(ndim, shape, stride)) {
    TIDE_CUDA_LAUNCH(op, fill_kernel, tide_cuda_blocks(blocks, 128), 128, 0, (char *)data, g, n, pl);
  } else {
    TIDE_CUDA_LAUNCH(op, fill_kernel, 1, 1, 0, (char *)data, g, n, pl);
  }
  return 0;
}

int uniform(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
            uint64_t offset, double low, double high) {
  FillPlan pl;
  memset(&pl, 0, sizeof pl);
  pl.kind = DIST_UNIFORM;
  pl.dtype = dt;
  pl.per_block = dt == TIDE_F64 ? 2 : 4;
  pl.low = low;
  pl.high = high;
  pl.width = high - low;
  // the type's values that stand in for a draw rounded across a bound
  if (tide_philox_uniform_bounds(low, high, dt, &pl.bottom, &pl.top) != 0)
    return tide_fail("rand_: no %s value lies in [%.17g, %.17g)", tide_dtype_name(dt), low, high);
  return run_fill(pl, "rand_", data, ndim, shape, stride, seed, offset);
}

int normal(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
           uint64_t offset, double mean, double std) {
  FillPlan pl;
  memset(&pl, 0, sizeof pl);
  pl.kind = DIST_NORMAL;
  pl.dtype = dt;
  pl.per_block = dt == TIDE_F64 ? 2 : 4;
  pl.mean = mean;
  pl.std = std;
  return run_fill(pl, "randn_", data, ndim, shape, stride, seed, offset);
}

int randint(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
            uint64_t offset, int64_t low, int64_t high) {
  FillPlan pl;
  memset(&pl, 0, sizeof pl);
  pl.kind = DIST_INT;
  pl.dtype = dt;
  pl.ilow = low;
  pl.range = (uint64_t)high - (uint64_t)low;
  pl.wide = pl.range > ((uint64_t)1 << 32);
  pl.per_block = pl.wide ? 1 : 2;
  return run_fill(pl, "randint_", data, ndim, shape, stride, seed, offset);
}

int bernoulli(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
              uint64_t offset, double p) {
  FillPlan pl;
  memset(&pl, 0, sizeof pl);
  pl.kind = DIST_BERNOULLI;
  pl.dtype = dt;
  pl.per_block = 2;
  pl.p = p;
  return run_fill(pl, "bernoulli_", data, ndim, shape, stride, seed, offset);
}

// randperm -------------------------------------------------------------------------

// out[i] = i, and x[k] = the k-th wide randint in [0, 2^62) of the stream (one block each).
__global__ void randperm_draws(int64_t *out, int64_t *x, int64_t n, uint64_t seed, uint64_t base) {
  TIDE_CUDA_FOR(i, n) {
    out[i] = i;
    if (i < n - 1) {
      uint32_t w[4];
      tide_philox_block(seed, base, (uint64_t)i, w);
      uint64_t hi = (uint64_t)w[3] << 32 | w[2], lo = (uint64_t)w[1] << 32 | w[0];
      x[i] = (int64_t)tide_philox_bounded128(hi, lo, (uint64_t)1 << 62);
    }
  }
}

// Fisher-Yates's swaps are sequential: one thread does them in the CPU's order.
__global__ void randperm_swaps(int64_t *out, const int64_t *x, int64_t n) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  for (int64_t i = n - 1; i >= 1; i--) {
    int64_t j = x[n - 1 - i] % (i + 1), t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
}

int randperm(int64_t *out, int64_t n, uint64_t seed, uint64_t offset) {
  if (n <= 0) return 0;
  size_t bytes = sizeof(int64_t) * (size_t)(n > 1 ? n - 1 : 1);
  int64_t *x = (int64_t *)tide_cuda_scratch(bytes);
  if (!x) return -1;
  int rc = -1;
  // (a lambda keeps TIDE_CUDA_LAUNCH's early return from leaking the scratch)
  auto go = [&]() -> int {
    TIDE_CUDA_LAUNCH("randperm", randperm_draws, tide_cuda_blocks(n, 128), 128, 0, out, x, n, seed, offset);
    if (n > 1) TIDE_CUDA_LAUNCH("randperm", randperm_swaps, 1, 1, 0, out, (const int64_t *)x, n);
    return 0;
  };
  rc = go();
  tide_cuda_scratch_free(x, bytes);
  return rc;
}

// multinomial ----------------------------------------------------------------------

enum { ROW_OK = 0, ROW_BAD_WEIGHT, ROW_ALL_ZERO, ROW_INF_SUM, ROW_TOO_FEW };

// What validation found in one row (the first problem, in the CPU's order of checks).
struct RowCheck {
  int64_t code, pos, nnz, last_nz;
  double val;
};

// The first bad row, reported to the host.
struct Report {
  int64_t code, row, pos, nnz;
  double val;
};

// A thread per row scans it left to right as the CPU does: the running sums
// (the cdf, with replacement) and the nonzero count, stopping at a bad weight.
__global__ void multinomial_check(const double *w, double *cdf, RowCheck *rc, int64_t rows, int64_t K, int64_t n,
                                  int32_t replacement) {
  TIDE_CUDA_FOR(r, rows) {
    const double *row = w + r * K;
    RowCheck c = {ROW_OK, 0, 0, -1, 0.0};
    double sum = 0;
    for (int64_t k = 0; k < K; k++) {
      double v = row[k];
      if (!(v >= 0) || isinf(v)) {
        c.code = ROW_BAD_WEIGHT;
        c.pos = k;
        c.val = v;
        break;
      }
      sum = TIDE_PHILOX_ADD(sum, v);
      if (replacement) cdf[r * K + k] = sum;
      if (v > 0) {
        c.nnz++;
        c.last_nz = k;
      }
    }
    if (c.code == ROW_OK) {
      if (c.nnz == 0) c.code = ROW_ALL_ZERO;
      else if (isinf(sum)) c.code = ROW_INF_SUM;
      else if (!replacement && n > c.nnz) c.code = ROW_TOO_FEW;
    }
    rc[r] = c;
  }
}

// One thread finds the first bad row (rows in order, as the CPU validates them).
__global__ void multinomial_first_bad(const RowCheck *rc, int64_t rows, Report *out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  Report rep = {ROW_OK, 0, 0, 0, 0.0};
  for (int64_t r = 0; r < rows; r++)
    if (rc[r].code != ROW_OK) {
      rep.code = rc[r].code;
      rep.row = r;
      rep.pos = rc[r].pos;
      rep.nnz = rc[r].nnz;
      rep.val = rc[r].val;
      break;
    }
  *out = rep;
}

// With replacement: a thread per Philox block of two samples, each a binary
// search of its row's cdf for u * total.
__global__ void multinomial_replace(int64_t *o, const double *cdf, const RowCheck *rc, int64_t K, int64_t n,
                                    int64_t total, uint64_t seed, uint64_t base) {
  int64_t blocks = (total + 1) / 2;
  TIDE_CUDA_FOR(b, blocks) {
    uint32_t wv[4];
    tide_philox_block(seed, base, (uint64_t)b, wv);
    for (int s = 0; s < 2; s++) {
      int64_t i = 2 * b + s;
      if (i >= total) break;
      int64_t r = i / n;
      const double *c = cdf + r * K;
      double x = TIDE_PHILOX_MUL(tide_philox_u53(wv[2 * s], wv[2 * s + 1]), c[K - 1]);
      int64_t lo = 0, hi = K;
      while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (c[mid] > x) hi = mid;
        else lo = mid + 1;
      }
      o[i] = lo < K ? lo : rc[r].last_nz;
    }
  }
}

struct Keyed {
  double key;
  int64_t idx;
};

// Key, then index: a total order, so any sort gives the CPU's order.
__device__ __forceinline__ bool keyed_less(const Keyed &x, const Keyed &y) {
  return x.key < y.key || (x.key == y.key && x.idx < y.idx);
}

// Restores the max-heap property below position i of h[0..m).
__device__ void sift_down(Keyed *h, int64_t m, int64_t i) {
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, t = i;
    if (l < m && keyed_less(h[t], h[l])) t = l;
    if (r < m && keyed_less(h[t], h[r])) t = r;
    if (t == i) return;
    Keyed tmp = h[i];
    h[i] = h[t];
    h[t] = tmp;
    i = t;
  }
}

// Without replacement: a thread per row keeps a max-heap of its n smallest
// exponential keys (in scratch), then heap-sorts it into increasing order.
__global__ void multinomial_noreplace(int64_t *o, const double *w, Keyed *heap, int64_t rows, int64_t K, int64_t n,
                                      uint64_t seed, uint64_t base) {
  TIDE_CUDA_FOR(r, rows) {
    const double *row = w + r * K;
    Keyed *h = heap + r * n;
    int64_t m = 0, have = -1;
    uint32_t wv[4] = {0, 0, 0, 0};
    for (int64_t c = 0; c < K; c++) {
      if (!(row[c] > 0)) continue;
      int64_t i = r * K + c, b = i / 2;
      if (b != have) {
        tide_philox_block(seed, base, (uint64_t)b, wv);
        have = b;
      }
      uint64_t x = ((uint64_t)wv[2 * (i & 1) + 1] << 32 | wv[2 * (i & 1)]) >> 11;
      Keyed e = {TIDE_PHILOX_DIV(tide_philox_neglog(x + 1, 53), row[c]), c};
      if (m < n) {
        int64_t j = m++;
        h[j] = e;
        while (j > 0 && keyed_less(h[(j - 1) / 2], h[j])) {  // sift up
          int64_t p = (j - 1) / 2;
          Keyed tmp = h[j];
          h[j] = h[p];
          h[p] = tmp;
          j = p;
        }
      } else if (keyed_less(e, h[0])) {
        h[0] = e;
        sift_down(h, m, 0);
      }
    }
    // heap sort: the largest to the end, repeatedly
    for (int64_t end = m - 1; end > 0; end--) {
      Keyed tmp = h[0];
      h[0] = h[end];
      h[end] = tmp;
      sift_down(h, end, 0);
    }
    for (int64_t j = 0; j < n; j++) o[r * n + j] = h[j].idx;
  }
}

// The CPU's message for the first bad row.
int report_bad(const Report &rep, int64_t rows, int64_t n) {
  long long r = (long long)rep.row + 1, R = (long long)rows;
  switch (rep.code) {
    case ROW_BAD_WEIGHT:
      if (rows > 1)
        return tide_fail("multinomial: weight %g at position %lld of row %lld of %lld is not finite and >= 0", rep.val,
                         (long long)rep.pos + 1, r, R);
      return tide_fail("multinomial: weight %g at position %lld is not finite and >= 0", rep.val, (long long)rep.pos + 1);
    case ROW_ALL_ZERO:
      if (rows > 1)
        return tide_fail("multinomial: row %lld of %lld has only zero weights; at least one must be positive", r, R);
      return tide_fail("multinomial: all weights are zero; at least one must be positive");
    case ROW_INF_SUM:
      return tide_fail("multinomial: the weights of row %lld sum to infinity; scale them down", r);
    default:
      if (rows > 1)
        return tide_fail("multinomial: cannot draw %lld samples without replacement from row %lld, which has %lld nonzero weights",
                         (long long)n, r, (long long)rep.nnz);
      return tide_fail("multinomial: cannot draw %lld samples without replacement from %lld nonzero weights", (long long)n,
                       (long long)rep.nnz);
  }
}

// Device scratch freed at scope end.
struct Scratch {
  void *p = nullptr;
  size_t n = 0;
  void *get(size_t bytes) {
    n = bytes ? bytes : 1;
    p = tide_cuda_scratch(n);
    return p;
  }
  ~Scratch() {
    if (p) tide_cuda_scratch_free(p, n);
  }
};

int multinomial(int64_t *o, const double *w, int64_t rows, int64_t K, int64_t n, int32_t replacement, uint64_t seed,
                uint64_t base) {
  if (rows == 0) return 0;
  Scratch s_check, s_cdf, s_rep, s_heap;
  RowCheck *rc = (RowCheck *)s_check.get(sizeof(RowCheck) * (size_t)rows);
  double *cdf = replacement ? (double *)s_cdf.get(sizeof(double) * (size_t)rows * (size_t)K) : nullptr;
  Report *drep = (Report *)s_rep.get(sizeof(Report));
  if (!rc || (replacement && !cdf) || !drep) return -1;
  // validate every row before drawing anything: the host waits for the verdict
  TIDE_CUDA_LAUNCH("multinomial", multinomial_check, tide_cuda_blocks(rows, 128), 128, 0, w, cdf, rc, rows, K, n,
                   replacement);
  TIDE_CUDA_LAUNCH("multinomial", multinomial_first_bad, 1, 1, 0, (const RowCheck *)rc, rows, drep);
  Report rep;
  if (tide_cuda_to_host(&rep, drep, sizeof rep, "multinomial") != 0) return -1;
  if (rep.code != ROW_OK) return report_bad(rep, rows, n);
  if (!o || n == 0) return 0;
  if (replacement) {
    int64_t total = rows * n;
    TIDE_CUDA_LAUNCH("multinomial", multinomial_replace, tide_cuda_blocks((total + 1) / 2, 128), 128, 0, o,
                     (const double *)cdf, (const RowCheck *)rc, K, n, total, seed, base);
  } else {
    Keyed *heap = (Keyed *)s_heap.get(sizeof(Keyed) * (size_t)rows * (size_t)n);
    if (!heap) return -1;
    TIDE_CUDA_LAUNCH("multinomial", multinomial_noreplace, tide_cuda_blocks(rows, 128), 128, 0, o, w, heap, rows, K, n,
                     seed, base);
  }
  return 0;
}

}  // namespace

extern "C" const struct tide_random_kernels tide_cuda_random = {uniform, normal, randint, bernoulli, randperm, multinomial};
