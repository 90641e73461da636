#include "tensor.h"
#include "alloc.h"
#include "device.h"
#include <stdatomic.h>
#include <stdlib.h>

/* The largest element count, and also the largest product of a shape's
   nonzero sizes: contiguous strides and byte sizes (at most 16 bytes an
   element) then fit in int64 even for an empty tensor such as [0, 2^62, 7904],
   whose strides would overflow although it holds nothing. */
#define MAX_SPAN (INT64_MAX / 16)

int64_t tide_shape_numel(int32_t ndim, const int64_t *shape, const char *what) {
  if (ndim < 0 || ndim > TIDE_MAX_DIMS)
    return tide_fail("%s: %d dimensions (tide supports 0 to %d)", what, ndim, TIDE_MAX_DIMS);
  int64_t n = 1, span = 1;
  for (int32_t i = 0; i < ndim; i++) {
    char b[200];
    if (shape[i] < 0)
      return tide_fail("%s: negative size %lld in shape %s", what, (long long)shape[i], tide_shape_str(b, sizeof b, ndim, shape));
    if (shape[i] == 0) n = 0;
    else if (__builtin_mul_overflow(span, shape[i], &span) || span > MAX_SPAN)
      return tide_fail("%s: shape %s is too large (the product of its nonzero sizes passes 2^59, even for an empty tensor)", what,
                       tide_shape_str(b, sizeof b, ndim, shape));
  }
  return n ? span : 0;
}

void tide_contiguous_strides(int32_t ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int32_t i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
}

static tide_tensor *handle(tide_storage *st, int32_t dtype, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  int64_t numel = tide_shape_numel(ndim, shape, "view");
  if (numel < 0) return NULL;
  size_t es = (size_t)tide_dtype_size(dtype);
  if (offset < 0 || (size_t)offset > st->nbytes / es) {
    tide_fail("view: offset %lld is outside a storage of %zu elements", (long long)offset, st->nbytes / es);
    return NULL;
  }
  tide_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    tide_fail("out of memory allocating a tensor handle");
    return NULL;
  }
  t->storage = st;
  t->dtype = dtype;
  t->ndim = ndim;
  t->numel = numel;
  for (int32_t i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->stride[i] = stride[i];
  }
  t->offset = offset;
  t->data = st->data + offset * tide_dtype_size(dtype);
  t->device = st->device;
  t->refcount = 1;
  atomic_fetch_add(&st->refcount, 1);
  return t;
}

tide_tensor *tide_new(int32_t dtype, int32_t ndim, const int64_t *shape) {
  return tide_new_on(TIDE_CPU, dtype, ndim, shape);
}

tide_tensor *tide_new_on(int32_t device, int32_t dtype, int32_t ndim, const int64_t *shape) {
  if (!tide_dtype_valid(dtype)) {
    tide_fail("invalid dtype code %d", dtype);
    return NULL;
  }
  int64_t n = tide_shape_numel(ndim, shape, "tensor");
  if (n < 0) return NULL;
  tide_storage *st = calloc(1, sizeof *st);
  if (!st) {
    tide_fail("out of memory allocating storage");
    return NULL;
  }
  st->nbytes = (size_t)n * (size_t)tide_dtype_size(dtype);
  st->data = tide_alloc_on(device, st->nbytes);
  st->device = device;
  if (!st->data) {
    free(st);
    return NULL;
  }
  int64_t stride[TIDE_MAX_DIMS];
  tide_contiguous_strides(ndim, shape, stride);
  tide_tensor *t = handle(st, dtype, ndim, shape, stride, 0);
  if (!t) {
    tide_free_on(device, st->data, st->nbytes);
    free(st);
    return NULL;
  }
  atomic_fetch_sub(&st->refcount, 1);  /* handle() took the first reference */
  st->refcount = 1;
  return t;
}

tide_tensor *tide_new_like(const tide_tensor *t) { return tide_new_on(t->device, t->dtype, t->ndim, t->shape); }

tide_tensor *tide_new_view(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset) {
  return handle(t->storage, t->dtype, ndim, shape, stride, offset);
}

static void storage_release(tide_storage *st) {
  if (atomic_fetch_sub(&st->refcount, 1) == 1) {
    tide_free_on(st->device, st->data, st->nbytes);
    free(st);
  }
}

void tide_tensor_retain(tide_tensor *t) {
  if (t) __atomic_fetch_add(&t->refcount, 1, __ATOMIC_RELAXED);
}

