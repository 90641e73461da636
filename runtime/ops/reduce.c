/* Reductions (sum, mean, max, min, argmax, argmin, prod) at the op layer:
   operand checks, the output dtype and shape, allocation on the operand's
   device, then the backend's reduce kernel (kernels/reduce.h). */
#include "dispatch.h"
#include "reduce.h"

static const char *const OP_NAMES[TIDE_NUM_REDUCE] = {"sum", "mean", "max", "min", "argmax", "argmin", "prod"};

int tide_reduce(int32_t op, const tide_tensor *a, int32_t dim, int32_t keepdim, tide_tensor **out, tide_tensor **indices) {
  if (op < 0 || op >= TIDE_NUM_REDUCE) return tide_fail("reduce: invalid op code %d", op);
  const char *name = OP_NAMES[op];
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, name);  /* tide_op_device skips absent operands */
  TIDE_OP_BACKEND(be, dev, reduce, name, 1, &a);
  if (!out) return tide_fail("%s: no output slot given", name);
  if (!tide_dtype_valid(a->dtype) || a->ndim < 0 || a->ndim > TIDE_MAX_DIMS)
    return tide_fail("%s: corrupt tensor handle (dtype %d, %d dims)", name, a->dtype, a->ndim);
  if (indices) *indices = NULL;
  char sb[200];
  int32_t nd = a->ndim;
  if (dim >= (nd ? nd : 1))
    return tide_fail("%s: dimension %d out of range for a %d-d tensor of shape %s", name, dim + 1, nd,
                     tide_shape_str(sb, sizeof sb, nd, a->shape));
  int all = dim < 0 || nd == 0;
  int isf = tide_is_float(a->dtype);
  int is_arg = op == TIDE_ARGMAX || op == TIDE_ARGMIN;
  int is_mm = op == TIDE_MAX || op == TIDE_MIN;
  int32_t odt;
  switch (op) {
    case TIDE_SUM: case TIDE_PROD: odt = isf ? a->dtype : TIDE_I64; break;
    case TIDE_MEAN: odt = isf ? a->dtype : TIDE_F32; break;  /* torch refuses integer means; f32 is the convenient answer */
    case TIDE_MAX: case TIDE_MIN: odt = a->dtype; break;
    default: odt = TIDE_I64; break;
  }

  /* output shape */
  int32_t ond = 0;
  int64_t oshape[TIDE_MAX_DIMS];
  if (all) {
    if (keepdim) for (int32_t i = 0; i < nd; i++) oshape[ond++] = 1;
  } else {
    for (int32_t i = 0; i < nd; i++) {
      if (i != dim) oshape[ond++] = a->shape[i];
      else if (keepdim) oshape[ond++] = 1;
    }
  }
  int64_t R = all ? a->numel : a->shape[dim];
  int64_t M = 1;
  if (!all)
    for (int32_t i = 0; i < nd; i++) if (i != dim) M *= a->shape[i];
  if (R == 0 && M > 0 && (is_mm || is_arg)) {
    if (all)
      return tide_fail("%s: cannot reduce over an empty dimension of size 0: the tensor of shape %s has no elements "
                       "(sum and mean of nothing are defined, %s is not)", name, tide_shape_str(sb, sizeof sb, nd, a->shape), name);
    return tide_fail("%s: cannot reduce over an empty dimension of size 0 (dimension %d of a tensor of shape %s)",
                     name, dim + 1, tide_shape_str(sb, sizeof sb, nd, a->shape));
  }
  if (!be->reduce->reduce) return tide_not_implemented(name, be);

  tide_tensor *o = tide_new_on(dev, odt, ond, oshape);
  if (!o) return -1;
  tide_tensor *ix = NULL;
  if (indices && is_mm && dim >= 0) {  /* a 0-d tensor's one element is at index 0 */
    ix = tide_new_on(dev, TIDE_I64, ond, oshape);
    if (!ix) { tide_tensor_release(o); return -1; }
  }
  if (be->reduce->reduce(o->data, ix ? (int64_t *)ix->data : NULL, a->data, op, a->dtype, odt, nd, a->shape, a->stride, dim) != 0) {
    tide_tensor_release(o);
    tide_tensor_release(ix);
    return -1;
  }
  *out = o;
  if (indices && ix) *indices = ix;
  return 0;
}
