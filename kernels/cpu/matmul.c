/* Matrix products with torch.matmul semantics: 1-D x 1-D is a dot product
   (0-d result), a 1-D operand is promoted to a matrix (a row on the left, a
   column on the right) and the added dimension is removed again, and leading
   dimensions are batch dimensions that broadcast.

   f32 and f64 go to OpenBLAS. A matrix whose last two dimensions have unit
   stride on either axis is handed to BLAS as it is, with a transpose flag and
   its leading dimension, so t:t() and transposed views cost no copy; other
   layouts are copied to contiguous first. bf16/f16 compute through f32 (they
   are storage types on the CPU); integer products use a plain loop that
   accumulates in 64 bits and wraps like C integer arithmetic. */
#include "tensor.h"
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

/* One operand seen as a stack of rows x cols matrices: element (i, j) of the
   matrix at batch position idx lives at data + (sum idx[d] * bstride[d] +
   i * sr + j * sc) elements. trans/ld describe the same matrix to BLAS. */
typedef struct {
  const tide_tensor *t;     /* the tensor read: the argument or `hold` */
  tide_tensor *hold;        /* a converted or contiguous copy we own, or NULL */
  int64_t rows, cols, sr, sc;
  int64_t bstride[TIDE_MAX_DIMS];
  CBLAS_TRANSPOSE trans;
  int64_t ld;
} operand;

/* Reads t's last two dims as a rows x cols matrix (a 1-D t becomes a row when
   it is the left operand, a column when it is the right one). */
static void read_matrix(operand *op, const tide_tensor *t, int is_left) {
  op->t = t;
  int32_t nd = t->ndim;
  if (nd == 1) {
    if (is_left) {
      op->rows = 1, op->cols = t->shape[0], op->sr = 0, op->sc = t->stride[0];
    } else {
      op->rows = t->shape[0], op->cols = 1, op->sr = t->stride[0], op->sc = 0;
    }
  } else {
    op->rows = t->shape[nd - 2], op->cols = t->shape[nd - 1];
    op->sr = t->stride[nd - 2], op->sc = t->stride[nd - 1];
  }
}

/* Batch strides of t against the broadcast batch shape (nb dims, right-aligned
   as in numpy): 0 where t lacks the dim or has size 1 there. */
static void read_batch(operand *op, int32_t nb, const int64_t *bshape) {
  const tide_tensor *t = op->t;
  int32_t tnb = t->ndim >= 2 ? t->ndim - 2 : 0;
  for (int32_t d = 0; d < nb; d++) {
    int32_t j = d - (nb - tnb);
    op->bstride[d] = (j < 0 || t->shape[j] == 1 || bshape[d] == 1) ? 0 : t->stride[j];
  }
}

static int64_t max1(int64_t x) { return x > 1 ? x : 1; }

/* Finds a BLAS description of the matrix: row-major with unit column stride
   (NoTrans), or its transpose stored row-major with unit row stride (Trans).
   Strides of dims of size 1 never matter, so they are ignored. Returns 0 when
   neither fits and the matrix must be copied. */
static int blas_layout(operand *op) {
  int64_t r = op->rows, c = op->cols, sr = op->sr, sc = op->sc;
  if ((c <= 1 || sc == 1) && (r <= 1 || sr >= max1(c))) {
    op->trans = CblasNoTrans;
    op->ld = r <= 1 ? max1(c) : sr;
  } else if ((r <= 1 || sr == 1) && (c <= 1 || sc >= max1(r))) {
    op->trans = CblasTrans;
    op->ld = c <= 1 ? max1(r) : sc;
  } else {
    return 0;
  }
  return op->ld <= INT_MAX;
}

/* Makes `op` readable as `dtype`: a copy when the dtype differs, or (for BLAS)
   when the layout cannot be described by a transpose flag and a leading
   dimension. */