void tide_tensor_release(tide_tensor *t) {
  if (!t) return;
  if (__atomic_fetch_sub(&t->refcount, 1, __ATOMIC_ACQ_REL) == 1) {
    storage_release(t->storage);
    free(t);
  }
}

int tide_check_handle(const tide_tensor *t, const char *what) {
  if (!t) return tide_fail("%s: expected a tensor, got nil", what);
  if (t->refcount <= 0 || !t->storage) return tide_fail("%s: tensor was already released", what);
  if (t->device != t->storage->device) return tide_fail("%s: corrupt tensor handle (device %d, storage on %d)", what, t->device, t->storage->device);
  return tide_check_geometry(t, what);
}

int tide_check_tensor(const tide_tensor *t, const char *what) {
  TIDE_TRY(tide_check_handle(t, what));
  if (t->device != TIDE_CPU) return tide_fail("%s: tensor is on cuda:%d; this op runs on the CPU", what, t->device);
  return 0;
}

int tide_check_geometry(const tide_tensor *t, const char *what) {
  /* Lua can write the handle's fields (x._c.numel = 1e8); a kernel trusting
     them would read or write outside the storage, so each op re-derives
     numel and the reach of the view from the shape and strides. */
  if (!tide_dtype_valid(t->dtype) || t->ndim < 0 || t->ndim > TIDE_MAX_DIMS)
    return tide_fail("%s: corrupt tensor handle (dtype %d, %d dimensions)", what, t->dtype, t->ndim);
  int64_t es = tide_dtype_size(t->dtype), cap = (int64_t)(t->storage->nbytes / (size_t)es);
  int64_t n = 1, lo = t->offset, hi = t->offset;
  int bad = t->offset < 0 || t->offset > cap || t->data != t->storage->data + t->offset * es;
  for (int32_t i = 0; i < t->ndim && !bad; i++) {
    int64_t reach, sh = t->shape[i], st = t->stride[i];
    bad = sh < 0 || __builtin_mul_overflow(n, sh, &n);
    if (!bad && sh > 0) {
      bad = __builtin_mul_overflow(st, sh - 1, &reach) || __builtin_add_overflow(st < 0 ? lo : hi, reach, st < 0 ? &lo : &hi);
    }
  }
  if (bad || n != t->numel || (n > 0 && (lo < 0 || hi >= cap)))
    return tide_fail("%s: corrupt tensor handle: its shape, strides, offset or numel do not fit its storage of %lld elements", what,
                     (long long)cap);
  return 0;
}

void tide_bump_version(tide_tensor *t) {
  if (t && t->storage) atomic_fetch_add_explicit(&t->storage->version, 1, memory_order_relaxed);
}

int64_t tide_tensor_version(const tide_tensor *t) {
  return t && t->storage ? atomic_load_explicit(&t->storage->version, memory_order_relaxed) : 0;
}

int tide_check_dim(const tide_tensor *t, int32_t dim, const char *what) {
  int32_t n = t->ndim ? t->ndim : 1;
  if (dim < 0 || dim >= n)
    return tide_fail("%s: dimension %d out of range for a %d-d tensor", what, dim + 1, t->ndim);
  return 0;
}

