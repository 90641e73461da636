/* Random fills and sampling on the CPU: uniform, normal, randint, bernoulli,
   randperm and multinomial over the Philox stream layout documented in
   runtime/philox.h. Element i of a call always takes the same counter and
   slot, so any strides and any thread count give the same values. */

/* The layout fixes each rounding step; letting the compiler fuse a*b+c into
   an FMA would change results by an ulp and break CPU/GPU agreement. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "random.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include "philox.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { DIST_UNIFORM, DIST_NORMAL, DIST_INT, DIST_BERNOULLI };

/* Everything a fill needs, fixed before any thread starts. */
typedef struct {
  int kind, per_block, wide;
  int32_t dtype, es;
  uint64_t seed, base;
  double low, high, width;    /* uniform */
  double top, bottom;         /* uniform: replacements for results >= high or < low */
  double mean, std;           /* normal */
  int64_t ilow;               /* randint */
  uint64_t range;
  double p;                   /* bernoulli */
} fill_plan;

/* A strided destination: data, shape and strides in elements. */
typedef struct {
  char *data;
  int32_t ndim;
  const int64_t *shape, *stride;
  int64_t numel;
} fill_dst;

typedef union { double d; int64_t i; } rvalue;

/* The values of one block: E rvalues, doubles already representable in the
   output dtype for uniform, doubles to round for normal, int64 for randint,
   0/1 for bernoulli. */
static inline void gen_block(const fill_plan *pl, int64_t b, rvalue *v) {
  uint32_t w[4];
  tide_philox_block(pl->seed, pl->base, (uint64_t)b, w);
  switch (pl->kind) {
    case DIST_UNIFORM: {
      double u[4];
      if (pl->per_block == 4) {
        for (int s = 0; s < 4; s++) u[s] = tide_philox_u24(w[s]);
      } else {
        u[0] = tide_philox_u53(w[0], w[1]);
        u[1] = tide_philox_u53(w[2], w[3]);
      }
      for (int s = 0; s < pl->per_block; s++) {
        double r = tide_philox_round_to(pl->low + u[s] * pl->width, pl->dtype);
        if (r >= pl->high) r = pl->top;
        else if (r < pl->low) r = pl->bottom;
        v[s].d = r;
      }
      break;
    }
    case DIST_NORMAL: {
      double z[4];
      if (pl->per_block == 4) {
        tide_philox_normal2_w32(w[0], w[1], &z[0], &z[1]);
        tide_philox_normal2_w32(w[2], w[3], &z[2], &z[3]);
      } else {
        tide_philox_normal2_w64(w, &z[0], &z[1]);
      }
      for (int s = 0; s < pl->per_block; s++) v[s].d = pl->mean + pl->std * z[s];
      break;
    }
    case DIST_BERNOULLI: {
      /* the f64 uniform of [0, 1) that rand_ draws for the element, compared with p */
      for (int s = 0; s < 2; s++) v[s].d = tide_philox_u53(w[2 * s], w[2 * s + 1]) < pl->p ? 1 : 0;
      break;
    }
    default: {
      if (pl->wide) {
        uint64_t hi = (uint64_t)w[3] << 32 | w[2], lo = (uint64_t)w[1] << 32 | w[0];
        v[0].i = (int64_t)((uint64_t)pl->ilow + tide_philox_bounded128(hi, lo, pl->range));
      } else {
        for (int s = 0; s < 2; s++) {
          uint64_t x = (uint64_t)w[2 * s + 1] << 32 | w[2 * s];
          v[s].i = (int64_t)((uint64_t)pl->ilow + tide_philox_bounded64(x, pl->range));
        }
      }
    }
  }
}

/* Writes one value into element p of the plan's dtype (randint values fit by the plan's checks). */
static inline void store(const fill_plan *pl, char *p, rvalue v) {
  if (pl->kind == DIST_INT) {
    switch (pl->dtype) {
      case TIDE_I64: *(int64_t *)p = v.i; return;
      case TIDE_I32: *(int32_t *)p = (int32_t)v.i; return;
      case TIDE_U8: case TIDE_BOOL: *(uint8_t *)p = (uint8_t)v.i; return;
      case TIDE_U16: *(uint16_t *)p = (uint16_t)v.i; return;
      default: tide_store_f64(p, pl->dtype, (double)v.i); return;
    }
  }
  switch (pl->dtype) {
    case TIDE_F32: *(float *)p = (float)v.d; return;
    case TIDE_F64: *(double *)p = v.d; return;
    default: tide_store_f64(p, pl->dtype, v.d); return;
  }
}