static int prepare(operand *op, const tide_tensor *t, int is_left, int32_t dtype, int want_blas) {
  op->hold = NULL;
  read_matrix(op, t, is_left);
  if (t->dtype == dtype && (!want_blas || blas_layout(op))) return 0;
  op->hold = tide_contiguous_as(t, dtype);
  if (!op->hold) return -1;
  read_matrix(op, op->hold, is_left);
  if (want_blas && !blas_layout(op)) return tide_fail("matmul: leading dimension too large for BLAS");
  return 0;
}

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
   Products with one side of width 1 go to gemv/dot, which do not pack their
   operands the way gemm does. `gemm_only` keeps to gemm, whose single-thread
   cutoff we know, for calls made from inside an OpenMP region. */
static void product(const operand *a, const operand *b, int64_t m, int64_t n, int64_t k,
                    const char *A, const char *B, char *Cp, int f64, int gemm_only) {
  blasint M = (blasint)m, N = (blasint)n, K = (blasint)k, lda = (blasint)a->ld, ldb = (blasint)b->ld;
  blasint ldc = (blasint)max1(n);
  /* element step along a's single row / b's single column */
  blasint inca = a->trans == CblasNoTrans ? 1 : lda, incb = b->trans == CblasNoTrans ? ldb : 1;
  if (!gemm_only && m == 1 && n == 1) {
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

static int float_matmul(operand *a, operand *b, int32_t nb, const int64_t *bshape, int64_t nbatch,
                        int64_t m, int64_t n, int64_t k, tide_tensor *res) {
  int f64 = res->dtype == TIDE_F64;
  int64_t es = f64 ? 8 : 4;
  int b_shared = 1;
  for (int32_t d = 0; d < nb; d++)
    if (b->bstride[d] != 0 && bshape[d] != 1) b_shared = 0;
  if (nbatch > 1 && b_shared && batch_folds_into_rows(a, m, nb, bshape) && m * nbatch <= INT_MAX) {
    product(a, b, m * nbatch, n, k, a->t->data, b->t->data, res->data, f64, 0);
    return 0;
  }
  if (nbatch == 1) {  /* keep a single product clear of the OpenMP runtime */
    product(a, b, m, n, k, a->t->data, b->t->data, res->data, f64, 0);
    return 0;
  }
  int par = 0;
#ifdef _OPENMP
  par = nbatch > 1 && (double)m * (double)n * (double)k <= SMALL_GEMM_MNK && omp_get_max_threads() > 1;
#endif
  int64_t cstride = m * n * es;
  const char *A0 = a->t->data, *B0 = b->t->data;
  char *C0 = res->data;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t e = 0; e < nbatch; e++) {
    const char *A = A0 + batch_offset(e, nb, bshape, a->bstride) * es;
    const char *B = B0 + batch_offset(e, nb, bshape, b->bstride) * es;
    product(a, b, m, n, k, A, B, C0 + e * cstride, f64, par);
  }
  return 0;
}

/* Integer (and bool) products: both operands read as i64 (converted when
   narrower, any strides), products summed in uint64 so overflow wraps
   instead of being undefined. */
static void int_matmul(const operand *a, const operand *b, int32_t nb, const int64_t *bshape, int64_t nbatch,
                       int64_t m, int64_t n, int64_t k, tide_tensor *res) {
  const int64_t *A0 = (const int64_t *)a->t->data, *B0 = (const int64_t *)b->t->data;
  int64_t *C0 = (int64_t *)res->data;
  int par = (double)nbatch * (double)m * (double)n * (double)k >= 1e6;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t e = 0; e < nbatch * m; e++) {
    int64_t bi = e / m, i = e % m;
    const int64_t *A = A0 + batch_offset(bi, nb, bshape, a->bstride) + i * a->sr;
    const int64_t *B = B0 + batch_offset(bi, nb, bshape, b->bstride);
    uint64_t *C = (uint64_t *)(C0 + e * n);
    for (int64_t j = 0; j < n; j++) C[j] = 0;
    for (int64_t p = 0; p < k; p++) {
      uint64_t x = (uint64_t)A[p * a->sc];
      const int64_t *Bp = B + p * b->sr;
      for (int64_t j = 0; j < n; j++) C[j] += x * (uint64_t)Bp[j * b->sc];
    }
  }
}