int tide_f64_odd_nans(tide_tensor *t, int32_t fix) {
  TIDE_TRY(tide_check_tensor(t, "f64_odd_nans"));
  if (t->dtype != TIDE_F64 || !tide_is_contiguous(t)) return tide_fail("f64_odd_nans: expected a contiguous f64 tensor");
  uint64_t *p = (uint64_t *)t->data;
  int found = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    /* LuaJIT keeps a number's NaN only when its upper 32 bits are below its tags (0xfff8xxxx and under) */
    if ((p[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull && (p[i] & 0x000fffffffffffffull) &&
        (p[i] >> 32) > 0xfff80000u) {
      found = 1;
      if (!fix) break;
      p[i] = 0x7ff8000000000000ull;
    }
  }
  return found;
}

int tide_is_contiguous(const tide_tensor *t) {
  /* an empty tensor has no element to be out of place (PyTorch's rule); the
     walk below would also want stride 0 left of a zero size, which
     tide_contiguous_strides never makes */
  if (t->numel == 0) return 1;
  int64_t s = 1;
  for (int32_t i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

int tide_broadcast_shapes(int32_t na, const int64_t *a, int32_t nb, const int64_t *b, int32_t *out_ndim, int64_t *out, const char *what) {
  int32_t n = na > nb ? na : nb;
  for (int32_t i = 0; i < n; i++) {
    int64_t da = i < n - na ? 1 : a[i - (n - na)];
    int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
    if (da != db && da != 1 && db != 1) {
      char sa[160], sb[160];
      return tide_fail("%s: shapes %s and %s cannot be broadcast together (size %lld vs %lld at dimension %d)", what,
                       tide_shape_str(sa, sizeof sa, na, a), tide_shape_str(sb, sizeof sb, nb, b), (long long)da, (long long)db, i + 1);
    }
    out[i] = da == 1 ? db : da;
  }
  *out_ndim = n;
  return 0;
}

void tide_broadcast_strides(const tide_tensor *t, int32_t ndim, const int64_t *shape, int64_t *stride) {
  int32_t lead = ndim - t->ndim;
  for (int32_t i = 0; i < ndim; i++) {
    if (i < lead) stride[i] = 0;
    else stride[i] = (t->shape[i - lead] == 1 && shape[i] != 1) ? 0 : t->stride[i - lead];
  }
}

/* views -------------------------------------------------------------------- */

static int emit_view(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset, tide_tensor **out) {
  tide_tensor *v = tide_new_view(t, ndim, shape, stride, offset);
  if (!v) return -1;
  *out = v;
  return 0;
}

/* Resolves one -1 in a requested shape against numel. */
static int infer_shape(const tide_tensor *t, int32_t ndim, const int64_t *req, int64_t *shape, const char *what) {
  if (ndim < 0 || ndim > TIDE_MAX_DIMS) return tide_fail("%s: %d dimensions (tide supports 0 to %d)", what, ndim, TIDE_MAX_DIMS);
  int32_t infer = -1;
  int64_t known = 1;
  for (int32_t i = 0; i < ndim; i++) {
    shape[i] = req[i];
    if (req[i] == -1) {
      if (infer >= 0) return tide_fail("%s: only one dimension can be inferred (-1)", what);
      infer = i;
    } else if (req[i] < 0) {
      return tide_fail("%s: invalid size %lld at dimension %d", what, (long long)req[i], i + 1);
    }
  }
  /* the sizes given must make a valid shape on their own (an inferred size is at most numel) */
  int64_t given[TIDE_MAX_DIMS] = {0};
  for (int32_t i = 0; i < ndim; i++) given[i] = i == infer ? 1 : req[i];
  if (tide_shape_numel(ndim, given, what) < 0) return -1;
  for (int32_t i = 0; i < ndim; i++) if (i != infer) known *= req[i];
  if (infer >= 0) {
    if (known == 0 || t->numel % known) {
      char a[160], b[160];
      return tide_fail("%s: shape %s is invalid for a tensor of shape %s (%lld elements)", what,
                       tide_shape_str(a, sizeof a, ndim, req), tide_shape_str(b, sizeof b, t->ndim, t->shape), (long long)t->numel);
    }
    shape[infer] = t->numel / known;
    known *= shape[infer];
  }
  if (known != t->numel) {
    char a[160], b[160];
    return tide_fail("%s: shape %s is invalid for a tensor of shape %s (%lld elements)", what,
                     tide_shape_str(a, sizeof a, ndim, shape), tide_shape_str(b, sizeof b, t->ndim, t->shape), (long long)t->numel);
  }
  return 0;
}

/* Strides for viewing t with a new shape without copying, or 0 if impossible.
   Old dimensions are grouped into runs that are contiguous among themselves;
   each run must be covered exactly by consecutive new dimensions. */
static int view_strides(const tide_tensor *t, int32_t ndim, const int64_t *shape, int64_t *stride) {
  if (t->numel == 0 || tide_is_contiguous(t)) {
    tide_contiguous_strides(ndim, shape, stride);
    return 1;
  }
  int32_t vi = ndim - 1;
  int64_t base = t->stride[t->ndim - 1], run = 1, covered = 1;
  for (int32_t ti = t->ndim - 1; ti >= 0; ti--) {
    run *= t->shape[ti];
    int run_ends = ti == 0 || (t->shape[ti - 1] != 1 && t->stride[ti - 1] != run * base);
    if (!run_ends) continue;
    while (vi >= 0 && (covered < run || shape[vi] == 1)) {
      stride[vi] = covered * base;
      covered *= shape[vi];
      vi--;
    }
    if (covered != run) return 0;
    if (ti > 0) {
      base = t->stride[ti - 1];
      run = covered = 1;
    }
  }
  return vi == -1;
}

int tide_view_geometry(const tide_tensor *t, int32_t ndim, const int64_t *req, int64_t *shape, int64_t *stride, const char *what) {
  TIDE_TRY(infer_shape(t, ndim, req, shape, what));
  return view_strides(t, ndim, shape, stride);
}

int tide_view(const tide_tensor *t, int32_t ndim, const int64_t *req, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "view"));
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  TIDE_TRY(infer_shape(t, ndim, req, shape, "view"));
  if (!view_strides(t, ndim, shape, stride)) {
    char a[160], b[160];
    return tide_fail("view: cannot view a non-contiguous tensor of shape %s as %s without copying (use reshape or contiguous)",
                     tide_shape_str(a, sizeof a, t->ndim, t->shape), tide_shape_str(b, sizeof b, ndim, shape));
  }
  return emit_view(t, ndim, shape, stride, t->offset, out);
}

int tide_as_strided(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "as_strided"));
  int64_t n = tide_shape_numel(ndim, shape, "as_strided");
  if (n < 0) return -1;
  int64_t cap = (int64_t)(t->storage->nbytes / (size_t)tide_dtype_size(t->dtype));
  if (offset < 0 || offset > cap)
    return tide_fail("as_strided: offset %lld is outside a storage of %lld elements", (long long)offset, (long long)cap);
  int64_t lo = offset, hi = offset;
  for (int32_t i = 0; i < ndim && n > 0; i++) {
    int64_t reach;
    if (__builtin_mul_overflow(stride[i], shape[i] - 1, &reach) ||
        __builtin_add_overflow(stride[i] < 0 ? lo : hi, reach, stride[i] < 0 ? &lo : &hi))
      return tide_fail("as_strided: stride %lld at dimension %d reaches past the int64 range", (long long)stride[i], i + 1);
  }
  if (n > 0 && (lo < 0 || hi >= cap))
    return tide_fail("as_strided: the view reaches elements %lld..%lld outside a storage of %lld elements", (long long)lo, (long long)hi, (long long)cap);
  return emit_view(t, ndim, shape, stride, offset, out);
}

