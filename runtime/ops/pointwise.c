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
  return a->data == b->data && a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
         !memcmp(a->stride, b->stride, sizeof(int64_t) * (size_t)a->ndim);
}

int tide_pw_run(tide_loop_fn fn, void *ctx, int32_t loop_dt, tide_tensor *dst, int32_t ndim, const int64_t *shape,
                int32_t nin, const tide_tensor *const *ins) {
  /* bool loops write 0/1, which is also a valid u8 */
  int direct = dst->dtype == loop_dt || (loop_dt == TIDE_BOOL && dst->dtype == TIDE_U8);
  tide_tensor *tmp = NULL, *own[TIDE_ITER_MAX_OPS] = {NULL};
  const tide_tensor *ops[TIDE_ITER_MAX_OPS];
  int rc = -1;
  if (!direct && !(tmp = tide_new(loop_dt, ndim, shape))) return -1;
  ops[0] = direct ? dst : tmp;
  for (int32_t k = 0; k < nin; k++) {
    const tide_tensor *in = ins[k];
    if (direct && in->storage == dst->storage && !same_view(in, dst)) {
      if (!(own[k] = tide_new_like(in)) || tide_copy_into(own[k], in)) goto done;
      in = own[k];
    }
    ops[k + 1] = in;
  }
  tide_iter it;
  tide_iter_init(&it, ndim, shape, nin + 1, ops);
  tide_iter_run(&it, fn, ctx, TIDE_GRAIN);
  rc = tmp ? tide_copy_into(dst, tmp) : 0;
done:
  tide_tensor_release(tmp);
  for (int32_t k = 0; k < nin; k++) tide_tensor_release(own[k]);
  return rc;
}