int tide_matmul(const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  TIDE_TRY(tide_check_tensor(a, "matmul"));
  TIDE_TRY(tide_check_tensor(b, "matmul"));
  char sa[160], sb[160];
  if (a->ndim == 0 || b->ndim == 0)
    return tide_fail("matmul: both arguments need at least 1 dimension, got shapes %s and %s",
                     tide_shape_str(sa, sizeof sa, a->ndim, a->shape), tide_shape_str(sb, sizeof sb, b->ndim, b->shape));
  int32_t rt = tide_promote_types(a->dtype, b->dtype);
  if (rt < 0) return tide_fail("matmul: invalid dtypes %d and %d", a->dtype, b->dtype);

  /* k must agree: a's last dim against b's second-to-last (its only one if 1-D) */
  int64_t ka = a->shape[a->ndim - 1], kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
  if (ka != kb)
    return tide_fail("matmul: shapes %s and %s are not aligned (%lld vs %lld)", tide_shape_str(sa, sizeof sa, a->ndim, a->shape),
                     tide_shape_str(sb, sizeof sb, b->ndim, b->shape), (long long)ka, (long long)kb);
  int64_t m = a->ndim == 1 ? 1 : a->shape[a->ndim - 2], n = b->ndim == 1 ? 1 : b->shape[b->ndim - 1], k = ka;

  /* batch dims broadcast, numpy style, right-aligned */
  int32_t anb = a->ndim >= 2 ? a->ndim - 2 : 0, bnb = b->ndim >= 2 ? b->ndim - 2 : 0;
  int32_t nb = anb > bnb ? anb : bnb;
  int64_t bshape[TIDE_MAX_DIMS], oshape[TIDE_MAX_DIMS];
  int64_t nbatch = 1;
  for (int32_t d = 0; d < nb; d++) {
    int32_t i = d - (nb - anb), j = d - (nb - bnb);
    int64_t da = i < 0 ? 1 : a->shape[i], db = j < 0 ? 1 : b->shape[j];
    if (da != db && da != 1 && db != 1)
      return tide_fail("matmul: batch dimensions of shapes %s and %s cannot be broadcast together (%lld vs %lld)",
                       tide_shape_str(sa, sizeof sa, a->ndim, a->shape), tide_shape_str(sb, sizeof sb, b->ndim, b->shape),
                       (long long)da, (long long)db);
    bshape[d] = da == 1 ? db : da;
    nbatch *= bshape[d];
  }
  int32_t ond = nb;
  memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nb);
  if (a->ndim > 1) oshape[ond++] = m;
  if (b->ndim > 1) oshape[ond++] = n;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return tide_fail("matmul: shapes %s and %s have a dimension over %d, more than BLAS takes",
                     tide_shape_str(sa, sizeof sa, a->ndim, a->shape), tide_shape_str(sb, sizeof sb, b->ndim, b->shape), INT_MAX);

  int is_float = tide_is_float(rt);
  int32_t ct = !is_float ? TIDE_I64 : rt == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  tide_tensor *res = tide_new(ct, ond, oshape);
  if (!res) return -1;
  if (res->numel > 0 && k == 0) {
    /* an empty sum: all-zero bits are 0 in every compute dtype */
    memset(res->data, 0, (size_t)res->numel * (size_t)tide_dtype_size(ct));
  } else if (res->numel > 0) {
    operand oa, ob;
    oa.hold = ob.hold = NULL;
    int rc = prepare(&oa, a, 1, ct, is_float);
    if (!rc) rc = prepare(&ob, b, 0, ct, is_float);
    if (!rc) {
      read_batch(&oa, nb, bshape);
      read_batch(&ob, nb, bshape);
      if (is_float) rc = float_matmul(&oa, &ob, nb, bshape, nbatch, m, n, k, res);
      else int_matmul(&oa, &ob, nb, bshape, nbatch, m, n, k, res);
    }
    tide_tensor_release(oa.hold);
    tide_tensor_release(ob.hold);
    if (rc) {
      tide_tensor_release(res);
      return -1;
    }
  }
  if (rt != ct) {  /* bf16/f16/integers narrower than i64: store back */
    tide_tensor *r = tide_new(rt, ond, oshape);
    if (!r || tide_copy_into(r, res)) {
      tide_tensor_release(r);
      tide_tensor_release(res);
      return -1;
    }
    tide_tensor_release(res);
    res = r;
  }
  *out = res;
  return 0;
}