int tide_permute(const tide_tensor *t, const int32_t *dims, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "permute"));
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int seen[TIDE_MAX_DIMS] = {0};
  for (int32_t i = 0; i < t->ndim; i++) {
    int32_t d = dims[i];
    if (d < 0 || d >= t->ndim) return tide_fail("permute: dimension %d out of range for a %d-d tensor", d + 1, t->ndim);
    if (seen[d]++) return tide_fail("permute: dimension %d appears twice", d + 1);
    shape[i] = t->shape[d];
    stride[i] = t->stride[d];
  }
  return emit_view(t, t->ndim, shape, stride, t->offset, out);
}

int tide_transpose(const tide_tensor *t, int32_t d0, int32_t d1, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "transpose"));
  if (t->ndim == 0 && d0 == 0 && d1 == 0) return emit_view(t, 0, t->shape, t->stride, t->offset, out);
  TIDE_TRY(tide_check_dim(t, d0, "transpose"));
  TIDE_TRY(tide_check_dim(t, d1, "transpose"));
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  for (int32_t i = 0; i < t->ndim; i++) { shape[i] = t->shape[i]; stride[i] = t->stride[i]; }
  shape[d0] = t->shape[d1]; stride[d0] = t->stride[d1];
  shape[d1] = t->shape[d0]; stride[d1] = t->stride[d0];
  return emit_view(t, t->ndim, shape, stride, t->offset, out);
}

int tide_narrow(const tide_tensor *t, int32_t dim, int64_t start, int64_t length, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "narrow"));
  if (t->ndim == 0) return tide_fail("narrow: cannot narrow a 0-d tensor");
  TIDE_TRY(tide_check_dim(t, dim, "narrow"));
  if (start < 0 || length < 0 || start > t->shape[dim] || length > t->shape[dim] - start) {
    int64_t first, last;  /* 1-based, as Lua shows them; start + length may itself overflow */
    if (__builtin_add_overflow(start, 1, &first) || __builtin_add_overflow(start, length, &last))
      return tide_fail("narrow: %lld elements from 0-based position %lld are outside dimension %d of size %lld", (long long)length,
                       (long long)start, dim + 1, (long long)t->shape[dim]);
    return tide_fail("narrow: elements %lld..%lld are outside dimension %d of size %lld", (long long)first, (long long)last,
                     dim + 1, (long long)t->shape[dim]);
  }
  int64_t shape[TIDE_MAX_DIMS], offset;
  for (int32_t i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
  shape[dim] = length;
  if (__builtin_mul_overflow(start, t->stride[dim], &offset) || __builtin_add_overflow(offset, t->offset, &offset))
    return tide_fail("narrow: the offset of position %lld overflows", (long long)start + 1);
  return emit_view(t, t->ndim, shape, t->stride, offset, out);
}

