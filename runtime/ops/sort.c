/* sort and topk at the op layer: operand, dim and k checks and the outputs
   (values in the input's dtype, i64 positions) on the operand's device; the
   backend's kernels (kernels/sort.h) order the rows. */
#include "dispatch.h"
#include "sort.h"

/* values and indices of a's shape with dim of size k (a 0-d input with k = 1 keeps 0 dims). */
static int alloc_outputs(int32_t dev, const tide_tensor *a, int32_t dim, int64_t k, tide_tensor **v, tide_tensor **ix) {
  int32_t nd = a->ndim ? a->ndim : 1;
  int64_t oshape[TIDE_MAX_DIMS] = {0};
  for (int32_t i = 0; i < nd; i++) oshape[i] = a->ndim ? a->shape[i] : 1;
  oshape[dim] = k;
  int32_t ond = a->ndim || k != 1 ? nd : 0;
  *v = tide_new_on(dev, a->dtype, ond, oshape);
  *ix = *v ? tide_new_on(dev, TIDE_I64, ond, oshape) : NULL;
  if (!*ix) {
    tide_tensor_release(*v);
    return -1;
  }
  return 0;
}

int tide_sort(const tide_tensor *a, int32_t dim, int32_t descending, tide_tensor **values, tide_tensor **indices) {
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, "sort");  /* tide_op_device skips absent operands */
  TIDE_OP_BACKEND(be, dev, sort, "sort", 1, &a);
  TIDE_TRY(tide_check_dim(a, dim, "sort"));
  if (!be->sort->sort) return tide_not_implemented("sort", be);
  int64_t len = a->ndim ? a->shape[dim] : 1;
  tide_tensor *v, *ix;
  TIDE_TRY(alloc_outputs(dev, a, dim, len, &v, &ix));
  if (be->sort->sort(v->data, (int64_t *)ix->data, a->data, a->dtype, a->ndim, a->shape, a->stride, dim, descending) != 0) {
    tide_tensor_release(v);
    tide_tensor_release(ix);
    return -1;
  }
  *values = v;
  *indices = ix;
  return 0;
}

int tide_topk(const tide_tensor *a, int64_t k, int32_t dim, int32_t largest, int32_t sorted, tide_tensor **values, tide_tensor **indices) {
  const tide_backend *be;
  int32_t dev;
  if (!a) return tide_check_handle(a, "topk");  /* tide_op_device skips absent operands */
  TIDE_OP_BACKEND(be, dev, sort, "topk", 1, &a);
  TIDE_TRY(tide_check_dim(a, dim, "topk"));
  int64_t len = a->ndim ? a->shape[dim] : 1;
  if (k < 0 || k > len)
    return tide_fail("topk: k = %lld is out of range for dimension %d of size %lld (expected 0..%lld)", (long long)k, dim + 1,
                     (long long)len, (long long)len);
  /* results always come in order: `sorted` = 0 only allows any order */
  (void)sorted;
  if (!be->sort->topk) return tide_not_implemented("topk", be);
  tide_tensor *v, *ix;
  TIDE_TRY(alloc_outputs(dev, a, dim, k, &v, &ix));
  if (be->sort->topk(v->data, (int64_t *)ix->data, a->data, a->dtype, a->ndim, a->shape, a->stride, dim, k, largest) != 0) {
    tide_tensor_release(v);
    tide_tensor_release(ix);
    return -1;
  }
  *values = v;
  *indices = ix;
  return 0;
}
