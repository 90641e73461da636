/* The copy family's ops: copy_, cast, contiguous, reshape's copying path,
   transfers between devices, and the op layer's own copy helpers
   (tide_copy_into, tide_contiguous_as) that other ops convert operands with. */
#include "dispatch.h"
#include "copy.h"
#include "cuda_rt.h"
#include "device.h"
#include <string.h>

/* tide_op_device skips NULL operands (optional ones); these ops have none, so NULL is tide_check_handle's error. */
static int required(const tide_tensor *t, const char *op) {
  return t ? 0 : tide_fail("%s: expected a tensor, got nil", op);
}

/* Same elements in the same order: a copy between them reads each before writing it. */
static int same_view(const tide_tensor *a, const tide_tensor *b) {
  return a->data == b->data && a->ndim == b->ndim && !memcmp(a->stride, b->stride, sizeof(int64_t) * (size_t)a->ndim) &&
         !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* dst = src (broadcast to dst's shape, converted) on backend be; both operands were
   checked and found on be's device by the calling op. */
static int copy_on(const tide_backend *be, tide_tensor *dst, const tide_tensor *src, const char *op) {
  if (!be->copy || !be->copy->copy) return tide_not_implemented(op, be);
  tide_tensor *tmp = NULL;
  /* a source that shares storage with the destination is read from a copy
     first, so overlapping views copy as if all reads happened before writes */
  if (dst->storage == src->storage && !same_view(dst, src)) {
    tmp = tide_new_on(src->device, src->dtype, src->ndim, src->shape);
    if (!tmp) return -1;
    int rc = copy_on(be, tmp, src, op);
    if (rc) {
      tide_tensor_release(tmp);
      return rc;
    }
    src = tmp;
  }
  int64_t sst[TIDE_MAX_DIMS];
  tide_broadcast_strides(src, dst->ndim, dst->shape, sst);
  int rc = be->copy->copy(dst->data, dst->dtype, dst->stride, src->data, src->dtype, sst, dst->ndim, dst->shape);
  tide_tensor_release(tmp);
  return rc;
}

/* Runs inside other ops, whose operands are already checked: only the devices are compared
   here, as a second full check would be overhead on every converted operand. */
int tide_copy_into(tide_tensor *dst, const tide_tensor *src) {
  if (dst->device != src->device) {
    char a[32], b[32];
    tide_device_name(dst->device, a, sizeof a);
    tide_device_name(src->device, b, sizeof b);
    return tide_fail("copy: expected all tensors on one device, got operand 1 on %s and operand 2 on %s", a, b);
  }
  const tide_backend *be = tide_backend_for(dst->device, "copy");
  return be ? copy_on(be, dst, src, "copy") : -1;
}

tide_tensor *tide_contiguous_as(const tide_tensor *src, int32_t dtype) {
  if (src->dtype == dtype && tide_is_contiguous(src)) {
    tide_tensor_retain((tide_tensor *)src);
    return (tide_tensor *)src;
  }
  tide_tensor *c = tide_new_on(src->device, dtype, src->ndim, src->shape);
  if (!c) return NULL;
  if (tide_copy_into(c, src)) {
    tide_tensor_release(c);
    return NULL;
  }
  return c;
}

int tide_copy_(tide_tensor *dst, const tide_tensor *src) {
  const tide_tensor *ts[2] = {dst, src};
  const tide_backend *be;
  int32_t dev;
  TIDE_TRY(required(dst, "copy_"));
  TIDE_TRY(required(src, "copy_"));
  TIDE_OP_BACKEND(be, dev, copy, "copy_", 2, ts);
  tide_bump_version(dst);
  int32_t nd;
  int64_t shape[TIDE_MAX_DIMS];
  int rc = tide_broadcast_shapes(dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape, "copy_");
  if (rc || nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd)) {
    char a[160], b[160];
    return tide_fail("copy_: source of shape %s cannot be broadcast to destination of shape %s",
                     tide_shape_str(a, sizeof a, src->ndim, src->shape), tide_shape_str(b, sizeof b, dst->ndim, dst->shape));
  }
  return copy_on(be, dst, src, "copy_");
}

int tide_cast(const tide_tensor *t, int32_t dtype, tide_tensor **out) {
  const tide_backend *be;
  int32_t dev;
  TIDE_TRY(required(t, "cast"));
  TIDE_OP_BACKEND(be, dev, copy, "cast", 1, &t);
  if (!tide_dtype_valid(dtype)) return tide_fail("cast: invalid dtype code %d", dtype);
  tide_tensor *c = tide_new_on(dev, dtype, t->ndim, t->shape);
  if (!c) return -1;
  if (copy_on(be, c, t, "cast")) {
    tide_tensor_release(c);
    return -1;
  }
  *out = c;
  return 0;
}

int tide_contiguous(const tide_tensor *t, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "contiguous"));
  tide_tensor *c = tide_contiguous_as(t, t->dtype);
  if (!c) return -1;
  *out = c;
  return 0;
}

