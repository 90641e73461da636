/* cumsum at the op layer: operand and dim checks, the output on the
   operand's device, a contiguous copy of a strided input so the backend's
   scan (kernels/cumsum.h) sees plain (outer, len, inner) rows. */
#include "dispatch.h"
#include "cumsum.h"

int tide_cumsum(const tide_tensor *a, int32_t dim, tide_tensor **out) {
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, "cumsum");  /* tide_op_device skips absent operands */
  TIDE_OP_BACKEND(be, dev, cumsum, "cumsum", 1, &a);
  if (!out) return tide_fail("cumsum: no output slot given");
  if (!tide_dtype_valid(a->dtype) || a->ndim < 0 || a->ndim > TIDE_MAX_DIMS)
    return tide_fail("cumsum: corrupt tensor handle (dtype %d, %d dims)", a->dtype, a->ndim);
  int32_t nd = a->ndim;
  if (dim < 0 || dim >= (nd ? nd : 1)) {
    char sb[200];
    return tide_fail("cumsum: dimension %d out of range for a %d-d tensor of shape %s", dim + 1, nd,
                     tide_shape_str(sb, sizeof sb, nd, a->shape));
  }
  if (!be->cumsum->cumsum) return tide_not_implemented("cumsum", be);
  int32_t odt = tide_is_float(a->dtype) ? a->dtype : TIDE_I64;
  tide_tensor *o = tide_new_on(dev, odt, nd, a->shape);
  if (!o) return -1;
  if (a->numel == 0) {
    *out = o;
    return 0;
  }
  /* strided inputs are gathered once so the scan sees (outer, R, inner) rows */
  tide_tensor *src = tide_contiguous_as(a, a->dtype);
  if (!src) {
    tide_tensor_release(o);
    return -1;
  }
  int64_t outer = 1, R = nd ? a->shape[dim] : 1, inner = 1;
  for (int32_t i = 0; i < dim; i++) outer *= a->shape[i];
  for (int32_t i = dim + 1; i < nd; i++) inner *= a->shape[i];
  int rc = be->cumsum->cumsum(o->data, src->data, a->dtype, outer, R, inner);
  tide_tensor_release(src);
  if (rc != 0) {
    tide_tensor_release(o);
    return -1;
  }
  *out = o;
  return 0;
}
