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

/* ---- Linear / Conv1D layers: y = act(x @ op(w) + b) as one op ---- */

/* Checks a layer's operands (x [M, K], w [N, K] or [K, N], b [N]); writes M, K, N. */
static int linear_check(const char *op, const tide_tensor *x, const tide_tensor *w, const tide_tensor *b, int32_t transw,
                        int32_t act, int64_t *M, int64_t *K, int64_t *N) {
  char s1[160], s2[160];
  if (act != TIDE_ACT_NONE && act != TIDE_ACT_GELU)
    return tide_fail("%s: unknown activation %d (expected TIDE_ACT_NONE or TIDE_ACT_GELU)", op, act);
  if (transw != 0 && transw != 1) return tide_fail("%s: transw must be 0 or 1, got %d", op, transw);
  if (!tide_is_float(x->dtype) || !tide_is_float(w->dtype) || (b && !tide_is_float(b->dtype)))
    return tide_fail("%s: input, weight and bias must be float tensors, got %s, %s and %s", op, tide_dtype_name(x->dtype),
                     tide_dtype_name(w->dtype), b ? tide_dtype_name(b->dtype) : "no bias");
  if (x->ndim != 2) return tide_fail("%s: input must be 2-d [M, K], got shape %s", op, tide_shape_str(s1, sizeof s1, x->ndim, x->shape));
  if (w->ndim != 2) return tide_fail("%s: weight must be 2-d, got shape %s", op, tide_shape_str(s1, sizeof s1, w->ndim, w->shape));
  int64_t wk = transw ? w->shape[1] : w->shape[0];
  *M = x->shape[0], *K = x->shape[1], *N = transw ? w->shape[0] : w->shape[1];
  if (wk != *K)
    return tide_fail("%s: input of shape %s does not match weight of shape %s (%lld input features, weight has %lld; layout %s)",
                     op, tide_shape_str(s1, sizeof s1, x->ndim, x->shape), tide_shape_str(s2, sizeof s2, w->ndim, w->shape),
                     (long long)*K, (long long)wk, transw ? "[out, in]" : "[in, out]");
  if (b && (b->ndim != 1 || b->shape[0] != *N))
    return tide_fail("%s: bias of shape %s does not match the %lld output features (expected [%lld])", op,
                     tide_shape_str(s1, sizeof s1, b->ndim, b->shape), (long long)*N, (long long)*N);
  if (*M > INT_MAX || *N > INT_MAX || *K > INT_MAX)
    return tide_fail("%s: input %s and weight %s have a dimension over %d, more than BLAS takes", op,
                     tide_shape_str(s1, sizeof s1, x->ndim, x->shape), tide_shape_str(s2, sizeof s2, w->ndim, w->shape), INT_MAX);
  return 0;
}

/* The dtype a fused kernel computes a layer in, or -1 where it does not fuse: every operand of one dtype the
   backend's GEMM takes, and no empty dimension. */
static int32_t fused_dtype(const tide_backend *be, const tide_tensor *const *ts, int n, int64_t M, int64_t N, int64_t K) {
  if (M == 0 || N == 0 || K == 0) return -1;
  int32_t dt = ts[0]->dtype;
  for (int i = 1; i < n; i++)
    if (ts[i] && ts[i]->dtype != dt) return -1;
  if (dt == TIDE_F32 || dt == TIDE_F64 || (dt == TIDE_BF16 && be->matmul->bf16_operands)) return dt;
  return -1;
}

/* op(w) as tide_matmul's right operand: w itself or its transposed view (*hold owns it). */
static const tide_tensor *weight_op(const tide_tensor *w, int32_t transw, tide_tensor **hold) {
  *hold = NULL;
  if (!transw) return w;
  if (tide_transpose(w, 0, 1, hold)) return NULL;
  return *hold;
}

/* The unfused ops, as the layer was computed before it fused: matmul, add, gelu. */
static int linear_unfused(const tide_tensor *x, const tide_tensor *w, const tide_tensor *b, int32_t transw, int32_t act,
                          tide_tensor **y, tide_tensor **pre) {
  tide_tensor *wt, *mm = NULL, *s = NULL;
  const tide_tensor *wop = weight_op(w, transw, &wt);
  int rc = wop ? tide_matmul(x, wop, &mm) : -1;
  tide_tensor_release(wt);
  if (rc) return -1;
  if (b) {
    rc = tide_binary(TIDE_ADD, mm, b, &s);
    tide_tensor_release(mm);
    if (rc) return -1;
  } else {
    s = mm;
  }
  if (act == TIDE_ACT_NONE) {
    *y = s;
    return 0;
  }
  if (tide_unary(TIDE_GELU, s, y)) {
    tide_tensor_release(s);
    return -1;
  }
  *pre = s;
  return 0;
}