/* Fills the elements of blocks [b0, b1), walking t in logical row-major order. */
static void fill_blocks(const fill_plan *pl, const fill_dst *t, int64_t b0, int64_t b1) {
  int32_t nd = t->ndim, E = pl->per_block;
  int64_t i = b0 * E, end = b1 * E < t->numel ? b1 * E : t->numel;
  int64_t idx[TIDE_MAX_DIMS], bstride[TIDE_MAX_DIMS];
  char *p = t->data;
  int64_t rem = i;
  for (int32_t d = nd - 1; d >= 0; d--) {
    bstride[d] = t->stride[d] * pl->es;
    idx[d] = rem % t->shape[d];
    rem /= t->shape[d];
    p += idx[d] * bstride[d];
  }
  rvalue v[4];
  for (int64_t b = b0; b < b1; b++) {
    gen_block(pl, b, v);
    for (int s = 0; s < E && i < end; s++, i++) {
      store(pl, p, v[s]);
      for (int32_t d = nd - 1; d >= 0; d--) {  /* odometer step to the next element */
        p += bstride[d];
        if (++idx[d] < t->shape[d]) break;
        p -= bstride[d] * t->shape[d];
        idx[d] = 0;
      }
    }
  }
}

/* 1 when no two elements of t can share memory (a sufficient test: sorted by
   stride, each dim's step clears the whole extent of the smaller ones). */
static int provably_disjoint(const fill_dst *t) {
  int64_t st[TIDE_MAX_DIMS], sz[TIDE_MAX_DIMS];
  int n = 0;
  for (int32_t d = 0; d < t->ndim; d++) {
    if (t->shape[d] <= 1) continue;
    int64_t s = t->stride[d] < 0 ? -t->stride[d] : t->stride[d];
    int k = n++;
    while (k > 0 && st[k - 1] > s) { st[k] = st[k - 1]; sz[k] = sz[k - 1]; k--; }
    st[k] = s;
    sz[k] = t->shape[d];
  }
  int64_t extent = 0;
  for (int k = 0; k < n; k++) {
    if (st[k] <= extent) return 0;
    extent += st[k] * (sz[k] - 1);
  }
  return 1;
}

/* Runs the plan over the strided destination; the stream starts at (seed, offset). */
static int run_fill(fill_plan *pl, void *data, int32_t ndim, const int64_t *shape, const int64_t *stride,
                    uint64_t seed, uint64_t offset) {
  fill_dst t = {data, ndim, shape, stride, 1};
  for (int32_t d = 0; d < ndim; d++) t.numel *= shape[d];
  int64_t n = t.numel, E = pl->per_block;
  int64_t blocks = (n + E - 1) / E;
  pl->seed = seed;
  pl->base = offset;
  if (n == 0) return 0;
  int nt = 1;
#ifdef _OPENMP
  /* threads write disjoint elements only when no two elements alias */
  if (n >= 2 * TIDE_GRAIN && provably_disjoint(&t)) {
    nt = omp_get_max_threads();
    if (n / TIDE_GRAIN < nt) nt = (int)(n / TIDE_GRAIN);
  }
#endif
  if (nt <= 1) {
    fill_blocks(pl, &t, 0, blocks);
    return 0;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    int k = omp_get_thread_num(), m = omp_get_num_threads();
    int64_t b0 = blocks * k / m, b1 = blocks * (k + 1) / m;
    if (b0 < b1) fill_blocks(pl, &t, b0, b1);
  }
#endif
  return 0;
}

static int uniform(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
                   uint64_t offset, double low, double high) {
  fill_plan pl = {0};
  pl.kind = DIST_UNIFORM;
  pl.dtype = dt;
  pl.es = tide_dtype_size(dt);
  pl.per_block = dt == TIDE_F64 ? 2 : 4;
  pl.low = low;
  pl.high = high;
  pl.width = high - low;
  /* the type's values that stand in for a draw rounded across a bound */
  if (tide_philox_uniform_bounds(low, high, dt, &pl.bottom, &pl.top) != 0)
    return tide_fail("rand_: no %s value lies in [%.17g, %.17g)", tide_dtype_name(dt), low, high);
  return run_fill(&pl, data, ndim, shape, stride, seed, offset);
}

static int normal(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
                  uint64_t offset, double mean, double std) {
  fill_plan pl = {0};
  pl.kind = DIST_NORMAL;
  pl.dtype = dt;
  pl.es = tide_dtype_size(dt);
  pl.per_block = dt == TIDE_F64 ? 2 : 4;
  pl.mean = mean;
  pl.std = std;
  return run_fill(&pl, data, ndim, shape, stride, seed, offset);
}

