/* Index-driven ops: index_select, gather, scatter_add_, masked_fill_. The
   checks on shapes, dtypes and aliasing live here; the index values are read
   (and bounds-checked) by the backend's kernels (kernels/index.h), which fail
   on a bad one before anything is written. */
#include "dispatch.h"
#include "index.h"
#include <string.h>

static int check_index(const tide_tensor *idx, const char *what) {
  int32_t dt = idx->dtype;
  if (dt != TIDE_I64 && dt != TIDE_I32 && dt != TIDE_U8 && dt != TIDE_U16)
    return tide_fail("%s: index must be an integer tensor, got %s (use i64 or i32)", what, tide_dtype_name(dt));
  return 0;
}

/* True when some dimension of size > 1 has stride 0: writing through such a
   view would hit one element from several places. */
static int has_broadcast_dim(const tide_tensor *t) {
  for (int32_t i = 0; i < t->ndim; i++)
    if (t->shape[i] > 1 && t->stride[i] == 0) return 1;
  return 0;
}

/* A private contiguous copy of t on its device, for operands that share
   storage with the tensor an in-place op writes. */
static tide_tensor *private_copy(const tide_tensor *t) {
  tide_tensor *c = tide_new_on(t->device, t->dtype, t->ndim, t->shape);
  if (c && tide_copy_into(c, t)) {
    tide_tensor_release(c);
    c = NULL;
  }
  return c;
}

/* Requires equal ndim and index sizes within the limits of `other`, except at dim when skip_dim. */
static int check_index_shape(const char *what, const tide_tensor *index, const tide_tensor *other, const char *other_name,
                             int32_t dim, int skip_dim) {
  char a[160], b[160];
  if (index->ndim != other->ndim)
    return tide_fail("%s: index is %d-d but %s is %d-d; they must have the same number of dimensions (index shape %s, %s shape %s)",
                     what, index->ndim, other_name, other->ndim, tide_shape_str(a, sizeof a, index->ndim, index->shape),
                     other_name, tide_shape_str(b, sizeof b, other->ndim, other->shape));
  for (int32_t d = 0; d < index->ndim; d++) {
    if (skip_dim && d == dim) continue;
    if (index->shape[d] > other->shape[d])
      return tide_fail("%s: index of shape %s is larger than %s of shape %s at dimension %d", what,
                       tide_shape_str(a, sizeof a, index->ndim, index->shape), other_name,
                       tide_shape_str(b, sizeof b, other->ndim, other->shape), d + 1);
  }
  return 0;
}

int tide_index_select(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out) {
  const char *what = "index_select";
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, what);
  if (!index) return tide_check_handle(index, what);
  const tide_tensor *ts[2] = {a, index};
  TIDE_OP_BACKEND(be, dev, index, what, 2, ts);
  TIDE_TRY(check_index(index, what));
  TIDE_TRY(tide_check_dim(a, dim, what));
  if (index->ndim > 1) {
    char b[160];
    return tide_fail("%s: index must be 1-d, got a %d-d tensor of shape %s", what, index->ndim,
                     tide_shape_str(b, sizeof b, index->ndim, index->shape));
  }
  if (!be->index->index_select) return tide_not_implemented(what, be);
  /* a 0-d input reads as one element along dimension 1 */
  int32_t nd = a->ndim ? a->ndim : 1;
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  for (int32_t i = 0; i < nd; i++) {
    shape[i] = a->ndim ? a->shape[i] : 1;
    stride[i] = a->ndim ? a->stride[i] : 0;
  }
  int64_t n = index->numel;
  int64_t oshape[TIDE_MAX_DIMS];
  memcpy(oshape, shape, sizeof oshape);
  oshape[dim] = n;
  tide_tensor *o = tide_new_on(dev, a->dtype, a->ndim ? a->ndim : index->ndim, oshape);
  if (!o) return -1;
  if (be->index->index_select(o->data, a->data, nd, shape, stride, tide_dtype_size(a->dtype), dim, index->data, n,
                              index->ndim ? index->stride[0] : 0, index->dtype)) {
    tide_tensor_release(o);
    return -1;
  }
  *out = o;
  return 0;
}

