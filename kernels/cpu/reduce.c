/* Reductions over one dimension or all elements (sum, mean, prod, max, min,
   argmax, argmin), for every dtype and any strides.

   Two loop shapes cover every case:
   - run mode: each output reduces a 1-d run (plus outer reduction dims for
     all-element reductions, walked in memory order); long reductions with
     few outputs are cut into fixed pieces whose partials are combined in
     order, so a result does not depend on the thread count;
   - column mode: when an output dimension is closer together in memory than
     the reduced one (sum over the first dim of a row-major matrix), a block
     of outputs accumulates whole rows (acc[j] += x[i, j]), which streams
     memory instead of gathering with a large stride.
   Float sums, means and products accumulate in double, so for f32 the only
   rounding that matters is the final store (column sums of f32 add four rows
   in f32 first: one more f32 rounding per four elements). Integer sums and
   products wrap in 64 bits like torch's int64. Max/min with positions use
   order-free updates (NaN first, then the larger value, ties to the lower
   index) so pieces and memory-order walks still give torch's first
   occurrence. */
#include "reduce.h"
#include "dtype.h"
#include "error.h"
#include "iter.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Kernel families: MEAN uses SUM's loops, ARGMAX MAX's, ARGMIN MIN's. MAXV
   and MINV are max/min when no position is wanted: branch-free loops that
   vectorize, with `at` left at 0 (never "empty"). */
enum { K_SUM, K_PROD, K_MAX, K_MIN, K_MAXV, K_MINV, K_NUM };

/* A partial result: f for float inputs, i for integer inputs, at the logical
   index of the current max/min (INT64_MAX while nothing was seen). */
typedef struct { double f; int64_t i; int64_t at; } acc_t;

typedef void (*run_fn)(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t step);
typedef void (*col_fn)(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx);

/* Max/min updates that are order-independent: NaN wins (the lowest-index NaN
   among several), and equal values keep the lower index, so partials from
   any traversal order or piece combine to torch's first-occurrence answer. */
static inline void upd_max_f(double *best, int64_t *at, double v, int64_t i) {
  if (v != v ? (*best == *best || i < *at) : (v > *best || (v == *best && i < *at))) { *best = v; *at = i; }
}
static inline void upd_min_f(double *best, int64_t *at, double v, int64_t i) {
  if (v != v ? (*best == *best || i < *at) : (v < *best || (v == *best && i < *at))) { *best = v; *at = i; }
}
static inline void upd_max_i(int64_t *best, int64_t *at, int64_t v, int64_t i) {
  if (v > *best || (v == *best && i < *at)) { *best = v; *at = i; }
}
static inline void upd_min_i(int64_t *best, int64_t *at, int64_t v, int64_t i) {
  if (v < *best || (v == *best && i < *at)) { *best = v; *at = i; }
}

/* wrapping 64-bit integer arithmetic (signed overflow would be UB) */
static inline int64_t wadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t wmul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

static void acc_init(acc_t *a, int kind) {
  a->at = kind >= K_MAXV ? 0 : INT64_MAX;
  switch (kind) {
    case K_SUM: a->f = 0; a->i = 0; break;
    case K_PROD: a->f = 1; a->i = 1; break;
    case K_MAX: case K_MAXV: a->f = -INFINITY; a->i = INT64_MIN; break;
    default: a->f = INFINITY; a->i = INT64_MAX; break;
  }
}

/* Folds partial b into a. */
static void acc_combine(acc_t *a, const acc_t *b, int kind, int isf) {
  switch (kind) {
    case K_SUM: a->f += b->f; a->i = wadd(a->i, b->i); break;
    case K_PROD: a->f *= b->f; a->i = wmul(a->i, b->i); break;
    case K_MAX: case K_MAXV: if (b->at == INT64_MAX) break;
      if (isf) upd_max_f(&a->f, &a->at, b->f, b->at); else upd_max_i(&a->i, &a->at, b->i, b->at);
      break;
    default: if (b->at == INT64_MAX) break;
      if (isf) upd_min_f(&a->f, &a->at, b->f, b->at); else upd_min_i(&a->i, &a->at, b->i, b->at);
      break;
  }
}

/* ---- per-dtype loops ------------------------------------------------------ */

#define CV_F32(v) ((double)(v))
#define CV_F64(v) ((double)(v))
#define CV_BF16(v) ((double)tide_bf16_to_f32(v))
#define CV_F16(v) ((double)tide_f16_to_f32(v))
#define CF_F32(v) (v)
#define CF_F64(v) (v)
#define CF_BF16(v) tide_bf16_to_f32(v)
#define CF_F16(v) tide_f16_to_f32(v)
#define CV_I32(v) ((int64_t)(v))
#define CV_I64(v) ((int64_t)(v))
#define CV_U8(v) ((int64_t)(v))
#define CV_BOOL(v) ((int64_t)((v) != 0))
#define CV_U16(v) ((int64_t)(v))