int tide_select(const tide_tensor *t, int32_t dim, int64_t index, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "select"));
  if (t->ndim == 0) return tide_fail("select: cannot index a 0-d tensor");
  TIDE_TRY(tide_check_dim(t, dim, "select"));
  if (index < 0 || index >= t->shape[dim])
    return index < INT64_MAX  /* shown 1-based, as Lua counts, unless that overflows */
               ? tide_fail("select: index %lld out of range for dimension %d of size %lld", (long long)index + 1, dim + 1,
                           (long long)t->shape[dim])
               : tide_fail("select: index %lld (0-based) out of range for dimension %d of size %lld", (long long)index, dim + 1,
                           (long long)t->shape[dim]);
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS], offset;
  int32_t n = 0;
  for (int32_t i = 0; i < t->ndim; i++) {
    if (i == dim) continue;
    shape[n] = t->shape[i];
    stride[n++] = t->stride[i];
  }
  if (__builtin_mul_overflow(index, t->stride[dim], &offset) || __builtin_add_overflow(offset, t->offset, &offset))
    return tide_fail("select: the offset of index %lld overflows", (long long)index + 1);
  return emit_view(t, n, shape, stride, offset, out);
}

int tide_expand(const tide_tensor *t, int32_t ndim, const int64_t *req, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "expand"));
  if (ndim < t->ndim || ndim > TIDE_MAX_DIMS) {
    char a[160], b[160];
    return tide_fail("expand: cannot expand shape %s to %s", tide_shape_str(a, sizeof a, t->ndim, t->shape), tide_shape_str(b, sizeof b, ndim, req));
  }
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int32_t lead = ndim - t->ndim;
  for (int32_t i = 0; i < ndim; i++) {
    int64_t have = i < lead ? 1 : t->shape[i - lead];
    int64_t want = req[i] == -1 && i >= lead ? have : req[i];
    if (want < 0 || (have != want && have != 1)) {
      char a[160], b[160];
      return tide_fail("expand: cannot expand shape %s to %s (dimension %d: %lld to %lld)", tide_shape_str(a, sizeof a, t->ndim, t->shape),
                       tide_shape_str(b, sizeof b, ndim, req), i + 1, (long long)have, (long long)want);
    }
    shape[i] = want;
    stride[i] = (i < lead || (have == 1 && want != 1)) ? 0 : t->stride[i - lead];
  }
  return emit_view(t, ndim, shape, stride, t->offset, out);
}

int tide_squeeze(const tide_tensor *t, int32_t dim, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "squeeze"));
  if (dim >= 0 && t->ndim > 0) TIDE_TRY(tide_check_dim(t, dim, "squeeze"));
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int32_t n = 0;
  for (int32_t i = 0; i < t->ndim; i++) {
    int drop = t->shape[i] == 1 && (dim < 0 || dim == i);
    if (drop) continue;
    shape[n] = t->shape[i];
    stride[n++] = t->stride[i];
  }
  return emit_view(t, n, shape, stride, t->offset, out);
}

int tide_unsqueeze(const tide_tensor *t, int32_t dim, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "unsqueeze"));
  if (t->ndim >= TIDE_MAX_DIMS) return tide_fail("unsqueeze: a tensor has at most %d dimensions", TIDE_MAX_DIMS);
  if (dim < 0 || dim > t->ndim) return tide_fail("unsqueeze: dimension %d out of range for a %d-d tensor", dim + 1, t->ndim);
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int32_t n = 0;
  for (int32_t i = 0; i <= t->ndim; i++) {
    if (i == dim) {
      shape[n] = 1;
      /* any stride is valid for a size-1 dimension; fall back to 1 rather than overflow */
      int64_t s = 1;
      if (i < t->ndim && __builtin_mul_overflow(t->stride[i], t->shape[i], &s)) s = 1;
      stride[n++] = s;
    }
    if (i < t->ndim) {
      shape[n] = t->shape[i];
      stride[n++] = t->stride[i];
    }
  }
  return emit_view(t, n, shape, stride, t->offset, out);
}