int tide_gather(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out) {
  const char *what = "gather";
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, what);
  if (!index) return tide_check_handle(index, what);
  const tide_tensor *ts[2] = {a, index};
  TIDE_OP_BACKEND(be, dev, index, what, 2, ts);
  TIDE_TRY(check_index(index, what));
  TIDE_TRY(tide_check_dim(a, dim, what));
  TIDE_TRY(check_index_shape(what, index, a, "input", dim, 1));
  if (!be->index->gather) return tide_not_implemented(what, be);
  tide_tensor *o = tide_new_on(dev, a->dtype, index->ndim, index->shape);
  if (!o) return -1;
  if (be->index->gather(o->data, index->ndim, index->shape, a->data, a->stride, a->ndim ? a->shape[dim] : 1,
                        tide_dtype_size(a->dtype), dim, index->data, index->stride, index->dtype)) {
    tide_tensor_release(o);
    return -1;
  }
  *out = o;
  return 0;
}

int tide_scatter_add_(tide_tensor *a, int32_t dim, const tide_tensor *index, const tide_tensor *src) {
  const char *what = "scatter_add_";
  const tide_backend *be;
  int32_t dev;
  TIDE_TRY(tide_check_handle(a, what));
  TIDE_TRY(tide_check_handle(index, what));
  TIDE_TRY(check_index(index, what));
  if (!src) return tide_check_handle(src, what);
  const tide_tensor *ts[3] = {a, index, src};
  TIDE_OP_BACKEND(be, dev, index, what, 3, ts);
  TIDE_TRY(tide_check_dim(a, dim, what));
  tide_bump_version(a);
  TIDE_TRY(check_index_shape(what, index, a, "the destination", dim, 1));
  TIDE_TRY(check_index_shape(what, index, src, "src", dim, 0));
  if (has_broadcast_dim(a)) {
    char b[160];
    return tide_fail("%s: the destination of shape %s is an expanded view whose elements share memory; clone it first", what,
                     tide_shape_str(b, sizeof b, a->ndim, a->shape));
  }
  if (index->numel == 0) return 0;
  if (!be->index->scatter_add) return tide_not_implemented(what, be);
  /* operands that share memory with the destination are read from copies */
  tide_tensor *src_copy = NULL, *idx_copy = NULL;
  if (src->storage == a->storage && !(src_copy = private_copy(src))) return -1;
  if (index->storage == a->storage && !(idx_copy = private_copy(index))) {
    tide_tensor_release(src_copy);
    return -1;
  }
  if (src_copy) src = src_copy;
  if (idx_copy) index = idx_copy;
  int rc = be->index->scatter_add(a->data, a->dtype, a->stride, a->ndim ? a->shape[dim] : 1, index->ndim, index->shape,
                                  dim, index->data, index->stride, index->dtype, src->data, src->stride, src->dtype);
  tide_tensor_release(src_copy);
  tide_tensor_release(idx_copy);
  return rc;
}

int tide_masked_fill_(tide_tensor *a, const tide_tensor *mask, double value) {
  const char *what = "masked_fill_";
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, what);
  if (!mask) return tide_check_handle(mask, what);
  const tide_tensor *ts[2] = {a, mask};
  TIDE_OP_BACKEND(be, dev, index, what, 2, ts);
  tide_bump_version(a);
  if (mask->dtype != TIDE_BOOL && mask->dtype != TIDE_U8)
    return tide_fail("%s: mask must be a bool tensor, got %s", what, tide_dtype_name(mask->dtype));
  int32_t nd;
  int64_t shape[TIDE_MAX_DIMS];
  char sa[160], sb[160];
  if (tide_broadcast_shapes(a->ndim, a->shape, mask->ndim, mask->shape, &nd, shape, what) ||
      nd != a->ndim || memcmp(shape, a->shape, sizeof(int64_t) * (size_t)nd))
    return tide_fail("%s: mask of shape %s cannot be broadcast to the tensor's shape %s", what,
                     tide_shape_str(sa, sizeof sa, mask->ndim, mask->shape), tide_shape_str(sb, sizeof sb, a->ndim, a->shape));
  if (!be->index->masked_fill) return tide_not_implemented(what, be);
  tide_tensor *mask_copy = NULL;
  if (mask->storage == a->storage) {
    if (!(mask_copy = private_copy(mask))) return -1;
    mask = mask_copy;
  }
  int64_t mst[TIDE_MAX_DIMS];
  tide_broadcast_strides(mask, a->ndim, a->shape, mst);
  int rc = be->index->masked_fill(a->data, a->ndim, a->shape, a->stride, a->dtype, mask->data, mst, value);
  tide_tensor_release(mask_copy);
  return rc;
}
