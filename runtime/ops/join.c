/* Joining: cat and stack. The output takes the promoted dtype of all inputs
   (as torch.cat does) and lives on their device; each input is copied into
   its slot of the output by tide_copy_into, which handles any strides, casts
   and threads on the device. Joining has no kernels of its own: a backend
   joins once it can copy, so the family's slot in the backend table stays
   empty. Messages name tensors by their 1-based position in the list. */
#include "dispatch.h"
#include <stdio.h>
#include <string.h>

/* Checks ts[0..n) are usable tensors on one device (written to *dev) and returns their promoted dtype, or -1. */
static int32_t check_list(int32_t n, tide_tensor *const *ts, const char *what, int32_t *dev) {
  if (n <= 0 || !ts) return tide_fail("%s: expected a non-empty list of tensors", what);
  int32_t dt = -1;
  for (int32_t i = 0; i < n; i++) {
    char w[64];
    snprintf(w, sizeof w, "%s: tensor %d", what, i + 1);
    TIDE_TRY(tide_check_handle(ts[i], w));
    dt = i ? tide_promote_types(dt, ts[i]->dtype) : ts[i]->dtype;
  }
  TIDE_TRY(tide_op_device(what, n, (const tide_tensor *const *)ts, dev));
  return dt;
}

/* Copies src into the view of o with the given geometry. */
static int copy_slot(tide_tensor *o, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset, const tide_tensor *src) {
  tide_tensor *v = tide_new_view(o, ndim, shape, stride, offset);
  if (!v) return -1;
  int rc = tide_copy_into(v, src);
  tide_tensor_release(v);
  return rc;
}

int tide_cat(int32_t n, tide_tensor *const *ts, int32_t dim, tide_tensor **out) {
  const char *what = "cat";
  int32_t dev;
  int32_t dt = check_list(n, ts, what, &dev);
  if (dt < 0) return -1;
  const tide_tensor *ref = ts[0];
  char sa[160], sb[160];
  if (ref->ndim == 0) return tide_fail("%s: tensor 1 is 0-d; zero-dimensional tensors cannot be concatenated (use stack)", what);
  TIDE_TRY(tide_check_dim(ref, dim, what));
  int64_t shape[TIDE_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof shape);
  shape[dim] = 0;
  for (int32_t i = 0; i < n; i++) {
    const tide_tensor *t = ts[i];
    if (t->ndim != ref->ndim)
      return tide_fail("%s: tensor %d is %d-d (shape %s) but tensor 1 is %d-d (shape %s); all need the same number of dimensions", what,
                       i + 1, t->ndim, tide_shape_str(sa, sizeof sa, t->ndim, t->shape), ref->ndim,
                       tide_shape_str(sb, sizeof sb, ref->ndim, ref->shape));
    int same = 1;
    for (int32_t d = 0; same && d < ref->ndim; d++)
      if (d != dim && t->shape[d] != ref->shape[d]) same = 0;
    if (!same)
      return tide_fail("%s: tensor %d has shape %s but tensor 1 has shape %s; sizes must match except in dimension %d", what, i + 1,
                       tide_shape_str(sa, sizeof sa, t->ndim, t->shape), tide_shape_str(sb, sizeof sb, ref->ndim, ref->shape), dim + 1);
    if (shape[dim] > INT64_MAX - t->shape[dim]) return tide_fail("%s: the result is too large", what);
    shape[dim] += t->shape[dim];
  }
  tide_tensor *o = tide_new_on(dev, dt, ref->ndim, shape);
  if (!o) return -1;
  int64_t at = 0, slot[TIDE_MAX_DIMS];
  memcpy(slot, shape, sizeof slot);
  for (int32_t i = 0; i < n; i++) {
    slot[dim] = ts[i]->shape[dim];
    if (slot[dim] && copy_slot(o, o->ndim, slot, o->stride, at * o->stride[dim], ts[i])) {
      tide_tensor_release(o);
      return -1;
    }
    at += slot[dim];
  }
  *out = o;
  return 0;
}

int tide_stack(int32_t n, tide_tensor *const *ts, int32_t dim, tide_tensor **out) {
  const char *what = "stack";
  int32_t dev;
  int32_t dt = check_list(n, ts, what, &dev);
  if (dt < 0) return -1;
  const tide_tensor *ref = ts[0];
  char sa[160], sb[160];
  if (dim < 0 || dim > ref->ndim)
    return tide_fail("%s: dimension %d out of range for stacking %d-d tensors (expected 1..%d)", what, dim + 1, ref->ndim, ref->ndim + 1);
  if (ref->ndim >= TIDE_MAX_DIMS) return tide_fail("%s: the result would have more than %d dimensions", what, TIDE_MAX_DIMS);
  for (int32_t i = 1; i < n; i++) {
    const tide_tensor *t = ts[i];
    if (t->ndim != ref->ndim || memcmp(t->shape, ref->shape, sizeof(int64_t) * (size_t)ref->ndim))
      return tide_fail("%s: tensor %d has shape %s but tensor 1 has shape %s; stack needs equal shapes", what, i + 1,
                       tide_shape_str(sa, sizeof sa, t->ndim, t->shape), tide_shape_str(sb, sizeof sb, ref->ndim, ref->shape));
  }
  int64_t shape[TIDE_MAX_DIMS];
  int32_t nd = ref->ndim + 1;
  for (int32_t d = 0, s = 0; d < nd; d++) shape[d] = d == dim ? n : ref->shape[s++];
  tide_tensor *o = tide_new_on(dev, dt, nd, shape);
  if (!o) return -1;
  /* slot i is o selected at position i along dim: o's geometry without dim */
  int64_t stride[TIDE_MAX_DIMS];
  for (int32_t d = 0, s = 0; d < nd; d++)
    if (d != dim) stride[s++] = o->stride[d];
  for (int32_t i = 0; i < n; i++) {
    if (o->numel && copy_slot(o, ref->ndim, ref->shape, stride, i * o->stride[dim], ts[i])) {
      tide_tensor_release(o);
      return -1;
    }
  }
  *out = o;
  return 0;
}