static int randint(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
                   uint64_t offset, int64_t low, int64_t high) {
  fill_plan pl = {0};
  pl.kind = DIST_INT;
  pl.dtype = dt;
  pl.es = tide_dtype_size(dt);
  pl.ilow = low;
  pl.range = (uint64_t)high - (uint64_t)low;
  pl.wide = pl.range > (UINT64_C(1) << 32);
  pl.per_block = pl.wide ? 1 : 2;
  return run_fill(&pl, data, ndim, shape, stride, seed, offset);
}

static int bernoulli(void *data, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t dt, uint64_t seed,
                     uint64_t offset, double p) {
  fill_plan pl = {0};
  pl.kind = DIST_BERNOULLI;
  pl.dtype = dt;
  pl.es = tide_dtype_size(dt);
  pl.per_block = 2;
  pl.p = p;
  return run_fill(&pl, data, ndim, shape, stride, seed, offset);
}

/* Swap partner j for position i is x mod (i+1), x uniform in [0, 2^62) (the
   bias is at most (i+1)/2^62 relative, invisible for any n a tensor can
   hold). The draws are randint's wide ones, one block per position, made
   first (on all threads) into scratch; the swaps are sequential. */
static int randperm(int64_t *out, int64_t n, uint64_t seed, uint64_t offset) {
  for (int64_t i = 0; i < n; i++) out[i] = i;
  if (n < 2) return 0;
  int64_t m = n - 1, *x = malloc(sizeof(int64_t) * (size_t)m);
  if (!x) return tide_fail("randperm: out of memory");
  int64_t one = 1;
  randint(x, 1, &m, &one, TIDE_I64, seed, offset, 0, INT64_C(1) << 62);
  for (int64_t i = n - 1; i >= 1; i--) {
    int64_t j = x[n - 1 - i] % (i + 1), t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  free(x);
  return 0;
}

/* multinomial ---------------------------------------------------------------- */

typedef struct { double key; int64_t idx; } keyed;

/* Orders by key, then index, so ties resolve the same way everywhere. */
static int keyed_cmp(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  if (x->key < y->key) return -1;
  if (x->key > y->key) return 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

/* True when x orders before y (key, then index). */
static inline int keyed_less(const keyed *x, const keyed *y) {
  return x->key < y->key || (x->key == y->key && x->idx < y->idx);
}

/* Restores the max-heap property below position i of h[0..n). */
static void sift_down(keyed *h, int64_t n, int64_t i) {
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && keyed_less(&h[m], &h[l])) m = l;
    if (r < n && keyed_less(&h[m], &h[r])) m = r;
    if (m == i) return;
    keyed tmp = h[i]; h[i] = h[m]; h[m] = tmp;
    i = m;
  }
}

/* Offers x to a max-heap h of the `cap` smallest entries seen so far (size *n). */
static inline void heap_offer(keyed *h, int64_t *n, int64_t cap, keyed x) {
  if (*n < cap) {
    int64_t i = (*n)++;
    h[i] = x;
    while (i > 0 && keyed_less(&h[(i - 1) / 2], &h[i])) {  /* sift up */
      int64_t p = (i - 1) / 2;
      keyed tmp = h[i]; h[i] = h[p]; h[p] = tmp;
      i = p;
    }
  } else if (keyed_less(&x, &h[0])) {
    h[0] = x;
    sift_down(h, *n, 0);
  }
}

/* The category for uniform u in a row with running sums cdf[0..K): the first
   with cdf > u * total, else the last nonzero one. */
static int64_t pick(const double *cdf, int64_t K, int64_t last_nz, double u) {
  double x = u * cdf[K - 1];
  int64_t lo = 0, hi = K;  /* answer in [lo, hi] */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  return lo < K ? lo : last_nz;
}