/* NaN-propagating max/min written as selects so loops over them vectorize:
   once m is NaN neither comparison is true and it stays NaN. */
#define FMAXN(m, v) (((v) > (m) || (v) != (v)) ? (v) : (m))
#define FMINN(m, v) (((v) < (m) || (v) != (v)) ? (v) : (m))

/* Float loops. The contiguous sum keeps 16 independent double accumulators so
   the adds vectorize and no single add chain limits throughput. */
#define FLOAT_KERNELS(D, T, CT)                                                                          \
  static double sum_contig_##D(const T *x, int64_t n) {                                            \
    double acc[16] = {0};                                                                          \
    int64_t k = 0;                                                                                 \
    for (; k + 16 <= n; k += 16)                                                                   \
      for (int u = 0; u < 16; u++) acc[u] += CV_##D(x[k + u]);                                     \
    /* fold the accumulators as a tree: short rows pay little for them */                         \
    for (int u = 0; u < 8; u++) acc[u] += acc[u + 8];                                              \
    for (int u = 0; u < 4; u++) acc[u] += acc[u + 4];                                              \
    double s = (acc[0] + acc[2]) + (acc[1] + acc[3]);                                              \
    for (; k < n; k++) s += CV_##D(x[k]);                                                          \
    return s;                                                                                      \
  }                                                                                                \
  static void run_sum_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    if (bs == (int64_t)sizeof(T)) { a->f += sum_contig_##D((const T *)p, n); return; }             \
    double s0 = 0, s1 = 0;                                                                         \
    int64_t k = 0;                                                                                 \
    for (; k + 2 <= n; k += 2) { s0 += CV_##D(*(const T *)(p + k * bs)); s1 += CV_##D(*(const T *)(p + (k + 1) * bs)); } \
    if (k < n) s0 += CV_##D(*(const T *)(p + k * bs));                                             \
    a->f += s0 + s1;                                                                               \
  }                                                                                                \
  static void run_prod_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    double s = a->f;                                                                               \
    for (int64_t k = 0; k < n; k++) s *= CV_##D(*(const T *)(p + k * bs));                         \
    a->f = s;                                                                                      \
  }                                                                                                \
  /* Value-only max/min of a contiguous run in the input's own width (exact:  \
     bf16/f16 widen to f32 without rounding). NaN is a separate OR-ed flag,  \
     which keeps the loops to compares and selects that vectorize; 16 lanes  \
     give independent select chains. Long runs read four streams at once,    \
     which measured faster; short ones one stream, which the prefetcher      \
     picks up sooner. */                                                      \
  static double extc_##D(const T *x, int64_t n, double init, int want_max) {                       \
    CT m0 = want_max ? (CT)-INFINITY : (CT)INFINITY, m1 = m0, m2 = m0, m3 = m0;                    \
    int bad = 0;                                                                                   \
    int64_t done;                                                                                  \
    if (n >= 32768) {                                                                              \
      int64_t q = n / 4;                                                                           \
      done = 4 * q;                                                                                \
      if (want_max) {                                                                              \
        _Pragma("omp simd reduction(max: m0, m1, m2, m3) reduction(|: bad)")                       \
        for (int64_t k = 0; k < q; k++) {                                                          \
          CT v0 = CF_##D(x[k]), v1 = CF_##D(x[k + q]), v2 = CF_##D(x[k + 2 * q]), v3 = CF_##D(x[k + 3 * q]); \
          m0 = v0 > m0 ? v0 : m0; m1 = v1 > m1 ? v1 : m1; m2 = v2 > m2 ? v2 : m2; m3 = v3 > m3 ? v3 : m3; \
          bad |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);                                \
        }                                                                                          \
      } else {                                                                                     \
        _Pragma("omp simd reduction(min: m0, m1, m2, m3) reduction(|: bad)")                       \
        for (int64_t k = 0; k < q; k++) {                                                          \
          CT v0 = CF_##D(x[k]), v1 = CF_##D(x[k + q]), v2 = CF_##D(x[k + 2 * q]), v3 = CF_##D(x[k + 3 * q]); \
          m0 = v0 < m0 ? v0 : m0; m1 = v1 < m1 ? v1 : m1; m2 = v2 < m2 ? v2 : m2; m3 = v3 < m3 ? v3 : m3; \
          bad |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);                                \
        }                                                                                          \
      }                                                                                            \
    } else {                                                                                       \
      done = n;                                                                                    \
      if (want_max) {                                                                              \
        _Pragma("omp simd reduction(max: m0) reduction(|: bad) simdlen(16)")                       \
        for (int64_t k = 0; k < n; k++) { CT v = CF_##D(x[k]); m0 = v > m0 ? v : m0; bad |= v != v; } \
      } else {                                                                                     \
        _Pragma("omp simd reduction(min: m0) reduction(|: bad) simdlen(16)")                       \
        for (int64_t k = 0; k < n; k++) { CT v = CF_##D(x[k]); m0 = v < m0 ? v : m0; bad |= v != v; } \
      }                                                                                            \
    }                                                                                              \
    double r = init, ms[4] = {m0, m1, m2, m3};                                                     \
    for (int64_t k = done; k < n; k++) { double v = CF_##D(x[k]); r = want_max ? FMAXN(r, v) : FMINN(r, v); } \
    for (int u = 0; u < 4; u++) r = want_max ? FMAXN(r, ms[u]) : FMINN(r, ms[u]);                  \
    return bad ? (double)NAN : r;                                                                  \
  }                                                                                                \
  /* With positions: contiguous runs find the value with the vectorized loop \
     first, then scan for its first occurrence (or the first NaN), which     \
     beats a branchy compare-and-record loop. */                              \
  static int64_t first_of_##D(const T *x, double b) {                                              \
    int64_t k = 0;                                                                                 \
    if (b != b) while (CV_##D(x[k]) == CV_##D(x[k])) k++;                                          \
    else while (CV_##D(x[k]) != b) k++;                                                            \
    return k;                                                                                      \
  }                                                                                                \
  static void run_max_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    if (bs == (int64_t)sizeof(T) && n >= 32) {                                                     \
      const T *x = (const T *)p;                                                                   \
      int64_t k = first_of_##D(x, extc_##D(x, n, -INFINITY, 1));                                   \
      upd_max_f(&a->f, &a->at, CV_##D(x[k]), idx + k * st);                                        \
      return;                                                                                      \
    }                                                                                              \
    for (int64_t k = 0; k < n; k++) upd_max_f(&a->f, &a->at, CV_##D(*(const T *)(p + k * bs)), idx + k * st); \
  }                                                                                                \
  static void run_min_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    if (bs == (int64_t)sizeof(T) && n >= 32) {                                                     \
      const T *x = (const T *)p;                                                                   \
      int64_t k = first_of_##D(x, extc_##D(x, n, INFINITY, 0));                                    \
      upd_min_f(&a->f, &a->at, CV_##D(x[k]), idx + k * st);                                        \
      return;                                                                                      \
    }                                                                                              \
    for (int64_t k = 0; k < n; k++) upd_min_f(&a->f, &a->at, CV_##D(*(const T *)(p + k * bs)), idx + k * st); \
  }                                                                                                \
  static void run_maxv_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    if (bs == (int64_t)sizeof(T)) { a->f = extc_##D((const T *)p, n, a->f, 1); return; }           \
    double m = a->f;                                                                               \
    for (int64_t k = 0; k < n; k++) { double v = CV_##D(*(const T *)(p + k * bs)); m = FMAXN(m, v); } \
    a->f = m;                                                                                      \
  }                                                                                                \
  static void run_minv_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    if (bs == (int64_t)sizeof(T)) { a->f = extc_##D((const T *)p, n, a->f, 0); return; }           \
    double m = a->f;                                                                               \
    for (int64_t k = 0; k < n; k++) { double v = CV_##D(*(const T *)(p + k * bs)); m = FMINN(m, v); } \
    a->f = m;                                                                                      \
  }                                                                                                \
  static void col_maxv_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) af[j] = FMAXN(af[j], CV_##D(*(const T *)(p + j * bs)));       \
  }                                                                                                \
  static void col_minv_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) af[j] = FMINN(af[j], CV_##D(*(const T *)(p + j * bs)));       \
  }                                                                                                \
  static void col_sum_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    if (bs == (int64_t)sizeof(T)) {                                                                \
      const T *x = (const T *)p;                                                                   \
      for (int64_t j = 0; j < n; j++) af[j] += CV_##D(x[j]);                                       \
    } else {                                                                                       \
      for (int64_t j = 0; j < n; j++) af[j] += CV_##D(*(const T *)(p + j * bs));                   \
    }                                                                                              \
  }                                                                                                \
  static void col_prod_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) af[j] *= CV_##D(*(const T *)(p + j * bs));                     \
  }                                                                                                \
  static void col_max_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) upd_max_f(&af[j], &at[j], CV_##D(*(const T *)(p + j * bs)), idx); \
  }                                                                                                \
  static void col_min_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) upd_min_f(&af[j], &at[j], CV_##D(*(const T *)(p + j * bs)), idx); \
  }

