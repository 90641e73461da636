/* Embedding lookup and its gradient. ids are 0-based values of any integer
   dtype and any shape; every id is checked against the number of rows before
   any memory is touched through it. The backward sums in f32 for f32, bf16
   and f16 gradients (converted back at the end) and in f64 for f64.

   tide_gpt2_embedding is GPT-2's input embedding, wte[ids] + wpe[positions],
   in one pass; its backward is the same row sums (a stable sort on CUDA),
   with the batch summed first by the reduce op where the positions are
   shared by every row, as the unfused add's backward did, so the CPU gives
   the unfused path's bits. */
#include "dispatch.h"
#include "nn_embedding.h"
#include <string.h>

/* ids as a contiguous i64 tensor after checking dtype and bounds; NULL with an error. */
static tide_tensor *checked_rows(const tide_backend *be, const tide_tensor *ids, int64_t V, const char *op,
                                 int positions) {
  int32_t dt = ids->dtype;
  if (dt != TIDE_I64 && dt != TIDE_I32 && dt != TIDE_U8 && dt != TIDE_U16) {
    tide_fail("%s: %s must be an integer tensor (i64 or i32), got %s", op, positions ? "position_ids" : "ids",
              tide_dtype_name(dt));
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
  if (r > 0 && positions)
    tide_fail("%s: position %lld is out of range: wpe has %lld positions (0..%lld)", op, (long long)bad, (long long)V,
              (long long)(V - 1));
  else if (r > 0 && V == 0) tide_fail("%s: id %lld is out of range: the embedding has 0 rows", op, (long long)bad);
  else if (r > 0)
    tide_fail("%s: id %lld is out of range for an embedding of %lld rows (ids are 0-based: 0..%lld)", op,
              (long long)bad, (long long)V, (long long)(V - 1));
  if (r) {  /* r < 0: the kernel's own error */
    tide_tensor_release(c);
    return NULL;
  }
  return c;
}
static tide_tensor *checked_ids(const tide_backend *be, const tide_tensor *ids, int64_t V, const char *op) {
  return checked_rows(be, ids, V, op, 0);
}

/* dweight [V, C] in dout's dtype = the rows of dout [n..., C] summed by the checked i64 ids ix (n of them). */
static int rows_grad(const tide_backend *be, int32_t dev, const tide_tensor *dout, const tide_tensor *ix, int64_t V,
                     int64_t C, tide_tensor **dweight) {
  int64_t wshape[2] = {V, C};
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
  tide_tensor_release(gc);
  tide_tensor_release(w);
  return rc;
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
  int rc = rows_grad(be, dev, dout, ix, V, C, dweight);
  tide_tensor_release(ix);
  return rc;
}

/* GPT-2's input embedding ----------------------------------------------------------------- */

/* Checks the operands shared by the forward and the backward: ids [B, T] of an integer dtype and
   position_ids (NULL, or [B, T], [1, T] or [T]) or past >= 0 with past + T <= P. */
static int check_positions(const tide_tensor *ids, const tide_tensor *pos, int64_t past, int64_t P, const char *op) {
  char b1[160], b2[160];
  if (ids->ndim != 2)
    return tide_fail("%s: ids must be 2-d [batch, seq], got shape %s", op, tide_shape_str(b1, sizeof b1, ids->ndim, ids->shape));
  int64_t B = ids->shape[0], T = ids->shape[1];
  if (!pos) {
    if (past < 0) return tide_fail("%s: past must be >= 0, got %lld", op, (long long)past);
    if (past > P || T > P - past)
      return tide_fail("%s: positions %lld..%lld (past %lld + seq %lld) exceed wpe's %lld positions", op, (long long)past,
                       (long long)(past + T - 1), (long long)past, (long long)T, (long long)P);
    return 0;
  }
  int ok = (pos->ndim == 1 && pos->shape[0] == T) ||
           (pos->ndim == 2 && (pos->shape[0] == B || pos->shape[0] == 1) && pos->shape[1] == T);
  if (!ok)
    return tide_fail("%s: position_ids of shape %s must be [%lld, %lld], [1, %lld] or [%lld] as ids of shape %s", op,
                     tide_shape_str(b1, sizeof b1, pos->ndim, pos->shape), (long long)B, (long long)T, (long long)T,
                     (long long)T, tide_shape_str(b2, sizeof b2, ids->ndim, ids->shape));
  return 0;
}

/* 1 when position_ids hold one row shared by the batch (the unfused add broadcast wpe's rows) */
static int shared_positions(const tide_tensor *pos, int64_t B) {
  return !pos || pos->ndim == 1 || (pos->shape[0] == 1 && B > 1);
}

int tide_gpt2_embedding(const tide_tensor *ids, const tide_tensor *wte, const tide_tensor *wpe,
                        const tide_tensor *position_ids, int64_t past, tide_tensor **out) {
  const char *op = "gpt2_embedding";
  if (!ids) return tide_fail("%s: ids is NULL (expected a tensor)", op);
  if (!wte) return tide_fail("%s: wte is NULL (expected a tensor)", op);
  if (!wpe) return tide_fail("%s: wpe is NULL (expected a tensor)", op);
  if (!out) return tide_fail("%s: out is NULL", op);
  TIDE_TRY(tide_check_handle(ids, op));
  TIDE_TRY(tide_check_handle(wte, op));
  TIDE_TRY(tide_check_handle(wpe, op));
  if (position_ids) TIDE_TRY(tide_check_handle(position_ids, op));
  char b1[160], b2[160];
  if (wte->ndim != 2 || wpe->ndim != 2 || wte->shape[1] != wpe->shape[1])
    return tide_fail("%s: wte [vocab, C] and wpe [positions, C] must be 2-d with one C, got shapes %s and %s", op,
                     tide_shape_str(b1, sizeof b1, wte->ndim, wte->shape), tide_shape_str(b2, sizeof b2, wpe->ndim, wpe->shape));
  if (!tide_is_float(wte->dtype))
    return tide_fail("%s: wte must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(wte->dtype));
  if (wpe->dtype != wte->dtype)
    return tide_fail("%s: wte and wpe must have one dtype, got %s and %s", op, tide_dtype_name(wte->dtype),
                     tide_dtype_name(wpe->dtype));
  int64_t V = wte->shape[0], P = wpe->shape[0], C = wte->shape[1];
  TIDE_TRY(check_positions(ids, position_ids, past, P, op));
  const tide_tensor *ts[4] = {ids, wte, wpe, position_ids};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, embedding, op, 4, ts);
  if (!be->embedding->gpt2_embedding_forward) return tide_not_implemented(op, be);
  int64_t B = ids->shape[0], T = ids->shape[1];
  tide_tensor *ix = checked_ids(be, ids, V, op), *px = NULL, *o = NULL;
  int rc = -1;
  if (!ix) goto done;
  if (position_ids && !(px = checked_rows(be, position_ids, P, op, 1))) goto done;
  int64_t shape[3] = {B, T, C};
  if (!(o = tide_new_on(dev, wte->dtype, 3, shape))) goto done;
  int64_t pbs = position_ids && position_ids->ndim == 2 && position_ids->shape[0] == B && B > 1 ? T : 0;
  if (be->embedding->gpt2_embedding_forward(o->data, wte->data, wpe->data, (const int64_t *)ix->data,
                                            px ? (const int64_t *)px->data : NULL, pbs, B, T, C, past, wte->stride[0],
                                            wte->stride[1], wpe->stride[0], wpe->stride[1], wte->dtype))
    goto done;
  *out = o;
  o = NULL;
  rc = 0;
done:
  tide_tensor_release(ix);
  tide_tensor_release(px);
  tide_tensor_release(o);
  return rc;
}

int tide_gpt2_embedding_backward(const tide_tensor *dout, const tide_tensor *ids, const tide_tensor *position_ids,
                                 int64_t past, int64_t vocab_size, int64_t n_positions, tide_tensor **dwte,
                                 tide_tensor **dwpe) {
  const char *op = "gpt2_embedding_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!ids) return tide_fail("%s: ids is NULL (expected a tensor)", op);
  TIDE_TRY(tide_check_handle(dout, op));
  TIDE_TRY(tide_check_handle(ids, op));
  if (position_ids) TIDE_TRY(tide_check_handle(position_ids, op));
  if (!tide_is_float(dout->dtype))
    return tide_fail("%s: dout must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(dout->dtype));
  if (vocab_size < 0 || n_positions < 0)
    return tide_fail("%s: vocab_size and n_positions must be >= 0, got %lld and %lld", op, (long long)vocab_size,
                     (long long)n_positions);
  TIDE_TRY(check_positions(ids, position_ids, past, n_positions, op));
  char b1[160], b2[160];
  int64_t B = ids->shape[0], T = ids->shape[1];
  if (dout->ndim != 3 || dout->shape[0] != B || dout->shape[1] != T)
    return tide_fail("%s: dout of shape %s must be [%lld, %lld, C] for ids of shape %s", op,
                     tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape), (long long)B, (long long)T,
                     tide_shape_str(b2, sizeof b2, ids->ndim, ids->shape));
  int64_t C = dout->shape[2];
  int64_t s1[2] = {vocab_size, C}, s2[2] = {n_positions, C};
  if (tide_shape_numel(2, s1, op) < 0 || tide_shape_numel(2, s2, op) < 0) return -1;
  const tide_tensor *ts[3] = {dout, ids, position_ids};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, embedding, op, 3, ts);
  if (!be->embedding->embedding_backward) return tide_not_implemented(op, be);
  tide_tensor *ix = NULL, *px = NULL, *s = NULL, *gw = NULL;
  int rc = -1;
  if (dwte) {
    if (!(ix = checked_ids(be, ids, vocab_size, op))) goto done;
    if (rows_grad(be, dev, dout, ix, vocab_size, C, &gw)) goto done;
  }
  if (dwpe) {
    /* the positions: past..past+T-1 (distinct, in range by construction), or the checked position_ids */
    if (!position_ids) {
      if (tide_arange((double)past, 1, T, TIDE_I64, dev, &px)) goto done;
    } else if (!(px = checked_rows(be, position_ids, n_positions, op, 1))) {
      goto done;
    }
    /* positions shared by the batch: the batch summed first by the reduce, as the unfused add's backward did */
    const tide_tensor *g = dout;
    if (shared_positions(position_ids, B)) {
      if (tide_reduce(TIDE_SUM, dout, 0, 0, &s, NULL)) goto done;
      g = s;
    }
    if (rows_grad(be, dev, g, px, n_positions, C, dwpe)) goto done;
  }
  if (dwte) {
    *dwte = gw;
    gw = NULL;
  }
  rc = 0;
done:
  tide_tensor_release(ix);
  tide_tensor_release(px);
  tide_tensor_release(s);
  tide_tensor_release(gw);
  return rc;
}
