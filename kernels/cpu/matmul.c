/* The CPU's matrix products. f32 and f64 go to OpenBLAS: the op layer hands
   over each operand as BLAS describes it (transpose flag and leading
   dimension), so t:t() and transposed views cost no copy. Integer products
   use a plain loop over any strides that accumulates in 64 bits and wraps
   like C integer arithmetic. */
#include "matmul.h"
#include "matmul_few_rows.h"
#include "vmath.h"
#include "dtype.h"
#include "error.h"
#include <cblas.h>
#include <limits.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS runs a GEMM on one thread when m*n*k is at most this (its
   SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD); below it, spreading the
   batch over OpenMP threads is the only parallelism there is, above it
   OpenBLAS threads each product itself and we keep out of its way. */
#define SMALL_GEMM_MNK (65536.0 * 4.0)

/* One operand as BLAS reads it, with its batch strides (elements). */
typedef struct {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
  const int64_t *bstride;
} operand;

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* Element offset of batch entry e (row-major over bshape) for one operand. */
static int64_t batch_offset(int64_t e, int32_t nb, const int64_t *bshape, const int64_t *bstride) {
  int64_t off = 0;
  for (int32_t d = nb - 1; d >= 0 && e > 0; d--) {
    off += (e % bshape[d]) * bstride[d];
    e /= bshape[d];
  }
  return off;
}

/* y (m) = op(A) x for a product whose right side is one column; gemv takes
   the dims of A as stored. */
static void gemv_col(const operand *a, int64_t m, int64_t k, const char *A, const char *x, blasint incx, char *y, int f64) {
  blasint M = (blasint)m, K = (blasint)k, lda = (blasint)a->ld;
  blasint sr = a->trans == CblasNoTrans ? M : K, sc = a->trans == CblasNoTrans ? K : M;
  if (f64) cblas_dgemv(CblasRowMajor, a->trans, sr, sc, 1.0, (const double *)A, lda, (const double *)x, incx, 1.0, (double *)y, 1);
  else cblas_sgemv(CblasRowMajor, a->trans, sr, sc, 1.0f, (const float *)A, lda, (const float *)x, incx, 1.0f, (float *)y, 1);
}

/* y^T (1 x n) = x^T op(B) for a product whose left side is one row, computed
   as y = op(B)^T x. */
static void gemv_row(const operand *b, int64_t n, int64_t k, const char *B, const char *x, blasint incx, char *y, int f64) {
  blasint N = (blasint)n, K = (blasint)k, ldb = (blasint)b->ld;
  CBLAS_TRANSPOSE t = b->trans == CblasNoTrans ? CblasTrans : CblasNoTrans;
  blasint sr = b->trans == CblasNoTrans ? K : N, sc = b->trans == CblasNoTrans ? N : K;
  if (f64) cblas_dgemv(CblasRowMajor, t, sr, sc, 1.0, (const double *)B, ldb, (const double *)x, incx, 1.0, (double *)y, 1);
  else cblas_sgemv(CblasRowMajor, t, sr, sc, 1.0f, (const float *)B, ldb, (const float *)x, incx, 1.0f, (float *)y, 1);
}

/* C (m x n, row-major, ldc = max(1, n)) = op(A) op(B) for one batch entry.
   Products with one side of width 1 go to gemv/dot, and f32 ones with a few
   rows on the left to tide_gemm_few_rows_f32: none packs its operands the
   way gemm does. `gemm_only` keeps to gemm, whose single-thread
   cutoff we know, for calls made from inside an OpenMP region. */