int tide_linear_act(const tide_tensor *x, const tide_tensor *w, const tide_tensor *b, int32_t transw, int32_t act,
                    tide_tensor **y, tide_tensor **pre) {
  const char *op = "linear";
  if (!y) return tide_fail("%s: y is NULL", op);
  *y = NULL;
  if (pre) *pre = NULL;
  TIDE_TRY(tide_check_handle(x, op));
  TIDE_TRY(tide_check_handle(w, op));
  if (b) TIDE_TRY(tide_check_handle(b, op));
  const tide_tensor *ts[3] = {x, w, b};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, matmul, op, b ? 3 : 2, ts);
  int64_t M, K, N;
  TIDE_TRY(linear_check(op, x, w, b, transw, act, &M, &K, &N));
  if (act == TIDE_ACT_GELU && !pre) return tide_fail("%s: pre is NULL, but the gelu activation returns its input there", op);
  int32_t dt = be->matmul->gemm_epilogue ? fused_dtype(be, ts, 3, M, N, K) : -1;
  if (dt < 0) return linear_unfused(x, w, b, transw, act, y, pre);

  operand ox, ow;
  ox.hold = ow.hold = NULL;
  tide_tensor *wt, *bc = NULL, *res = NULL, *aux = NULL;
  const tide_tensor *wop = weight_op(w, transw, &wt);
  int rc = wop ? 0 : -1;
  if (!rc) rc = prepare(&ox, x, 1, dt, 1);
  if (!rc) rc = prepare(&ow, wop, 0, dt, 1);
  if (!rc && b && !tide_is_contiguous(b)) rc = (bc = tide_contiguous_as(b, dt)) ? 0 : -1;
  int64_t shape[2] = {M, N};
  if (!rc) rc = (res = tide_new_on(dev, dt, 2, shape)) ? 0 : -1;
  if (!rc && act == TIDE_ACT_GELU) rc = (aux = tide_new_on(dev, dt, 2, shape)) ? 0 : -1;
  if (!rc) {
    int32_t epi = (b ? TIDE_EPI_BIAS : 0) | (act == TIDE_ACT_GELU ? TIDE_EPI_GELU : 0);
    const tide_tensor *bias = bc ? bc : b;
    rc = be->matmul->gemm_epilogue(res->data, aux ? aux->data : NULL, ox.t->data, ow.t->data, bias ? bias->data : NULL, dt,
                                   M, N, K, ox.trans, ox.ld, ow.trans, ow.ld, epi);
  }
  tide_tensor_release(ox.hold);
  tide_tensor_release(ow.hold);
  tide_tensor_release(wt);
  tide_tensor_release(bc);
  if (rc) {
    tide_tensor_release(res);
    tide_tensor_release(aux);
    return -1;
  }
  *y = res;
  if (pre) *pre = aux;
  return 0;
}

/* dw (and db) through the backend's bias-gradient GEMM: conv1d dw [K, N] = x^T dpre with db the column sums of
   dpre (op(B)'s, over k = M); linear dw [N, K] = dpre^T x with db the row sums of op(A) = dpre^T. */
static int weight_grad_fused(const tide_backend *be, int32_t dev, int32_t dt, const tide_tensor *x, const tide_tensor *dpre,
                             int32_t transw, int64_t M, int64_t K, int64_t N, tide_tensor **dw, tide_tensor **db) {
  operand ox, od;
  ox.hold = od.hold = NULL;
  tide_tensor *rw = NULL, *rb = NULL;
  /* the left operand is a transposed (op(A) = X^T): read X as a left matrix and flip its flag */
  const tide_tensor *left = transw ? dpre : x, *right = transw ? x : dpre;
  operand *ol = transw ? &od : &ox, *or_ = transw ? &ox : &od;
  int rc = prepare(ol, left, 1, dt, 1);
  if (!rc) rc = prepare(or_, right, 0, dt, 1);
  int64_t wshape[2] = {transw ? N : K, transw ? K : N};
  if (!rc) rc = (rw = tide_new_on(dev, dt, 2, wshape)) ? 0 : -1;
  if (!rc && db) rc = (rb = tide_new_on(dev, dt, 1, &N)) ? 0 : -1;
  if (!rc) {
    int32_t bg = !db ? TIDE_BGRAD_NONE : transw ? TIDE_BGRAD_A : TIDE_BGRAD_B;
    rc = be->matmul->gemm_bgrad(rw->data, rb ? rb->data : NULL, ol->t->data, or_->t->data, dt, wshape[0], wshape[1], M,
                                ol->trans == TIDE_GEMM_N ? TIDE_GEMM_T : TIDE_GEMM_N, ol->ld, or_->trans, or_->ld, bg);
  }
  tide_tensor_release(ox.hold);
  tide_tensor_release(od.hold);
  if (rc) {
    tide_tensor_release(rw);
    tide_tensor_release(rb);
    return -1;
  }
  *dw = rw;
  if (db) *db = rb;
  return 0;
}

