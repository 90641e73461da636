/* Matrix products with torch.matmul semantics: 1-D x 1-D is a dot product
   (0-d result), a 1-D operand is promoted to a matrix (a row on the left, a
   column on the right) and the added dimension is removed again, and leading
   dimensions are batch dimensions that broadcast.

   f32 and f64 go to the backend's GEMM. A matrix whose last two dimensions
   have unit stride on either axis is handed over as it is, with a transpose
   flag and its leading dimension, so t:t() and transposed views cost no
   copy; other layouts are copied to contiguous first. bf16/f16 compute
   through f32 (they are storage types on the CPU), except bf16 x bf16 on a
   backend whose GEMM takes bf16 operands (CUDA: cuBLASLt sums in f32);
   integer products go to the backend's i64 product, which accumulates in 64
   bits and wraps like C integer arithmetic. */
#include "dispatch.h"
#include "matmul.h"
#include <limits.h>
#include <string.h>

/* One operand seen as a stack of rows x cols matrices: element (i, j) of the
   matrix at batch position idx lives at data + (sum idx[d] * bstride[d] +
   i * sr + j * sc) elements. trans/ld describe the same matrix to a GEMM. */
typedef struct {
  const tide_tensor *t;     /* the tensor read: the argument or `hold` */
  tide_tensor *hold;        /* a converted or contiguous copy we own, or NULL */
  int64_t rows, cols, sr, sc;
  int64_t bstride[TIDE_MAX_DIMS];
  int32_t trans;
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

/* Finds a GEMM description of the matrix: row-major with unit column stride
   (N), or its transpose stored row-major with unit row stride (T). Strides of
   dims of size 1 never matter, so they are ignored. Returns 0 when neither
   fits and the matrix must be copied. */
static int blas_layout(operand *op) {
  int64_t r = op->rows, c = op->cols, sr = op->sr, sc = op->sc;
  if ((c <= 1 || sc == 1) && (r <= 1 || sr >= max1(c))) {
    op->trans = TIDE_GEMM_N;
    op->ld = r <= 1 ? max1(c) : sr;
  } else if ((r <= 1 || sr == 1) && (c <= 1 || sc >= max1(r))) {
    op->trans = TIDE_GEMM_T;
    op->ld = c <= 1 ? max1(r) : sc;
  } else {
    return 0;
  }
  return op->ld <= INT_MAX;
}

/* Makes `op` readable as `dtype`: a copy when the dtype differs, or (for a
   GEMM) when the layout cannot be described by a transpose flag and a
   leading dimension. */
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

int tide_matmul(const tide_tensor *a, const tide_tensor *b, tide_tensor **out) {
  const tide_tensor *ts[2] = {a, b};
  const tide_backend *be;
  int32_t dev;
  TIDE_TRY(tide_check_handle(a, "matmul"));
  TIDE_TRY(tide_check_handle(b, "matmul"));
  TIDE_OP_BACKEND(be, dev, matmul, "matmul", 2, ts);
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
  for (int32_t d = 0; d < nb; d++) {
    int32_t i = d - (nb - anb), j = d - (nb - bnb);
    int64_t da = i < 0 ? 1 : a->shape[i], db = j < 0 ? 1 : b->shape[j];
    if (da != db && da != 1 && db != 1)
      return tide_fail("matmul: batch dimensions of shapes %s and %s cannot be broadcast together (%lld vs %lld)",
                       tide_shape_str(sa, sizeof sa, a->ndim, a->shape), tide_shape_str(sb, sizeof sb, b->ndim, b->shape),
                       (long long)da, (long long)db);
    bshape[d] = da == 1 ? db : da;
  }
  int32_t ond = nb;
  memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nb);
  if (a->ndim > 1) oshape[ond++] = m;
  if (b->ndim > 1) oshape[ond++] = n;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return tide_fail("matmul: shapes %s and %s have a dimension over %d, more than BLAS takes",
                     tide_shape_str(sa, sizeof sa, a->ndim, a->shape), tide_shape_str(sb, sizeof sb, b->ndim, b->shape), INT_MAX);
  int is_float = tide_is_float(rt);
  if (is_float ? !be->matmul->gemm_batched : !be->matmul->gemm_batched_i64) return tide_not_implemented("matmul", be);

  /* the dtype computed in: f32 for bf16/f16 (storage types on the CPU), except bf16 x bf16 on a backend whose
     GEMM takes bf16 operands (CUDA: f32 sums, one rounding to bf16, as the f32 product stored to bf16) */
  int32_t ct = !is_float ? TIDE_I64 : rt == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  if (rt == TIDE_BF16 && a->dtype == TIDE_BF16 && b->dtype == TIDE_BF16 && be->matmul->bf16_operands) ct = TIDE_BF16;
  tide_tensor *res = tide_new_on(dev, ct, ond, oshape);
  if (!res) return -1;
  if (res->numel > 0) {
    operand oa, ob;
    oa.hold = ob.hold = NULL;
    int rc = 0;
    if (k == 0) {  /* an empty sum reads neither operand: no copies for it */
      read_matrix(&oa, a, 1);
      read_matrix(&ob, b, 0);
      oa.trans = ob.trans = TIDE_GEMM_N;
      oa.ld = ob.ld = 1;
    } else {
      rc = prepare(&oa, a, 1, ct, is_float);
      if (!rc) rc = prepare(&ob, b, 0, ct, is_float);
    }
    if (!rc) {
      read_batch(&oa, nb, bshape);
      read_batch(&ob, nb, bshape);
      if (is_float)
        rc = be->matmul->gemm_batched(res->data, oa.t->data, ob.t->data, ct, m, n, k, oa.trans, oa.ld, ob.trans, ob.ld, nb,
                                      bshape, oa.bstride, ob.bstride);
      else
        rc = be->matmul->gemm_batched_i64((int64_t *)res->data, (const int64_t *)oa.t->data, (const int64_t *)ob.t->data, m,
                                          n, k, oa.sr, oa.sc, ob.sr, ob.sc, nb, bshape, oa.bstride, ob.bstride);
    }
    tide_tensor_release(oa.hold);
    tide_tensor_release(ob.hold);
    if (rc) {
      tide_tensor_release(res);
      return -1;
    }
  }
  if (rt != ct) {  /* bf16/f16/integers narrower than i64: store back */
    tide_tensor *r = tide_new_on(dev, rt, ond, oshape);
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

/* The TF32 switch of the CUDA GEMM (tide_api.h); without CUDA there is nothing to switch. */
int32_t tide_cuda_set_allow_tf32(int32_t on) {
  const tide_backend *be = tide_cuda_backend_get();
  if (!be || !be->matmul || !be->matmul->set_allow_tf32) return 0;
  return be->matmul->set_allow_tf32(on);
}
