/* Creation ops: new tensors on a device (-1: CPU, n: cuda:n), allocated by
   that device's allocator and written by its backend's fill kernels. */
#include "dispatch.h"
#include "fill.h"

/* The backend that writes a new tensor on device, with its fill kernels; NULL with an error naming op. */
static const tide_backend *fill_backend(int32_t device, const char *op) {
  const tide_backend *be = tide_backend_for(device, op);
  if (be && !be->fill) {
    tide_not_implemented(op, be);
    return NULL;
  }
  return be;
}

static int check_device(int32_t device, const char *op) {
  if (device < TIDE_CPU) return tide_fail("%s: invalid device code %d (-1 is the CPU, n >= 0 is cuda:n)", op, device);
  return 0;
}

int tide_empty(int32_t dtype, int32_t ndim, const int64_t *shape, int32_t device, tide_tensor **out) {
  TIDE_TRY(check_device(device, "empty"));
  tide_tensor *t = tide_new_on(device, dtype, ndim, shape);
  if (!t) return -1;
  *out = t;
  return 0;
}

int tide_full(int32_t dtype, int32_t ndim, const int64_t *shape, double value, int32_t device, tide_tensor **out) {
  TIDE_TRY(check_device(device, "full"));
  tide_tensor *t = tide_new_on(device, dtype, ndim, shape);
  if (!t) return -1;
  const tide_backend *be = fill_backend(device, "full");
  int rc = !be ? -1 : !be->fill->fill ? tide_not_implemented("full", be)
                                       : be->fill->fill(t->data, t->dtype, t->stride, t->ndim, t->shape, value);
  if (rc) {
    tide_tensor_release(t);
    return -1;
  }
  *out = t;
  return 0;
}

int tide_arange(double start, double step, int64_t n, int32_t dtype, int32_t device, tide_tensor **out) {
  if (!tide_dtype_valid(dtype)) return tide_fail("arange: invalid dtype code %d", dtype);
  if (n < 0) return tide_fail("arange: negative length %lld", (long long)n);
  if (step == 0) return tide_fail("arange: step must be nonzero");
  TIDE_TRY(check_device(device, "arange"));
  tide_tensor *t = tide_new_on(device, dtype, 1, &n);
  if (!t) return -1;
  const tide_backend *be = fill_backend(device, "arange");
  int rc = !be ? -1 : !be->fill->arange ? tide_not_implemented("arange", be) : be->fill->arange(t->data, dtype, n, start, step);
  if (rc) {
    tide_tensor_release(t);
    return -1;
  }
  *out = t;
  return 0;
}