int tide_reshape(const tide_tensor *t, int32_t ndim, const int64_t *req, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "reshape"));
  int64_t shape[TIDE_MAX_DIMS], stride[TIDE_MAX_DIMS];
  int viewable = tide_view_geometry(t, ndim, req, shape, stride, "reshape");
  if (viewable < 0) return -1;
  const tide_tensor *base = t;
  tide_tensor *c = NULL;
  if (!viewable) {
    if (!(c = tide_contiguous_as(t, t->dtype))) return -1;
    base = c;
    tide_contiguous_strides(ndim, shape, stride);
  }
  tide_tensor *v = tide_new_view(base, ndim, shape, stride, base->offset);
  tide_tensor_release(c);
  if (!v) return -1;
  *out = v;
  return 0;
}

int tide_to_device(const tide_tensor *t, int32_t device, tide_tensor **out) {
  TIDE_TRY(tide_check_handle(t, "to"));
  if (device < TIDE_CPU) return tide_fail("to: invalid device code %d", device);
  if (t->device == device) {
    tide_tensor_retain((tide_tensor *)t);
    *out = (tide_tensor *)t;
    return 0;
  }
  if (t->device != TIDE_CPU && device != TIDE_CPU) {
    /* between two CUDA devices: the runtime's device-to-device copy (peer to
       peer, or staged by the driver), from a contiguous copy on the source */
    TIDE_TRY(tide_device_check(device, "to"));
    tide_tensor *c = tide_contiguous_as(t, t->dtype);
    if (!c) return -1;
    tide_tensor *r = tide_new_on(device, t->dtype, t->ndim, t->shape);
    int rc = !r ? -1
           : tide_cuda_runtime_get()->copy(r->data, c->data, (size_t)c->numel * (size_t)tide_dtype_size(c->dtype), 2);
    tide_tensor_release(c);
    if (rc) {
      tide_tensor_release(r);
      return -1;
    }
    *out = r;
    return 0;
  }
  /* the side that is not the host moves the bytes; a strided source is made contiguous on its own device first */
  int32_t other = device == TIDE_CPU ? t->device : device;
  tide_tensor *r = tide_new_on(device, t->dtype, t->ndim, t->shape);
  if (!r) return -1;
  const tide_backend *be = tide_backend_for(other, "to");
  tide_tensor *c = NULL;
  int rc = -1;
  if (!be) goto done;
  if (!be->copy || !be->copy->transfer) {
    rc = tide_not_implemented("to", be);
    goto done;
  }
  if (!(c = tide_contiguous_as(t, t->dtype))) goto done;
  rc = be->copy->transfer(r->data, c->data, (size_t)c->numel * (size_t)tide_dtype_size(c->dtype), device != TIDE_CPU);
done:
  tide_tensor_release(c);
  if (rc) {
    tide_tensor_release(r);
    return -1;
  }
  *out = r;
  return 0;
}