#define INT_KERNELS(D, T)                                                                          \
  static void run_sum_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    uint64_t s = (uint64_t)a->i;                                                                   \
    if (bs == (int64_t)sizeof(T)) {                                                                \
      const T *x = (const T *)p;                                                                   \
      for (int64_t k = 0; k < n; k++) s += (uint64_t)CV_##D(x[k]);                                 \
    } else {                                                                                       \
      for (int64_t k = 0; k < n; k++) s += (uint64_t)CV_##D(*(const T *)(p + k * bs));            \
    }                                                                                              \
    a->i = (int64_t)s;                                                                             \
  }                                                                                                \
  static void run_prod_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    uint64_t s = (uint64_t)a->i;                                                                   \
    for (int64_t k = 0; k < n; k++) s *= (uint64_t)CV_##D(*(const T *)(p + k * bs));               \
    a->i = (int64_t)s;                                                                             \
  }                                                                                                \
  static void run_max_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    for (int64_t k = 0; k < n; k++) upd_max_i(&a->i, &a->at, CV_##D(*(const T *)(p + k * bs)), idx + k * st); \
  }                                                                                                \
  static void run_min_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    for (int64_t k = 0; k < n; k++) upd_min_i(&a->i, &a->at, CV_##D(*(const T *)(p + k * bs)), idx + k * st); \
  }                                                                                                \
  static void run_maxv_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    int64_t m = a->i;                                                                              \
    for (int64_t k = 0; k < n; k++) { int64_t v = CV_##D(*(const T *)(p + k * bs)); m = v > m ? v : m; } \
    a->i = m;                                                                                      \
  }                                                                                                \
  static void run_minv_##D(acc_t *a, const char *p, int64_t bs, int64_t n, int64_t idx, int64_t st) { \
    int64_t m = a->i;                                                                              \
    for (int64_t k = 0; k < n; k++) { int64_t v = CV_##D(*(const T *)(p + k * bs)); m = v < m ? v : m; } \
    a->i = m;                                                                                      \
  }                                                                                                \
  static void col_maxv_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) { int64_t v = CV_##D(*(const T *)(p + j * bs)); ai[j] = v > ai[j] ? v : ai[j]; } \
  }                                                                                                \
  static void col_minv_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) { int64_t v = CV_##D(*(const T *)(p + j * bs)); ai[j] = v < ai[j] ? v : ai[j]; } \
  }                                                                                                \
  static void col_sum_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) ai[j] = wadd(ai[j], CV_##D(*(const T *)(p + j * bs)));         \
  }                                                                                                \
  static void col_prod_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) ai[j] = wmul(ai[j], CV_##D(*(const T *)(p + j * bs)));         \
  }                                                                                                \
  static void col_max_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) upd_max_i(&ai[j], &at[j], CV_##D(*(const T *)(p + j * bs)), idx); \
  }                                                                                                \
  static void col_min_##D(double *af, int64_t *ai, int64_t *at, const char *p, int64_t bs, int64_t n, int64_t idx) { \
    for (int64_t j = 0; j < n; j++) upd_min_i(&ai[j], &at[j], CV_##D(*(const T *)(p + j * bs)), idx); \
  }

