/* See matmul_few_rows.h. Both layouts read each element of B once, while the
   left side's few rows stay in L1: the product of m <= 16 rows is a stream
   over B at memory bandwidth instead of gemm's pack-then-multiply. */
#include "matmul_few_rows.h"
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* elements of C one task accumulates in L1 (B not transposed): as wide a
   block of columns as that allows, so B is read in long contiguous runs */
#define ACC 4096
/* independent partial sums per dot product (B transposed): enough to fill
   the vector units and hide the add latency; the compiler vectorizes them */
#define LANES 16
/* below this many elements of B one thread streams it faster than a team starts */
#define PAR_MIN (1 << 17)

/* y + x w, fused where the CPU fuses (the vector and the scalar forms alike) */
#if defined(__FMA__)
#define MADD(x, w, y) _mm256_fmadd_ps(x, w, y)
#define SMADD(x, w, y) fmaf(x, w, y)
#else
#define MADD(x, w, y) _mm256_add_ps(y, _mm256_mul_ps(x, w))
#define SMADD(x, w, y) ((y) + (x) * (w))
#endif

/* acc rows i0, i0+1 (R = 2) or i0 (R = 1) += A[i, p..p+3] * B[p..p+3, cols]
   for the w columns of acc, the four p in order. */
static inline void rows_p4(int R, float *acc, int64_t ldacc, const float *a, int64_t lda, const float *b, int64_t ldb,
                          int64_t i0, int64_t p, int64_t w) {
  const float *r0 = b + p * ldb, *r1 = r0 + ldb, *r2 = r1 + ldb, *r3 = r2 + ldb;
  const float *x0 = a + i0 * lda + p, *x1 = x0 + (R > 1 ? lda : 0);
  int64_t j = 0;
#if defined(__AVX__)
  __m256 a0 = _mm256_set1_ps(x0[0]), a1 = _mm256_set1_ps(x0[1]), a2 = _mm256_set1_ps(x0[2]), a3 = _mm256_set1_ps(x0[3]);
  __m256 b0 = _mm256_set1_ps(x1[0]), b1 = _mm256_set1_ps(x1[1]), b2 = _mm256_set1_ps(x1[2]), b3 = _mm256_set1_ps(x1[3]);
  for (; j + 8 <= w; j += 8) {
    __m256 w0 = _mm256_loadu_ps(r0 + j), w1 = _mm256_loadu_ps(r1 + j), w2 = _mm256_loadu_ps(r2 + j),
           w3 = _mm256_loadu_ps(r3 + j);
    __m256 y = _mm256_loadu_ps(acc + i0 * ldacc + j);
    y = MADD(a0, w0, y); y = MADD(a1, w1, y); y = MADD(a2, w2, y); y = MADD(a3, w3, y);
    _mm256_storeu_ps(acc + i0 * ldacc + j, y);
    if (R > 1) {
      __m256 z = _mm256_loadu_ps(acc + (i0 + 1) * ldacc + j);
      z = MADD(b0, w0, z); z = MADD(b1, w1, z); z = MADD(b2, w2, z); z = MADD(b3, w3, z);
      _mm256_storeu_ps(acc + (i0 + 1) * ldacc + j, z);
    }
  }
#endif
  for (; j < w; j++)
    for (int i = 0; i < R; i++) {
      const float *x = i ? x1 : x0;
      float y = acc[(i0 + i) * ldacc + j];
      y = SMADD(x[0], r0[j], y); y = SMADD(x[1], r1[j], y); y = SMADD(x[2], r2[j], y); y = SMADD(x[3], r3[j], y);
      acc[(i0 + i) * ldacc + j] = y;
    }
}

/* C[:, j0:j0+w] for B k x n: y_i += a_ip * B[p, j0:j0+w] for p in order, so
   every result is the plain left-to-right sum (fused multiply-adds where the
   CPU has them, as BLAS uses). */
static void cols_block(float *c, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m, int64_t n,
                       int64_t k, int64_t j0, int64_t w) {
  float acc[ACC];
  memset(acc, 0, (size_t)(m * w) * sizeof(float));
  int64_t kb = k - k % 4;
  for (int64_t p = 0; p < kb; p += 4) {
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) rows_p4(2, acc, w, a, lda, b + j0, ldb, i, p, w);
    if (i < m) rows_p4(1, acc, w, a, lda, b + j0, ldb, i, p, w);
  }
  for (int64_t p = kb; p < k; p++) {
    const float *row = b + p * ldb + j0;
    for (int64_t i = 0; i < m; i++) {
      float x = a[i * lda + p];
      float *y = acc + i * w;
      for (int64_t j = 0; j < w; j++) y[j] = SMADD(x, row[j], y[j]);
    }
  }
  for (int64_t i = 0; i < m; i++) memcpy(c + i * n + j0, acc + i * w, (size_t)w * sizeof(float));
}