int tide_linear_act_backward(const tide_tensor *dy, const tide_tensor *x, const tide_tensor *w, const tide_tensor *pre,
                             int32_t transw, int32_t act, tide_tensor **dx, tide_tensor **dw, tide_tensor **db) {
  const char *op = "linear_backward";
  if (dx) *dx = NULL;
  if (dw) *dw = NULL;
  if (db) *db = NULL;
  TIDE_TRY(tide_check_handle(dy, op));
  TIDE_TRY(tide_check_handle(x, op));
  TIDE_TRY(tide_check_handle(w, op));
  if (act == TIDE_ACT_GELU) TIDE_TRY(tide_check_handle(pre, op));
  const tide_tensor *ts[4] = {dy, x, w, act == TIDE_ACT_GELU ? pre : NULL};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, matmul, op, act == TIDE_ACT_GELU ? 4 : 3, ts);
  int64_t M, K, N;
  TIDE_TRY(linear_check(op, x, w, NULL, transw, act, &M, &K, &N));
  char s1[160];
  if (dy->ndim != 2 || dy->shape[0] != M || dy->shape[1] != N)
    return tide_fail("%s: dy of shape %s, expected [%lld, %lld]", op, tide_shape_str(s1, sizeof s1, dy->ndim, dy->shape),
                     (long long)M, (long long)N);
  if (act == TIDE_ACT_GELU && (pre->ndim != 2 || pre->shape[0] != M || pre->shape[1] != N))
    return tide_fail("%s: pre of shape %s, expected [%lld, %lld]", op, tide_shape_str(s1, sizeof s1, pre->ndim, pre->shape),
                     (long long)M, (long long)N);

  tide_tensor *dpre = NULL, *wt = NULL, *wtt = NULL, *xt = NULL, *g = NULL;
  int rc = 0;
  if (act == TIDE_ACT_GELU) rc = tide_gelu_backward(dy, pre, &dpre);
  else tide_tensor_retain(dpre = (tide_tensor *)dy);
  if (rc) return -1;
  if (dx) {  /* dx = dpre op(w)^T, through the views the unfused matmul's backward takes */
    const tide_tensor *wop = weight_op(w, transw, &wt);
    rc = wop ? tide_transpose(wop, 0, 1, &wtt) : -1;
    if (!rc) rc = tide_matmul(dpre, wtt, dx);
  }
  if (!rc && (dw || db)) {
    const tide_tensor *both[2] = {x, dpre};
    int32_t dt = be->matmul->gemm_bgrad && dw ? fused_dtype(be, both, 2, M, N, K) : -1;
    if (dt >= 0) {
      rc = weight_grad_fused(be, dev, dt, x, dpre, transw, M, K, N, dw, db);
    } else {  /* the unfused ops: x^T dpre (transposed back for Linear) and the bias's sum over rows */
      if (dw) {
        rc = tide_transpose(x, 0, 1, &xt);
        if (!rc) rc = tide_matmul(xt, dpre, &g);
        if (!rc && transw) rc = tide_transpose(g, 0, 1, dw);
        else if (!rc) {
          *dw = g;
          g = NULL;
        }
      }
      if (!rc && db) rc = tide_reduce(TIDE_SUM, dpre, 0, 0, db, NULL);
    }
  }
  tide_tensor_release(dpre);
  tide_tensor_release(wt);
  tide_tensor_release(wtt);
  tide_tensor_release(xt);
  tide_tensor_release(g);
  if (rc) {
    if (dx) tide_tensor_release(*dx), *dx = NULL;
    if (dw) tide_tensor_release(*dw), *dw = NULL;
    if (db) tide_tensor_release(*db), *db = NULL;
    return -1;
  }
  return 0;
}