FLOAT_KERNELS(F32, float, float)
FLOAT_KERNELS(F64, double, double)
FLOAT_KERNELS(BF16, uint16_t, float)
FLOAT_KERNELS(F16, uint16_t, float)
INT_KERNELS(I32, int32_t)
INT_KERNELS(I64, int64_t)
INT_KERNELS(U8, uint8_t)
INT_KERNELS(BOOL, uint8_t)
INT_KERNELS(U16, uint16_t)

/* Tables indexed [kind][dtype]; dtype order follows enum tide_dtype. */
#define ROW(F) {F##_F32, F##_F64, F##_BF16, F##_F16, F##_I32, F##_I64, F##_U8, F##_BOOL, F##_U16}
static const run_fn RUN[K_NUM][TIDE_NUM_DTYPES] = {ROW(run_sum), ROW(run_prod), ROW(run_max),
                                                   ROW(run_min), ROW(run_maxv), ROW(run_minv)};
static const col_fn COL[K_NUM][TIDE_NUM_DTYPES] = {ROW(col_sum), ROW(col_prod), ROW(col_max),
                                                   ROW(col_min), ROW(col_maxv), ROW(col_minv)};

/* ---- plan ------------------------------------------------------------------ */

typedef struct {
  int32_t op, kind, dt, odt, isf, oes;
  /* reduction space, outermost first; the last dim is walked as a 1-d run.
     Strides in bytes; rlog is the logical (flat, row-major) index step that
     argmax reports. */
  int32_t rnd;
  int64_t rshape[TIDE_MAX_DIMS], rstride[TIDE_MAX_DIMS], rlog[TIDE_MAX_DIMS];
  int64_t rnumel;
  /* output space (size-1 dims dropped, mergeable dims merged): input strides
     in bytes, output strides in elements of the contiguous output */
  int32_t ond;
  int64_t oshape[TIDE_MAX_DIMS], oistride[TIDE_MAX_DIMS], oostride[TIDE_MAX_DIMS];
  int64_t onumel;
  const char *in;
  char *out;
  int64_t *idx;  /* positions for max/min with indices, or NULL */
  run_fn run;
  col_fn col;
} plan_t;