static void product(const operand *a, const operand *b, int64_t m, int64_t n, int64_t k,
                    const char *A, const char *B, char *Cp, int f64, int gemm_only) {
  blasint M = (blasint)m, N = (blasint)n, K = (blasint)k, lda = (blasint)a->ld, ldb = (blasint)b->ld;
  blasint ldc = (blasint)max1(n);
  /* element step along a's single row / b's single column */
  blasint inca = a->trans == CblasNoTrans ? 1 : lda, incb = b->trans == CblasNoTrans ? ldb : 1;
  if (!gemm_only && !f64 && m <= TIDE_FEW_ROWS && n > 1 && a->trans == CblasNoTrans) {
    tide_gemm_few_rows_f32((float *)Cp, (const float *)A, a->ld, (const float *)B, b->trans != CblasNoTrans, b->ld, m, n, k);
  } else if (!gemm_only && m == 1 && n == 1) {
    if (f64) *(double *)Cp = cblas_ddot(K, (const double *)A, inca, (const double *)B, incb);
    else *(float *)Cp = cblas_sdot(K, (const float *)A, inca, (const float *)B, incb);
  } else if (!gemm_only && (m == 1 || n == 1)) {
    /* gemv with beta = 0 may still read y (OpenBLAS versions differ on
       scaling it, and NaN bits in fresh memory would survive 0 * NaN), so
       start from zeros and accumulate with beta = 1 */
    memset(Cp, 0, (size_t)(m * n) * (f64 ? 8 : 4));
    if (n == 1) gemv_col(a, m, k, A, B, incb, Cp, f64);
    else gemv_row(b, n, k, B, A, inca, Cp, f64);
  } else if (f64) {
    cblas_dgemm(CblasRowMajor, a->trans, b->trans, M, N, K, 1.0, (const double *)A, lda, (const double *)B, ldb, 0.0, (double *)Cp, ldc);
  } else {
    cblas_sgemm(CblasRowMajor, a->trans, b->trans, M, N, K, 1.0f, (const float *)A, lda, (const float *)B, ldb, 0.0f, (float *)Cp, ldc);
  }
}

/* True when every batch entry of a continues the previous one's rows at the
   same row stride, so the whole batch is one tall matrix of m * nbatch rows
   (the Linear-layer case [B, T, C] @ [C, D]). */
static int batch_folds_into_rows(const operand *a, int64_t m, int32_t nb, const int64_t *bshape) {
  if (a->trans != CblasNoTrans) return 0;
  int64_t expect = a->ld * m;
  for (int32_t d = nb - 1; d >= 0; d--) {
    if (bshape[d] == 1) continue;
    if (a->bstride[d] != expect) return 0;
    expect *= bshape[d];
  }
  return 1;
}

static int gemm_batched(void *c, const void *a, const void *b, int32_t dtype, int64_t m, int64_t n, int64_t k,
                        int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t nb, const int64_t *bshape,
                        const int64_t *a_bstride, const int64_t *b_bstride) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("matmul: the CPU's GEMM takes f32 or f64, got %s", tide_dtype_name(dtype));
  int f64 = dtype == TIDE_F64;
  int64_t es = f64 ? 8 : 4, nbatch = 1;
  for (int32_t d = 0; d < nb; d++) nbatch *= bshape[d];
  if (k == 0) {  /* an empty sum: all-zero bits are 0 in every float dtype */
    memset(c, 0, (size_t)(nbatch * m * n * es));
    return 0;
  }
  operand oa = {transa == TIDE_GEMM_T ? CblasTrans : CblasNoTrans, lda, a_bstride};
  operand ob = {transb == TIDE_GEMM_T ? CblasTrans : CblasNoTrans, ldb, b_bstride};
  int b_shared = 1;
  for (int32_t d = 0; d < nb; d++)
    if (b_bstride[d] != 0 && bshape[d] != 1) b_shared = 0;
  if (nbatch > 1 && b_shared && batch_folds_into_rows(&oa, m, nb, bshape) && m * nbatch <= INT_MAX) {
    product(&oa, &ob, m * nbatch, n, k, a, b, c, f64, 0);
    return 0;
  }
  if (nbatch == 1) {  /* keep a single product clear of the OpenMP runtime */
    product(&oa, &ob, m, n, k, a, b, c, f64, 0);
    return 0;
  }
  int par = 0;
#ifdef _OPENMP
  par = nbatch > 1 && (double)m * (double)n * (double)k <= SMALL_GEMM_MNK && omp_get_max_threads() > 1;
#endif
  int64_t cstride = m * n * es;
  const char *A0 = a, *B0 = b;
  char *C0 = c;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t e = 0; e < nbatch; e++) {
    const char *A = A0 + batch_offset(e, nb, bshape, a_bstride) * es;
    const char *B = B0 + batch_offset(e, nb, bshape, b_bstride) * es;
    product(&oa, &ob, m, n, k, A, B, C0 + e * cstride, f64, par);
  }
  return 0;
}

