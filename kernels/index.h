/* Index-driven kernels: index_select, gather, scatter_add, masked_fill.
   Index operands hold 0-based values in an integer dtype (i64, i32, u8, u16);
   each kernel checks every value it uses against the indexed size and fails
   (-1, naming the op and the bad value) before writing through it, so a bad
   index is an error message, never a stray read or write. Shapes and strides
   are in elements; results written to `out` are contiguous. */
#ifndef TIDE_KERNELS_INDEX_H
#define TIDE_KERNELS_INDEX_H
#include <stdint.h>

struct tide_index_kernels {
  /* out = the slices of a (ndim >= 1 dims, es-byte elements) at positions index[0..n) (stride istride)
     along dim, laid out as a's shape with shape[dim] = n. */
  int (*index_select)(void *out, const void *a, int32_t ndim, const int64_t *shape, const int64_t *stride, int32_t es,
                      int32_t dim, const void *index, int64_t n, int64_t istride, int32_t idtype);
  /* out[...] = a[... index[...] ...] along dim (torch.gather) over the index's shape; a's strides are
     given for the index's ndim dims, asize is a's size along dim (1 for a 0-d a). */
  int (*gather)(void *out, int32_t ndim, const int64_t *shape, const void *a, const int64_t *astride, int64_t asize,
                int32_t es, int32_t dim, const void *index, const int64_t *istride, int32_t idtype);
  /* a[... index[...] ...] += src[...] along dim over the index's shape (torch.scatter_add_); every index
     is validated before the first write, and each element receives its sources in index order.
     index and src must not share memory with a (the caller copies them). */
  int (*scatter_add)(void *a, int32_t adtype, const int64_t *astride, int64_t asize, int32_t ndim, const int64_t *shape,
                     int32_t dim, const void *index, const int64_t *istride, int32_t idtype, const void *src,
                     const int64_t *sstride, int32_t sdtype);
  /* a[i] = value (converted to dtype) where mask[i] (bool/u8 bytes, strides already broadcast to a's
     shape) is nonzero. */
  int (*masked_fill)(void *a, int32_t ndim, const int64_t *shape, const int64_t *astride, int32_t dtype,
                     const void *mask, const int64_t *mstride, double value);
};

extern const struct tide_index_kernels tide_cpu_index;

#endif