static void store_int(char *p, int32_t dt, int64_t v) {
  switch (dt) {
    case TIDE_I32: *(int32_t *)p = (int32_t)v; break;
    case TIDE_U8: case TIDE_BOOL: *(uint8_t *)p = (uint8_t)v; break;
    case TIDE_U16: *(uint16_t *)p = (uint16_t)v; break;
    default: *(int64_t *)p = v; break;
  }
}

/* Writes the final value (and index) of output element o. */
static void finish(const plan_t *p, const acc_t *a, int64_t o) {
  char *dst = p->out + o * p->oes;
  switch (p->op) {
    case TIDE_SUM: case TIDE_PROD:
      if (p->isf) tide_store_f64(dst, p->odt, a->f);
      else *(int64_t *)dst = a->i;
      break;
    case TIDE_MEAN:  /* empty: 0 / 0 gives NaN like torch */
      tide_store_f64(dst, p->odt, (p->isf ? a->f : (double)a->i) / (double)p->rnumel);
      break;
    case TIDE_MAX: case TIDE_MIN:
      if (p->isf) tide_store_f64(dst, p->odt, a->f);
      else store_int(dst, p->odt, a->i);
      if (p->idx) p->idx[o] = a->at;
      break;
    default:  /* argmax, argmin */
      *(int64_t *)dst = a->at;
      break;
  }
}

/* Reduces flat positions [f0, f1) of the reduction space of the output whose
   first input element is at base, into acc. */
static void reduce_flat(const plan_t *p, const char *base, int64_t f0, int64_t f1, acc_t *acc) {
  int32_t nd = p->rnd;
  int64_t inner = p->rshape[nd - 1], ist = p->rstride[nd - 1], ilog = p->rlog[nd - 1];
  if (nd == 1) {  /* the common case, kept free of divisions for short rows */
    p->run(acc, base + f0 * ist, ist, f1 - f0, f0 * ilog, ilog);
    return;
  }
  int64_t idx[TIDE_MAX_DIMS];
  int64_t r = f0 / inner, c = f0 % inner;
  const char *row = base;
  int64_t rowlog = 0;
  for (int32_t d = nd - 2; d >= 0; d--) {
    idx[d] = r % p->rshape[d];
    r /= p->rshape[d];
    row += idx[d] * p->rstride[d];
    rowlog += idx[d] * p->rlog[d];
  }
  int64_t left = f1 - f0;
  while (left > 0) {
    int64_t len = inner - c < left ? inner - c : left;
    p->run(acc, row + c * ist, ist, len, rowlog + c * ilog, ilog);
    left -= len;
    c = 0;
    for (int32_t d = nd - 2; d >= 0 && left > 0; d--) {  /* odometer step to the next run */
      row += p->rstride[d];
      rowlog += p->rlog[d];
      if (++idx[d] < p->rshape[d]) break;
      row -= p->rstride[d] * p->rshape[d];
      rowlog -= p->rlog[d] * p->rshape[d];
      idx[d] = 0;
    }
  }
}

static int pick_threads(int64_t work) {
#ifdef _OPENMP
  if (work < 2 * TIDE_GRAIN) return 1;
  int n = omp_get_max_threads();
  if (work / TIDE_GRAIN < n) n = (int)(work / TIDE_GRAIN);
  return n < 1 ? 1 : n;
#else
  (void)work;
  return 1;
#endif
}

/* Below this many outputs a long reduction is split into pieces instead of
   giving each thread whole outputs. Fixed (not the thread count) so a result
   is the same whatever the number of threads. */
#define FEW_OUTPUTS 64
#define PIECE 32768
#define MAX_PIECES 1024

/* Input address of output position o (a flat index over oshape). */
static const char *out_base(const plan_t *p, int64_t o) {
  const char *b = p->in;
  for (int32_t d = p->ond - 1; d >= 0; d--) {
    b += (o % p->oshape[d]) * p->oistride[d];
    o /= p->oshape[d];
  }
  return b;
}

