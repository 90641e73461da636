/* tide_gelu_backward: operand checks, the result dtype and operand
   conversion; the backend's gelu kernel (kernels/nn_gelu.h) computes. */
#include "pointwise.h"
#include "nn_gelu.h"
#include <string.h>

/* dx takes the dtype dout and x promote to; computed in f32 (f64 for f64), bf16 read in place on CUDA. */
int tide_gelu_backward(const tide_tensor *dout, const tide_tensor *x, tide_tensor **dx) {
  const char *op = "gelu_backward";
  if (!dout) return tide_fail("%s: dout is NULL (expected a tensor)", op);
  if (!x) return tide_fail("%s: x is NULL (expected a tensor)", op);
  if (!dx) return tide_fail("%s: dx is NULL", op);
  int32_t dev;
  const tide_tensor *ts[2] = {dout, x};
  const tide_backend *be = tide_pw_backend(op, 2, ts, &dev);
  if (!be) return -1;
  if (!be->gelu || !be->gelu->gelu_backward) return tide_not_implemented(op, be);
  if (!tide_is_float(dout->dtype) || !tide_is_float(x->dtype))
    return tide_fail("%s: dout and x must be float tensors (f32, f64, bf16 or f16), got %s and %s", op,
                     tide_dtype_name(dout->dtype), tide_dtype_name(x->dtype));
  if (dout->ndim != x->ndim || memcmp(dout->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim)) {
    char b1[160], b2[160];
    return tide_fail("%s: dout of shape %s does not match x of shape %s", op, tide_shape_str(b1, sizeof b1, dout->ndim, dout->shape),
                     tide_shape_str(b2, sizeof b2, x->ndim, x->shape));
  }
  int32_t rd = tide_promote_types(dout->dtype, x->dtype), cd = rd == TIDE_F64 ? TIDE_F64 : TIDE_F32;
  /* a backend that computes bf16 natively (CUDA) reads and writes bf16 operands as they are: no f32 copies */
  if (dout->dtype == TIDE_BF16 && x->dtype == TIDE_BF16 && be->gelu->bf16_operands) cd = TIDE_BF16;
  tide_tensor *dyc = tide_pw_operand(dout, cd), *xc = NULL, *res = NULL;
  int rc = -1;
  if (!dyc) return -1;
  if (!(xc = tide_pw_operand(x, cd)) || !(res = tide_new_on(dev, rd, x->ndim, x->shape))) goto done;
  const tide_tensor *ins[2] = {dyc, xc};
  tide_pw_args pa;
  if (tide_pw_prepare(&pa, cd, res, x->ndim, x->shape, 2, ins) == 0)
    rc = tide_pw_finish(&pa, be->gelu->gelu_backward(cd, x->ndim, x->shape, pa.target->data, pa.stride[0],
                                                     pa.in[0]->data, pa.stride[1], pa.in[1]->data, pa.stride[2]));
  if (rc == 0) {
    *dx = res;
    res = NULL;
  }
done:
  tide_tensor_release(dyc);
  tide_tensor_release(xc);
  tide_tensor_release(res);
  return rc;
}
