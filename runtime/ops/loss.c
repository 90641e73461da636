/* Cross-entropy of logits [..., V] against 0-based class ids [...]: the
   leading dims are flattened into N rows, the class dimension is the last
   one. Targets are checked before anything is computed: a value outside
   0..V-1 that is not ignore_index is an error naming it and V (by the
   forward; the backward again only where the backend asks,
   kernels/nn_loss.h). bf16/f16 logits compute in f32: a backend that reads
   bf16 itself (CUDA) gets them in place, the CPU an f32 copy; lse is saved
   in f32 for the f32 family and f64 for f64; the losses and gradients come
   back in the logits' dtype, written by the kernels. The arithmetic is the
   backend's (kernels/cpu/nn_loss.c and kernels/cuda/nn_loss.cu say how
   they round). */
#include "dispatch.h"
#include "nn_loss.h"
#include <string.h>

static const char *reduction_name(int32_t r) { return r == TIDE_REDUCE_NONE ? "none" : r == TIDE_REDUCE_SUM ? "sum" : "mean"; }

/* Checks logits and targets (and that the n tensors ts, which include them, share a device); sets V,
   N and the backend and returns the targets as contiguous i64 (NULL on error). */
static tide_tensor *check_inputs(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index, int32_t reduction,
                                 int64_t *V, int64_t *N, const char *op, int32_t n, const tide_tensor *const *ts,
                                 const tide_backend **bep, int32_t *dev, int forward) {
  if (!logits) { tide_fail("%s: logits is NULL (expected a tensor)", op); return NULL; }
  if (!targets) { tide_fail("%s: targets is NULL (expected a tensor)", op); return NULL; }
  if (tide_check_handle(logits, op) || tide_check_handle(targets, op)) return NULL;
  if (tide_op_device(op, n, ts, dev)) return NULL;
  const tide_backend *be = *bep = tide_backend_for(*dev, op);
  if (!be) return NULL;
  if (!be->loss || !be->loss->cross_entropy_check_targets) {
    tide_not_implemented(op, be);
    return NULL;
  }
  if (!tide_is_float(logits->dtype)) {
    tide_fail("%s: logits must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(logits->dtype));
    return NULL;
  }
  int32_t td = targets->dtype;
  if (td != TIDE_I64 && td != TIDE_I32 && td != TIDE_U8 && td != TIDE_U16) {
    tide_fail("%s: targets must be an integer tensor of class ids (i64 or i32), got %s", op, tide_dtype_name(td));
    return NULL;
  }
  if (reduction != TIDE_REDUCE_NONE && reduction != TIDE_REDUCE_MEAN && reduction != TIDE_REDUCE_SUM) {
    tide_fail("%s: invalid reduction code %d (expected none 0, mean 1 or sum 2)", op, reduction);
    return NULL;
  }
  char b1[160], b2[160], b3[160];
  if (logits->ndim < 1) {
    tide_fail("%s: logits must have a class dimension ([N, V] or [..., V]), got a 0-d tensor", op);
    return NULL;
  }
  int ok = targets->ndim == logits->ndim - 1;
  for (int32_t d = 0; ok && d < targets->ndim; d++) ok = targets->shape[d] == logits->shape[d];
  if (!ok) {
    tide_fail("%s: targets of shape %s do not match logits of shape %s (expected targets of shape %s: the logits' shape without the last, class, dimension)",
              op, tide_shape_str(b1, sizeof b1, targets->ndim, targets->shape), tide_shape_str(b2, sizeof b2, logits->ndim, logits->shape),
              tide_shape_str(b3, sizeof b3, logits->ndim - 1, logits->shape));
    return NULL;
  }
  *V = logits->shape[logits->ndim - 1];
  *N = targets->numel;
  tide_tensor *t = tide_contiguous_as(targets, TIDE_I64);
  if (!t) return NULL;
  /* the backward skips the check where the kernel is safe with any target (on CUDA it is a host round
     trip; the forward made it and autograd refuses targets changed since) */
  if (!forward && !be->loss->backward_checks_targets) return t;
  int64_t bad = 0;
  int r = be->loss->cross_entropy_check_targets((const int64_t *)t->data, *N, *V, ignore_index, &bad);
  if (r > 0)
    tide_fail("%s: target %lld is out of range for %lld classes (class ids are 0-based: 0..%lld; ignore_index is %lld)", op,
              (long long)bad, (long long)*V, (long long)(*V - 1), (long long)ignore_index);
  if (r) {  /* r < 0: the kernel's own error */
    tide_tensor_release(t);
    return NULL;
  }
  return t;
}

/* The dtype the kernel reads the logits in: bf16 in place where the backend takes it, else the compute
   dtype (f64 for f64, f32 otherwise). */
static int32_t kernel_dtype(const tide_backend *be, int32_t dt) {
  if (dt == TIDE_BF16 && be->loss->bf16_logits) return TIDE_BF16;
  return dt == TIDE_F64 ? TIDE_F64 : TIDE_F32;
}

/* loss is 0-d for mean and sum, shaped like targets for none, in the logits'
   dtype; lse ([N], the compute dtype) may be NULL when not wanted. */
int tide_cross_entropy(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index, int32_t reduction,
                       tide_tensor **loss, tide_tensor **lse) {
  return tide_cross_entropy_as(logits, targets, ignore_index, reduction, -1, loss, lse);
}

int tide_cross_entropy_as(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index,
                          int32_t reduction, int32_t loss_dtype, tide_tensor **loss, tide_tensor **lse) {
  const char *op = "cross_entropy";
  if (!loss) return tide_fail("%s: loss is NULL", op);
  if (loss_dtype != -1 && !tide_is_float(loss_dtype))
    return tide_fail("%s: the loss dtype must be a float dtype, got %s", op, tide_dtype_name(loss_dtype));
  int64_t V = 0, N = 0;
  const tide_tensor *ts[2] = {logits, targets};
  const tide_backend *be = NULL;
  int32_t dev;
  tide_tensor *tg = check_inputs(logits, targets, ignore_index, reduction, &V, &N, op, 2, ts, &be, &dev, 1);
  if (!tg) return -1;
  int32_t cd = logits->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  tide_tensor *xc = NULL, *lt = NULL, *lo = NULL;
  int rc = -1;
  if (!be->loss->cross_entropy_forward) {
    tide_not_implemented(op, be);
    goto done;
  }
  /* no copy of the logits where they are contiguous in the dtype the kernel reads */
  if (!(xc = tide_contiguous_as(logits, kernel_dtype(be, logits->dtype)))) goto done;
  if (!(lt = tide_new_on(dev, cd, 1, &N))) goto done;
  int32_t ld = loss_dtype == -1 ? logits->dtype : loss_dtype;
  if (reduction == TIDE_REDUCE_NONE) lo = tide_new_on(dev, ld, targets->ndim, targets->shape);
  else lo = tide_new_on(dev, ld, 0, NULL);
  if (!lo) goto done;
  if (be->loss->cross_entropy_forward(lo->data, ld, lt->data, xc->data, (const int64_t *)tg->data, N, V,
                                      ignore_index, reduction, xc->dtype))
    goto done;
  if (lse) {
    *lse = lt;
    lt = NULL;
  }
  *loss = lo;
  lo = NULL;
  rc = 0;
done:
  tide_tensor_release(tg);
  tide_tensor_release(xc);
  tide_tensor_release(lt);
  tide_tensor_release(lo);
  return rc;
}

/* dloss has one element for mean and sum, targets' shape for none; dlogits
   has the logits' dtype. */
int tide_cross_entropy_backward(const tide_tensor *dloss, const tide_tensor *logits, const tide_tensor *targets,
                                const tide_tensor *lse, int64_t ignore_index, int32_t reduction, tide_tensor **dlogits) {
  const char *op = "cross_entropy_backward";
  if (!dlogits) return tide_fail("%s: dlogits is NULL", op);
  if (!dloss) return tide_fail("%s: dloss is NULL (expected a tensor)", op);
  if (!lse) return tide_fail("%s: lse is NULL (expected the tensor saved by cross_entropy)", op);
  TIDE_TRY(tide_check_handle(dloss, op));
  TIDE_TRY(tide_check_handle(lse, op));
  if (!tide_is_float(dloss->dtype) || !tide_is_float(lse->dtype))
    return tide_fail("%s: dloss and lse must be float tensors, got %s and %s", op, tide_dtype_name(dloss->dtype), tide_dtype_name(lse->dtype));
  int64_t V = 0, N = 0;
  const tide_tensor *ts[4] = {logits, targets, dloss, lse};
  const tide_backend *be = NULL;
  int32_t dev;
  tide_tensor *tg = check_inputs(logits, targets, ignore_index, reduction, &V, &N, op, 4, ts, &be, &dev, 0);
  if (!tg) return -1;
  char b1[160], b2[160];
  int rc = -1;
  tide_tensor *xc = NULL, *lc = NULL, *dc = NULL, *g = NULL;
  if (lse->numel != N) {
    tide_fail("%s: lse of shape %s must hold one value per row (%lld rows)", op, tide_shape_str(b1, sizeof b1, lse->ndim, lse->shape), (long long)N);
    goto done;
  }
  if (reduction == TIDE_REDUCE_NONE) {
    int ok = dloss->ndim == targets->ndim && !memcmp(dloss->shape, targets->shape, sizeof(int64_t) * (size_t)targets->ndim);
    if (!ok) {
      tide_fail("%s: with reduction none, dloss of shape %s must have the targets' shape %s", op,
                tide_shape_str(b1, sizeof b1, dloss->ndim, dloss->shape), tide_shape_str(b2, sizeof b2, targets->ndim, targets->shape));
      goto done;
    }
  } else if (dloss->numel != 1) {
    tide_fail("%s: with reduction %s, dloss must hold one value, got shape %s", op, reduction_name(reduction),
              tide_shape_str(b1, sizeof b1, dloss->ndim, dloss->shape));
    goto done;
  }
  if (!be->loss->cross_entropy_backward) {
    tide_not_implemented(op, be);
    goto done;
  }
  int32_t cd = logits->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32, kd = kernel_dtype(be, logits->dtype);
  /* the saved lse and a contiguous dloss are used as they are (dloss in any float dtype) */
  if (!(xc = tide_contiguous_as(logits, kd)) || !(lc = tide_contiguous_as(lse, cd)) || !(dc = tide_contiguous_as(dloss, dloss->dtype)))
    goto done;
  if (!(g = tide_new_on(dev, kd, logits->ndim, logits->shape))) goto done;
  if (be->loss->cross_entropy_backward(g->data, xc->data, (const int64_t *)tg->data, lc->data, dc->data, dc->dtype, N, V,
                                       ignore_index, reduction, kd))
    goto done;
  if (logits->dtype != kd) {
    tide_tensor *r = tide_contiguous_as(g, logits->dtype);
    tide_tensor_release(g);
    if (!(g = r)) goto done;
  }
  *dlogits = g;
  g = NULL;
  rc = 0;
done:
  tide_tensor_release(tg);
  tide_tensor_release(xc);
  tide_tensor_release(lc);
  tide_tensor_release(dc);
  tide_tensor_release(g);
  return rc;
}