static int run_mode(const plan_t *p, int nthreads) {
  int64_t M = p->onumel, R = p->rnumel;
  if (M < FEW_OUTPUTS && R >= 2 * PIECE) {
    int64_t piece = PIECE;
    if ((R + piece - 1) / piece > MAX_PIECES) piece = (R + MAX_PIECES - 1) / MAX_PIECES;
    int64_t np = (R + piece - 1) / piece;
    acc_t *part = malloc(sizeof(acc_t) * (size_t)np);
    if (!part) return tide_fail("out of memory for reduction partials");
    for (int64_t o = 0; o < M; o++) {
      const char *base = out_base(p, o);
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
      for (int64_t k = 0; k < np; k++) {
        acc_init(&part[k], p->kind);
        int64_t f1 = (k + 1) * piece < R ? (k + 1) * piece : R;
        reduce_flat(p, base, k * piece, f1, &part[k]);
      }
      acc_t a = part[0];
      for (int64_t k = 1; k < np; k++) acc_combine(&a, &part[k], p->kind, p->isf);
      finish(p, &a, o);
    }
    free(part);
    return 0;
  }
  if (M < 2) nthreads = 1;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    int t = 0, nt = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    nt = omp_get_num_threads();
#endif
    int64_t o0 = M * t / nt, o1 = M * (t + 1) / nt;
    if (o0 < o1) {
      int64_t idx[TIDE_MAX_DIMS];
      int64_t r = o0;
      const char *base = p->in;
      for (int32_t d = p->ond - 1; d >= 0; d--) {
        idx[d] = r % p->oshape[d];
        r /= p->oshape[d];
        base += idx[d] * p->oistride[d];
      }
      for (int64_t o = o0; o < o1; o++) {
        acc_t a;
        acc_init(&a, p->kind);
        if (R > 0) reduce_flat(p, base, 0, R, &a);
        finish(p, &a, o);
        for (int32_t d = p->ond - 1; d >= 0; d--) {
          base += p->oistride[d];
          if (++idx[d] < p->oshape[d]) break;
          base -= p->oistride[d] * p->oshape[d];
          idx[d] = 0;
        }
      }
    }
  }
  return 0;
}

/* ---- column mode ------------------------------------------------------------ */

/* Columns one thread accumulates at a time: 32 KB of double sums stay in L1
   while whole rows stream past. */
#define COLS 4096
/* Elements per row piece when there are too few column blocks to share. */
#define COL_PIECE (1 << 20)

static int has_at(int kind) { return kind == K_MAX || kind == K_MIN; }

static void cols_init(const plan_t *p, double *af, int64_t *ai, int64_t *at, int64_t n) {
  acc_t a;
  acc_init(&a, p->kind);
  if (p->isf) for (int64_t j = 0; j < n; j++) af[j] = a.f;
  else for (int64_t j = 0; j < n; j++) ai[j] = a.i;
  if (has_at(p->kind)) for (int64_t j = 0; j < n; j++) at[j] = a.at;
}

static acc_t cols_get(const plan_t *p, const double *af, const int64_t *ai, const int64_t *at, int64_t j) {
  acc_t a;
  acc_init(&a, p->kind);
  if (p->isf) a.f = af[j]; else a.i = ai[j];
  if (has_at(p->kind)) a.at = at[j];
  return a;
}

/* f32 column sums take four rows at a time: one f32 rounding per group of
   four before the double accumulator halves the accumulator traffic, which
   otherwise bounds the loop below memory bandwidth. */
static void col_sum4_f32(double *restrict af, const char *q, int64_t rs, int64_t n) {
  const float *x0 = (const float *)q, *x1 = (const float *)(q + rs);
  const float *x2 = (const float *)(q + 2 * rs), *x3 = (const float *)(q + 3 * rs);
  for (int64_t j = 0; j < n; j++) af[j] += (double)((x0[j] + x1[j]) + (x2[j] + x3[j]));
}

/* Output dim v (in oshape) is walked as columns; the other output dims,
   column blocks and (for few blocks) row pieces form the units handed to
   threads. Row pieces leave partials that are combined in piece order. */