static int multinomial(int64_t *o, const double *wd, int64_t rows, int64_t K, int64_t n, int32_t replacement,
                       uint64_t seed, uint64_t base) {
  int64_t *last_nz = malloc(sizeof(int64_t) * (size_t)(rows ? rows : 1));
  double *cdf = replacement ? malloc(sizeof(double) * (size_t)(rows ? rows * K : 1)) : NULL;
  int rc = -1;
  if (!last_nz || (replacement && !cdf)) {
    tide_fail("multinomial: out of memory");
    goto done;
  }
  /* validate every row before drawing anything */
  for (int64_t r = 0; r < rows; r++) {
    const double *row = wd + r * K;
    double sum = 0;
    int64_t nnz = 0;
    last_nz[r] = -1;
    for (int64_t c = 0; c < K; c++) {
      double v = row[c];
      if (!(v >= 0) || isinf(v)) {
        if (rows > 1) tide_fail("multinomial: weight %g at position %lld of row %lld of %lld is not finite and >= 0", v, (long long)c + 1, (long long)r + 1, (long long)rows);
        else tide_fail("multinomial: weight %g at position %lld is not finite and >= 0", v, (long long)c + 1);
        goto done;
      }
      sum += v;
      if (replacement) cdf[r * K + c] = sum;
      if (v > 0) { nnz++; last_nz[r] = c; }
    }
    if (nnz == 0) {
      if (rows > 1) tide_fail("multinomial: row %lld of %lld has only zero weights; at least one must be positive", (long long)r + 1, (long long)rows);
      else tide_fail("multinomial: all weights are zero; at least one must be positive");
      goto done;
    }
    if (isinf(sum)) {
      tide_fail("multinomial: the weights of row %lld sum to infinity; scale them down", (long long)r + 1);
      goto done;
    }
    if (!replacement && n > nnz) {
      if (rows > 1) tide_fail("multinomial: cannot draw %lld samples without replacement from row %lld, which has %lld nonzero weights", (long long)n, (long long)r + 1, (long long)nnz);
      else tide_fail("multinomial: cannot draw %lld samples without replacement from %lld nonzero weights", (long long)n, (long long)nnz);
      goto done;
    }
  }
  if (!o || rows == 0 || n == 0) {
    rc = 0;
    goto done;
  }
  int nt = 1;
  if (replacement) {
    int64_t total = rows * n, blocks = (total + 1) / 2;
#ifdef _OPENMP
    if (total >= 2 * TIDE_GRAIN / 8) {  /* a binary search per sample: worth threads sooner */
      nt = omp_get_max_threads();
      if (total / (TIDE_GRAIN / 8) < nt) nt = (int)(total / (TIDE_GRAIN / 8));
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
#ifdef _OPENMP
      int k = omp_get_thread_num(), m = omp_get_num_threads();
#else
      int k = 0, m = 1;
#endif
      int64_t b0 = blocks * k / m, b1 = blocks * (k + 1) / m;
      for (int64_t b = b0; b < b1; b++) {
        uint32_t wv[4];
        tide_philox_block(seed, base, (uint64_t)b, wv);
        for (int s = 0; s < 2; s++) {
          int64_t i = 2 * b + s;
          if (i >= total) break;
          int64_t r = i / n;
          o[i] = pick(cdf + r * K, K, last_nz[r], tide_philox_u53(wv[2 * s], wv[2 * s + 1]));
        }
      }
    }
  } else {
    int64_t total = rows * K;
#ifdef _OPENMP
    if (rows > 1 && total >= 2 * TIDE_GRAIN / 8) {
      nt = omp_get_max_threads();
      if (rows < nt) nt = (int)rows;
    }
#endif
    keyed *scratch = malloc(sizeof(keyed) * (size_t)n * (size_t)nt);
    if (!scratch) {
      tide_fail("multinomial: out of memory");
      goto done;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
#endif
    for (int64_t r = 0; r < rows; r++) {
#ifdef _OPENMP
      keyed *kv = scratch + (size_t)n * (size_t)omp_get_thread_num();
#else
      keyed *kv = scratch;
#endif
      const double *row = wd + r * K;
      int64_t m = 0;  /* entries in the heap of the n smallest keys */
      uint32_t wv[4];
      int64_t have = -1;
      for (int64_t c = 0; c < K; c++) {
        if (!(row[c] > 0)) continue;
        int64_t i = r * K + c, b = i / 2;
        if (b != have) {
          tide_philox_block(seed, base, (uint64_t)b, wv);
          have = b;
        }
        uint64_t x = ((uint64_t)wv[2 * (i & 1) + 1] << 32 | wv[2 * (i & 1)]) >> 11;
        keyed e = {tide_philox_neglog(x + 1, 53) / row[c], c};
        heap_offer(kv, &m, n, e);
      }
      qsort(kv, (size_t)m, sizeof(keyed), keyed_cmp);
      for (int64_t j = 0; j < n; j++) o[r * n + j] = kv[j].idx;
    }
    free(scratch);
  }
  rc = 0;
done:
  free(last_nz);
  free(cdf);
  return rc;
}

const struct tide_random_kernels tide_cpu_random = {
  .uniform = uniform,
  .normal = normal,
  .randint = randint,
  .bernoulli = bernoulli,
  .randperm = randperm,
  .multinomial = multinomial,
};
