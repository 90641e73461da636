/* Dropout's op layer: checks, the compute dtype (f64, else f32), results on
   the operand's device, the generator's offset, then the backend's kernel
   (kernels/nn_dropout.h). p = 0 and p = 1 need no draws and no kernel. */
#include "dispatch.h"
#include "nn_dropout.h"
#include "pointwise.h"
#include <string.h>

static int check_p(double p, const char *op) {
  if (!(p >= 0.0 && p <= 1.0)) return tide_fail("%s: probability p must be in [0, 1], got %g", op, p);
  return 0;
}

/* mask may be NULL when not wanted (the draws are the same either way). */
int tide_dropout(const tide_tensor *x, double p, tide_generator *g, tide_tensor **out, tide_tensor **mask) {
  const char *op = "dropout";
  if (!x) return tide_fail("%s: x is NULL (expected a tensor)", op);
  if (!g) return tide_fail("%s: generator is NULL", op);
  if (!out) return tide_fail("%s: out is NULL", op);
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, dropout, op, 1, &x);
  if (!tide_is_float(x->dtype))
    return tide_fail("%s: x must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(x->dtype));
  TIDE_TRY(check_p(p, op));
  int32_t cd = x->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  int64_t n = x->numel;
  tide_tensor *xc = NULL, *y = NULL, *m = NULL;
  int rc = -1;
  if (!(m = tide_new_on(dev, TIDE_U8, x->ndim, x->shape))) goto done;
  if (p == 0.0 || p == 1.0) {
    /* a fresh tensor either way, never x itself, so a later in-place op on out leaves x alone */
    if (tide_fill_(m, p == 0.0)) goto done;
    if (!(y = tide_new_on(dev, x->dtype, x->ndim, x->shape))) goto done;
    if (p == 0.0 ? tide_copy_into(y, x) : tide_fill_(y, 0.0)) goto done;
  } else {
    if (!be->dropout->dropout_forward) {
      tide_not_implemented(op, be);
      goto done;
    }
    if (!(xc = tide_contiguous_as(x, cd)) || !(y = tide_new_on(dev, cd, x->ndim, x->shape))) goto done;
    if (be->dropout->dropout_forward(y->data, (uint8_t *)m->data, xc->data, n, p, g->seed, g->offset, cd)) goto done;
    g->offset += (uint64_t)((n + 3) / 4);
    if (x->dtype != cd) {
      tide_tensor *r = tide_contiguous_as(y, x->dtype);
      tide_tensor_release(y);
      if (!(y = r)) goto done;
    }
  }
  *out = y;
  y = NULL;
  if (mask) { *mask = m; m = NULL; }
  rc = 0;
done:
  tide_tensor_release(xc);
  tide_tensor_release(y);
  tide_tensor_release(m);
  return rc;
}

/* dx has dout's dtype; p = 1 gives zeros. */
int tide_dropout_backward(const tide_tensor *dout, const tide_tensor *mask, double p, tide_tensor **dx) {
  const char *op = "dropout_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!mask) return tide_fail("%s: mask is NULL (expected the tensor saved by dropout)", op);
  if (!dx) return tide_fail("%s: dx is NULL", op);
  const tide_tensor *ts[2] = {dout, mask};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, dropout, op, 2, ts);
  if (!tide_is_float(dout->dtype))
    return tide_fail("%s: dout must be a float tensor (f32, f64, bf16 or f16), got %s", op, tide_dtype_name(dout->dtype));
  if (mask->dtype != TIDE_U8 && mask->dtype != TIDE_BOOL)
    return tide_fail("%s: mask must be a u8 or bool tensor, got %s", op, tide_dtype_name(mask->dtype));
  TIDE_TRY(check_p(p, op));
  if (dout->ndim != mask->ndim || memcmp(dout->shape, mask->shape, sizeof(int64_t) * (size_t)dout->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match mask of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, mask->ndim, mask->shape));
  }
  if (p == 1.0) {
    tide_tensor *z = tide_new_on(dev, dout->dtype, dout->ndim, dout->shape);
    if (!z || tide_fill_(z, 0.0)) {
      tide_tensor_release(z);
      return -1;
    }
    *dx = z;
    return 0;
  }
  if (!be->dropout->dropout_backward) return tide_not_implemented(op, be);
  int32_t cd = dout->dtype == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  /* the kernel writes the compute dtype: bf16/f16 go through an f32 result */
  tide_tensor *dyc = tide_pw_operand(dout, cd), *res = NULL, *work = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if (!(res = tide_new_on(dev, dout->dtype, dout->ndim, dout->shape))) goto done;
  if (res->dtype == cd) {
    work = res;
    tide_tensor_retain(work);
  } else if (!(work = tide_new_on(dev, cd, dout->ndim, dout->shape))) {
    goto done;
  }
  if (be->dropout->dropout_backward(work->data, work->stride, dyc->data, dyc->stride, (const uint8_t *)mask->data,
                                    mask->stride, dout->ndim, dout->shape, p, cd))
    goto done;
  if (work != res && tide_copy_into(res, work)) goto done;
  *dx = res;
  res = NULL;
  rc = 0;
done:
  tide_tensor_release(dyc);
  tide_tensor_release(work);
  tide_tensor_release(res);
  return rc;
}
