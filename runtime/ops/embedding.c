/* Embedding lookup and its gradient. ids are 0-based values of any integer
   dtype and any shape; every id is checked against the number of rows before
   any memory is touched through it. The backward sums in f32 for f32, bf16
   and f16 gradients (converted back at the end) and in f64 for f64. */
#include "dispatch.h"
#include "nn_embedding.h"
#include <string.h>

/* ids as a contiguous i64 tensor after checking dtype and bounds; NULL with an error. */
static tide_tensor *checked_ids(const tide_backend *be, const tide_tensor *ids, int64_t V, const char *op) {
  int32_t dt = ids->dtype;
  if (dt != TIDE_I64 && dt != TIDE_I32 && dt != TIDE_U8 && dt != TIDE_U16) {
    tide_fail("%s: ids must be an integer tensor (i64 or i32), got %s", op, tide_dtype_name(dt));
    return NULL;
  }
  if (!be->embedding->embedding_check_ids) {
    tide_not_implemented(op, be);
    return NULL;
  }
  tide_tensor *c = tide_contiguous_as(ids, TIDE_I64);
  if (!c) return NULL;
  int64_t bad = 0;
  int r = be->embedding->embedding_check_ids((const int64_t *)c->data, c->numel, V, &bad);
  if (r > 0 && V == 0) tide_fail("%s: id %lld is out of range: the embedding has 0 rows", op, (long long)bad);
  else if (r > 0)
    tide_fail("%s: id %lld is out of range for an embedding of %lld rows (ids are 0-based: 0..%lld)", op,
              (long long)bad, (long long)V, (long long)(V - 1));
  if (r) {  /* r < 0: the kernel's own error */
    tide_tensor_release(c);
    return NULL;
  }
  return c;
}

int tide_embedding(const tide_tensor *weight, const tide_tensor *ids, tide_tensor **out) {
  const char *op = "embedding";
  if (!weight) return tide_fail("%s: weight is NULL (expected a tensor)", op);
  if (!out) return tide_fail("%s: out is NULL", op);
  TIDE_TRY(tide_check_handle(weight, op));
  if (!tide_is_float(weight->dtype))
    return tide_fail("%s: weight must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(weight->dtype));
  if (weight->ndim != 2) {
    char b[160];
    return tide_fail("%s: weight must be 2-d [num_embeddings, dim], got shape %s", op, tide_shape_str(b, sizeof b, weight->ndim, weight->shape));
  }
  if (ids && ids->ndim >= TIDE_MAX_DIMS)
    return tide_fail("%s: ids have %d dimensions; at most %d are supported (the output adds one)", op, ids->ndim, TIDE_MAX_DIMS - 1);
  if (!ids) return tide_fail("%s: ids is NULL (expected a tensor)", op);
  TIDE_TRY(tide_check_handle(ids, op));
  const tide_tensor *ts[2] = {weight, ids};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, embedding, op, 2, ts);
  if (!be->embedding->embedding_forward) return tide_not_implemented(op, be);
  int64_t V = weight->shape[0], C = weight->shape[1];
  tide_tensor *ix = checked_ids(be, ids, V, op);
  if (!ix) return -1;
  int64_t shape[TIDE_MAX_DIMS];
  for (int32_t d = 0; d < ids->ndim; d++) shape[d] = ids->shape[d];
  shape[ids->ndim] = C;
  tide_tensor *o = tide_new_on(dev, weight->dtype, ids->ndim + 1, shape);
  int rc = o ? be->embedding->embedding_forward(o->data, weight->data, (const int64_t *)ix->data, ix->numel, C,
                                                weight->stride[0], weight->stride[1], weight->dtype)
             : -1;
  tide_tensor_release(ix);
  if (rc) {
    tide_tensor_release(o);
    return -1;
  }
  *out = o;
  return 0;
}

int tide_embedding_backward(const tide_tensor *dout, const tide_tensor *ids, int64_t num_embeddings, tide_tensor **dweight) {
  const char *op = "embedding_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!ids) return tide_fail("%s: ids is NULL (expected a tensor)", op);
  if (!dweight) return tide_fail("%s: dweight is NULL", op);
  TIDE_TRY(tide_check_handle(dout, op));
  TIDE_TRY(tide_check_handle(ids, op));
  const tide_tensor *ts[2] = {dout, ids};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, embedding, op, 2, ts);
  if (!tide_is_float(dout->dtype))
    return tide_fail("%s: dout must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(dout->dtype));
  if (num_embeddings < 0) return tide_fail("%s: num_embeddings must be >= 0, got %lld", op, (long long)num_embeddings);
  char b1[160], b2[160];
  int ok = dout->ndim == ids->ndim + 1;
  for (int32_t d = 0; ok && d < ids->ndim; d++) ok = dout->shape[d] == ids->shape[d];
  if (!ok)
    return tide_fail("%s: dout of shape %s must be the ids' shape %s plus one last dimension", op,
                     tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape), tide_shape_str(b2, sizeof b2, ids->ndim, ids->shape));
  int64_t C = dout->shape[dout->ndim - 1], V = num_embeddings;
  int64_t wshape[2] = {V, C};
  if (tide_shape_numel(2, wshape, op) < 0) return -1;
  if (!be->embedding->embedding_backward) return tide_not_implemented(op, be);
  tide_tensor *ix = checked_ids(be, ids, V, op);
  if (!ix) return -1;
  int32_t cd = dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  tide_tensor *gc = tide_contiguous_as(dout, cd), *w = NULL;
  int rc = -1;
  if (!gc || !(w = tide_new_on(dev, cd, 2, wshape))) goto done;
  if (be->embedding->embedding_backward(w->data, gc->data, (const int64_t *)ix->data, ix->numel, V, C, cd)) goto done;
  if (dout->dtype != cd) {
    tide_tensor *r = tide_contiguous_as(w, dout->dtype);
    tide_tensor_release(w);
    if (!(w = r)) goto done;
  }
  *dweight = w;
  w = NULL;
  rc = 0;
done:
  tide_tensor_release(ix);
  tide_tensor_release(gc);
  tide_tensor_release(w);
  return rc;
}