static int col_mode(const plan_t *p, int32_t v, int nthreads) {
  int64_t N = p->oshape[v], R = p->rnumel, rows = p->onumel / N;
  int64_t cs = p->oistride[v], ocs = p->oostride[v], rs = p->rstride[0];
  int64_t ch = N < COLS ? N : COLS;
  /* the piece count depends on the shape only, so results do not depend on
     the number of threads */
  int64_t np = 1;
  if (rows * ((N + ch - 1) / ch) < 16) {
    np = R * ch / COL_PIECE;
    if (np > 32) np = 32;
    if (np * N > ((int64_t)1 << 21)) np = ((int64_t)1 << 21) / N;
    if (np < 1) np = 1;
  }
  while (ch > 256 && rows * ((N + ch - 1) / ch) * np < 4 * nthreads) ch = (ch + 1) / 2;
  int64_t nch = (N + ch - 1) / ch, total = rows * nch * np;
  if (total < nthreads) nthreads = (int)total;
  if (nthreads < 1) nthreads = 1;
  /* other output dims in oshape order, minus v */
  int32_t nd = 0;
  int64_t sh[TIDE_MAX_DIMS], ist[TIDE_MAX_DIMS], ost[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < p->ond; d++) {
    if (d == v) continue;
    sh[nd] = p->oshape[d]; ist[nd] = p->oistride[d]; ost[nd] = p->oostride[d]; nd++;
  }
  /* per-thread accumulators, then the partials of every row piece */
  size_t tsz = (size_t)ch * 3;
  char *tbuf = malloc(sizeof(double) * tsz * (size_t)nthreads);
  double *pf = NULL;
  int64_t *pi = NULL, *pa = NULL;
  int oom = !tbuf;
  if (np > 1 && !oom) {
    size_t cnt = (size_t)(np * N);
    if (p->isf) oom |= !(pf = malloc(sizeof(double) * cnt));
    else oom |= !(pi = malloc(sizeof(int64_t) * cnt));
    if (has_at(p->kind)) oom |= !(pa = malloc(sizeof(int64_t) * cnt));
  }
  if (oom) {
    free(tbuf); free(pf); free(pi); free(pa);
    return tide_fail("out of memory for reduction partials");
  }
  int sum4 = p->kind == K_SUM && p->dt == TIDE_F32 && cs == 4;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    int t = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
#endif
    double *af = (double *)tbuf + (size_t)t * tsz;
    int64_t *ai = (int64_t *)(af + ch), *at = ai + ch;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < total; u++) {
      int64_t piece = u % np, unit = u / np;
      int64_t row = unit / nch, c0 = (unit % nch) * ch;
      int64_t n = N - c0 < ch ? N - c0 : ch;
      const char *q = p->in + c0 * cs;
      int64_t obase = c0 * ocs;
      for (int32_t d = nd - 1; d >= 0; d--) {
        int64_t id = row % sh[d];
        row /= sh[d];
        q += id * ist[d];
        obase += id * ost[d];
      }
      int64_t r0 = R * piece / np, r1 = R * (piece + 1) / np;
      cols_init(p, af, ai, at, n);
      q += r0 * rs;
      int64_t i = r0;
      if (sum4) for (; i + 4 <= r1; i += 4, q += 4 * rs) col_sum4_f32(af, q, rs, n);
      for (; i < r1; i++, q += rs) p->col(af, ai, at, q, cs, n, i);
      if (np == 1) {
        for (int64_t j = 0; j < n; j++) {
          acc_t a = cols_get(p, af, ai, at, j);
          finish(p, &a, obase + j * ocs);
        }
      } else {  /* np > 1 only when rows == 1 */
        int64_t off = piece * N + c0;
        if (pf) memcpy(pf + off, af, sizeof(double) * (size_t)n);
        if (pi) memcpy(pi + off, ai, sizeof(int64_t) * (size_t)n);
        if (pa) memcpy(pa + off, at, sizeof(int64_t) * (size_t)n);
      }
    }
  }
  if (np > 1) {
    for (int64_t j = 0; j < N; j++) {
      acc_t a = cols_get(p, pf, pi, pa, j);
      for (int64_t k = 1; k < np; k++) {
        acc_t b = cols_get(p, pf, pi, pa, k * N + j);
        acc_combine(&a, &b, p->kind, p->isf);
      }
      finish(p, &a, j * ocs);
    }
  }
  free(tbuf); free(pf); free(pi); free(pa);
  return 0;
}

/* ---- entry point ------------------------------------------------------------ */

/* Plans the walk (run or column mode, dims merged and ordered for memory)
   and runs it; the op layer has checked the operand and made the outputs. */