/* The lane sums of one dot product folded pairwise: a fixed order. */
static float fold(float *s) {
  for (int h = LANES / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; l++) s[l] += s[l + h];
  return s[0];
}

/* C[i, j] = dot(A row i, B row j) for the R rows i0.. of A (R = 1, 2 or 4,
   a constant once inlined): R rows share each load of B's row. Lane l sums
   the products at p = l mod LANES in order, the tail (k mod LANES) goes to
   the first lanes, then fold (fused multiply-adds where the CPU has them, as
   BLAS uses: the last bits depend on the CPU, as BLAS's do). */
static inline void dots(int R, float *c, const float *a, int64_t lda, const float *w, int64_t n, int64_t k, int64_t i0,
                        int64_t j) {
  float s[4][LANES];
  const float *x = a + i0 * lda;
  int64_t kb = k - k % LANES;
#if defined(__AVX__)
  __m256 lo[4], hi[4];
  for (int i = 0; i < R; i++) lo[i] = hi[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kb; p += LANES) {
    __m256 w0 = _mm256_loadu_ps(w + p), w1 = _mm256_loadu_ps(w + p + 8);
    for (int i = 0; i < R; i++) {
      lo[i] = MADD(_mm256_loadu_ps(x + i * lda + p), w0, lo[i]);
      hi[i] = MADD(_mm256_loadu_ps(x + i * lda + p + 8), w1, hi[i]);
    }
  }
  if (kb == k) {  /* fold in registers, in fold()'s order */
    for (int i = 0; i < R; i++) {
      __m256 v = _mm256_add_ps(lo[i], hi[i]);
      __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
      q = _mm_add_ps(q, _mm_movehl_ps(q, q));
      q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
      c[(i0 + i) * n + j] = _mm_cvtss_f32(q);
    }
    return;
  }
  for (int i = 0; i < R; i++) {
    _mm256_storeu_ps(s[i], lo[i]);
    _mm256_storeu_ps(s[i] + 8, hi[i]);
  }
#else
  memset(s, 0, sizeof s);
  for (int64_t p = 0; p < kb; p += LANES)
    for (int i = 0; i < R; i++)
      for (int l = 0; l < LANES; l++) s[i][l] = SMADD(x[i * lda + p + l], w[p + l], s[i][l]);
#endif
  for (int64_t p = kb; p < k; p++)
    for (int i = 0; i < R; i++) s[i][p - kb] = SMADD(x[i * lda + p], w[p], s[i][p - kb]);
  for (int i = 0; i < R; i++) c[(i0 + i) * n + j] = fold(s[i]);
}

/* rows of B per block: a block (JB rows of k floats) is read from memory
   once and from L2 for the later groups of A's rows, which stay in L1 */
#define JB 32

static void dots_block(float *c, const float *a, int64_t lda, const float *b, int64_t ldb, int64_t m, int64_t n,
                       int64_t k, int64_t j0, int64_t j1) {
  for (int64_t i0 = 0; i0 < m;) {
    int64_t r = m - i0;
    if (r >= 4) {
      for (int64_t j = j0; j < j1; j++) dots(4, c, a, lda, b + j * ldb, n, k, i0, j);
      i0 += 4;
    } else if (r >= 2) {
      for (int64_t j = j0; j < j1; j++) dots(2, c, a, lda, b + j * ldb, n, k, i0, j);
      i0 += 2;
    } else {
      for (int64_t j = j0; j < j1; j++) dots(1, c, a, lda, b + j * ldb, n, k, i0, j);
      i0 += 1;
    }
  }
}

void tide_gemm_few_rows_f32(float *c, const float *a, int64_t lda, const float *b, int b_trans, int64_t ldb,
                            int64_t m, int64_t n, int64_t k) {
  int par = (double)n * (double)k >= PAR_MIN;
  if (!b_trans) {
    int64_t cw = (ACC / m) & ~(int64_t)7;
#ifdef _OPENMP
    if (par) {  /* at least two blocks a thread, for balance */
      int64_t pieces = 2 * (int64_t)omp_get_max_threads(), fair = ((n + pieces - 1) / pieces + 7) & ~(int64_t)7;
      if (fair < cw) cw = fair;
    }
#endif
    int64_t nblk = (n + cw - 1) / cw;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < nblk; t++) {
      int64_t j0 = t * cw, w = n - j0 < cw ? n - j0 : cw;
      cols_block(c, a, lda, b, ldb, m, n, k, j0, w);
    }
    return;
  }
  int64_t nblk = (n + JB - 1) / JB;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < nblk; t++) {
    int64_t j0 = t * JB, j1 = n - j0 < JB ? n : j0 + JB;
    dots_block(c, a, lda, b, ldb, m, n, k, j0, j1);
  }
}