/* The epilogue of a Linear/Conv1D layer, the unfused ops' arithmetic exactly: the product (as gemm_batched
   computes it), then c + bias as binary.c's add, then unary.c's gelu (a / (1 + e^(-2u)), u = k (a + c a^3),
   tide_expf for f32), each rounded to T; the build has no FMA contraction, so the bits are the same. */
#define GELU_EPILOGUE(T, SUF, EXP)                                                                          \
  static void epilogue_##SUF(T *c, T *aux, const T *bias, int64_t m, int64_t n, int32_t epi) {             \
    _Pragma("omp parallel for schedule(static) if (m * n >= 65536)")                                       \
    for (int64_t i = 0; i < m; i++) {                                                                       \
      T *row = c + i * n, *arow = aux ? aux + i * n : NULL;                                                 \
      if (epi & TIDE_EPI_BIAS)                                                                              \
        for (int64_t j = 0; j < n; j++) row[j] = row[j] + bias[j];                                          \
      if (epi & TIDE_EPI_GELU)                                                                              \
        for (int64_t j = 0; j < n; j++) {                                                                   \
          T a = row[j];                                                                                     \
          arow[j] = a;                                                                                      \
          T u = (T)0.7978845608028654 * (a + (T)0.044715 * a * a * a);                                      \
          row[j] = a / ((T)1 + EXP((T)-2 * u));                                                             \
        }                                                                                                   \
    }                                                                                                       \
  }
static inline double exp_f64(double v) { return exp(v); }
GELU_EPILOGUE(float, f32, tide_expf)
GELU_EPILOGUE(double, f64, exp_f64)

static int gemm_epilogue(void *c, void *aux, const void *a, const void *b, const void *bias, int32_t dtype, int64_t m,
                         int64_t n, int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t epilogue) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("linear: the CPU's fused GEMM takes f32 or f64, got %s", tide_dtype_name(dtype));
  if (epilogue & ~(TIDE_EPI_BIAS | TIDE_EPI_GELU)) return tide_fail("linear: unknown epilogue %d", epilogue);
  if (((epilogue & TIDE_EPI_BIAS) && !bias) || ((epilogue & TIDE_EPI_GELU) && !aux))
    return tide_fail("linear: epilogue %d without its bias or aux buffer", epilogue);
  /* a single product, as tide_matmul hands 2-d operands to gemm_batched */
  if (gemm_batched(c, a, b, dtype, m, n, k, transa, lda, transb, ldb, 0, NULL, NULL, NULL)) return -1;
  if (epilogue == 0) return 0;
  if (dtype == TIDE_F32) epilogue_f32((float *)c, (float *)aux, (const float *)bias, m, n, epilogue);
  else epilogue_f64((double *)c, (double *)aux, (const double *)bias, m, n, epilogue);
  return 0;
}

/* Products summed in uint64 so overflow wraps instead of being undefined. */
static int gemm_batched_i64(int64_t *c, const int64_t *a, const int64_t *b, int64_t m, int64_t n, int64_t k,
                            int64_t a_sr, int64_t a_sc, int64_t b_sr, int64_t b_sc, int32_t nb, const int64_t *bshape,
                            const int64_t *a_bstride, const int64_t *b_bstride) {
  int64_t nbatch = 1;
  for (int32_t d = 0; d < nb; d++) nbatch *= bshape[d];
  int par = (double)nbatch * (double)m * (double)n * (double)k >= 1e6;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t e = 0; e < nbatch * m; e++) {
    int64_t bi = e / m, i = e % m;
    const int64_t *A = a + batch_offset(bi, nb, bshape, a_bstride) + i * a_sr;
    const int64_t *B = b + batch_offset(bi, nb, bshape, b_bstride);
    uint64_t *C = (uint64_t *)(c + e * n);
    for (int64_t j = 0; j < n; j++) C[j] = 0;
    for (int64_t p = 0; p < k; p++) {
      uint64_t x = (uint64_t)A[p * a_sc];
      const int64_t *Bp = B + p * b_sr;
      for (int64_t j = 0; j < n; j++) C[j] += x * (uint64_t)Bp[j * b_sc];
    }
  }
  return 0;
}

const struct tide_matmul_kernels tide_cpu_matmul = {
  .gemm_batched = gemm_batched,
  .gemm_batched_i64 = gemm_batched_i64,
  .gemm_epilogue = gemm_epilogue,
};
