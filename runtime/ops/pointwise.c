#include "pointwise.h"
#include <string.h>

int32_t tide_pw_result_type(const tide_tensor *a, const tide_tensor *b) {
  int za = a->ndim == 0, zb = b->ndim == 0;
  if (za != zb) {
    const tide_tensor *dim = za ? b : a, *zero = za ? a : b;
    return pw_category(zero->dtype) > pw_category(dim->dtype) ? zero->dtype : dim->dtype;
  }
  return tide_promote_types(a->dtype, b->dtype);
}

tide_tensor *tide_pw_operand(const tide_tensor *t, int32_t cd) {
  if (t->dtype == cd || (t->dtype == TIDE_BOOL && cd == TIDE_U8)) {
    tide_tensor_retain((tide_tensor *)t);
    return (tide_tensor *)t;
  }
  return tide_contiguous_as(t, cd);
}

int tide_pw_check_writable(const tide_tensor *t, const char *what) {
  for (int32_t i = 0; i < t->ndim; i++)
    if (t->shape[i] > 1 && t->stride[i] == 0)
      return tide_fail("%s: the in-place target has elements that share memory (a view made by expand); "
                       "write into a clone instead", what);
  return 0;
}

/* Same elements in the same order: reading and writing them in one pass is safe. */
static int same_view(const tide_tensor *a, const tide_tensor *b) {
  return a == b || (a->data == b->data && a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
         !memcmp(a->stride, b->stride, sizeof(int64_t) * (size_t)a->ndim));
}

const tide_backend *tide_pw_backend_fail(const char *op, int32_t n, const tide_tensor *const *ts, int32_t *device) {
  for (int32_t i = 0; i < n; i++)
    if (!ts[i]) {
      /* the operands before it are checked first, as one by one they would be */
      if (tide_op_device(op, i, ts, device) == 0) tide_fail("%s: expected a tensor, got nil", op);
      return NULL;
    }
  if (tide_op_device(op, n, ts, device) != 0) return NULL;
  return tide_backend_for(*device, op);
}

int tide_pw_prepare(tide_pw_args *pa, int32_t loop_dt, tide_tensor *dst, int32_t ndim, const int64_t *shape,
                    int32_t nin, const tide_tensor *const *ins) {
  /* bool loops write 0/1, which is also a valid u8 */
  int direct = dst->dtype == loop_dt || (loop_dt == TIDE_BOOL && dst->dtype == TIDE_U8);
  pa->dst = dst;
  pa->target = dst;
  pa->nin = nin;
  pa->owns = 0;
  if (!direct && !(pa->target = tide_new_on(dst->device, loop_dt, ndim, shape))) return -1;
  for (int32_t k = 0; k < nin; k++) {
    const tide_tensor *in = ins[k];
    pa->own[k] = NULL;
    if (direct && in->storage == dst->storage && !same_view(in, dst)) {
      pa->owns = 1;
      if (!(pa->own[k] = tide_new_on(in->device, in->dtype, in->ndim, in->shape)) || tide_copy_into(pa->own[k], in)) {
        pa->nin = k + 1;
        tide_pw_finish_made(pa, -1);
        return -1;
      }
      in = pa->own[k];
    }
    pa->in[k] = in;
    tide_broadcast_strides(in, ndim, shape, pa->stride[k + 1]);
  }
  tide_broadcast_strides(pa->target, ndim, shape, pa->stride[0]);
  return 0;
}

int tide_pw_finish_made(tide_pw_args *pa, int rc) {
  if (pa->target != pa->dst) {
    if (rc == 0) rc = tide_copy_into(pa->dst, pa->target);
    tide_tensor_release(pa->target);
  }
  if (pa->owns)
    for (int32_t k = 0; k < pa->nin; k++) tide_tensor_release(pa->own[k]);
  return rc;
}