static int reduce(void *outp, int64_t *indices, const void *inp, int32_t op, int32_t dtype, int32_t odt, int32_t nd,
                  const int64_t *shape, const int64_t *stride, int32_t dim) {
  int all = dim < 0 || nd == 0;
  int isf = tide_is_float(dtype);
  int is_arg = op == TIDE_ARGMAX || op == TIDE_ARGMIN;
  int64_t numel = 1;
  for (int32_t i = 0; i < nd; i++) numel *= shape[i];
  int64_t R = all ? numel : shape[dim];
  int64_t M = 1;
  if (!all)
    for (int32_t i = 0; i < nd; i++) if (i != dim) M *= shape[i];

  plan_t p;
  memset(&p, 0, sizeof p);
  p.op = op;
  p.kind = (op == TIDE_SUM || op == TIDE_MEAN) ? K_SUM : op == TIDE_PROD ? K_PROD
         : op == TIDE_ARGMAX ? K_MAX : op == TIDE_ARGMIN ? K_MIN
         : op == TIDE_MAX ? (indices ? K_MAX : K_MAXV) : (indices ? K_MIN : K_MINV);
  p.dt = dtype;
  p.odt = odt;
  p.isf = isf;
  p.oes = tide_dtype_size(odt);
  p.in = inp;
  p.out = outp;
  p.idx = indices;
  p.run = RUN[p.kind][p.dt];
  p.col = COL[p.kind][p.dt];
  p.rnumel = R;
  p.onumel = M;
  int64_t es = tide_dtype_size(dtype);

  if (all) {
    /* Any traversal order gives the same answer (the updates are order-free),
       so walk memory in address order: sort dims by stride, largest first,
       then merge dims that are contiguous in one another. */
    int64_t logical[TIDE_MAX_DIMS];
    int64_t lstep = 1;  /* row-major strides: argmax reports flat indices */
    for (int32_t i = nd - 1; i >= 0; i--) { logical[i] = lstep; lstep *= shape[i] > 0 ? shape[i] : 1; }
    int32_t n = 0;
    for (int32_t i = 0; i < nd; i++) {
      if (shape[i] == 1) continue;
      int64_t s = stride[i] * es, as = s < 0 ? -s : s;
      int32_t k = n++;
      while (k > 0 && (p.rstride[k - 1] < 0 ? -p.rstride[k - 1] : p.rstride[k - 1]) < as) {
        p.rshape[k] = p.rshape[k - 1]; p.rstride[k] = p.rstride[k - 1]; p.rlog[k] = p.rlog[k - 1];
        k--;
      }
      p.rshape[k] = shape[i]; p.rstride[k] = s; p.rlog[k] = logical[i];
    }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
      if (m > 0 && p.rstride[m - 1] == p.rstride[i] * p.rshape[i] && (!is_arg || p.rlog[m - 1] == p.rlog[i] * p.rshape[i])) {
        p.rshape[m - 1] *= p.rshape[i];
        p.rstride[m - 1] = p.rstride[i];
        p.rlog[m - 1] = p.rlog[i];
        continue;
      }
      p.rshape[m] = p.rshape[i]; p.rstride[m] = p.rstride[i]; p.rlog[m] = p.rlog[i];
      m++;
    }
    if (m == 0) { p.rshape[0] = 1; p.rstride[0] = 0; p.rlog[0] = 0; m = 1; }
    if (R == 0) { p.rshape[0] = 0; m = 1; }
    p.rnd = m;
    p.ond = 0;
  } else {
    p.rnd = 1;
    p.rshape[0] = R;
    p.rstride[0] = stride[dim] * es;
    p.rlog[0] = 1;
    /* output dims in order, without size 1, merged where contiguous in the input */
    int32_t m = 0;
    int64_t ost = 1;
    int64_t osz[TIDE_MAX_DIMS], ois[TIDE_MAX_DIMS];
    for (int32_t i = 0; i < nd; i++) {
      if (i == dim || shape[i] == 1) continue;
      osz[m] = shape[i]; ois[m] = stride[i] * es; m++;
    }
    int32_t q = 0;
    for (int32_t i = 0; i < m; i++) {
      if (q > 0 && p.oistride[q - 1] == ois[i] * osz[i]) {
        p.oshape[q - 1] *= osz[i];
        p.oistride[q - 1] = ois[i];
        continue;
      }
      p.oshape[q] = osz[i]; p.oistride[q] = ois[i]; q++;
    }
    p.ond = q;
    for (int32_t i = q - 1; i >= 0; i--) { p.oostride[i] = ost; ost *= p.oshape[i]; }
  }

  int rc = 0;
  if (M > 0) {
    int nthreads = pick_threads(numel > M ? numel : M);
    /* column mode: an output dim lies closer in memory than the reduced one,
       or the reduction is so short that per-output calls would dominate */
    int32_t v = -1;
    if (!all && R > 0) {
      int64_t best = INT64_MAX;
      for (int32_t d = 0; d < p.ond; d++) {
        int64_t s = p.oistride[d] < 0 ? -p.oistride[d] : p.oistride[d];
        if (s < best) { best = s; v = d; }
      }
      int64_t rs = p.rstride[0] < 0 ? -p.rstride[0] : p.rstride[0];
      if (v >= 0 && !(p.oshape[v] >= 16 && (best < rs || R <= 8))) v = -1;
    }
    rc = v >= 0 ? col_mode(&p, v, nthreads) : run_mode(&p, nthreads);
  }
  return rc;
}

const struct tide_reduce_kernels tide_cpu_reduce = {
  .reduce = reduce,
};
