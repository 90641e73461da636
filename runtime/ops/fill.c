/* The fill family's ops: fill_ into any view (creation with a value is in create.c). */
#include "dispatch.h"
#include "fill.h"

int tide_fill_(tide_tensor *t, double value) {
  const tide_backend *be;
  int32_t dev;
  if (!t) return tide_fail("fill_: expected a tensor, got nil"); /* tide_op_device skips NULL operands */
  TIDE_OP_BACKEND(be, dev, fill, "fill_", 1, (const tide_tensor *const *)&t);
  if (!be->fill->fill) return tide_not_implemented("fill_", be);
  tide_bump_version(t);
  return be->fill->fill(t->data, t->dtype, t->stride, t->ndim, t->shape, value);
}
