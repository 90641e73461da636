/* The copy family's kernels: elementwise copies with dtype conversion over
   strided operands (what casts, contiguous copies and copy_ run on), and
   transfers between host memory and a device's memory. */
#ifndef TIDE_KERNELS_COPY_H
#define TIDE_KERNELS_COPY_H
#include "tide.h"

struct tide_copy_kernels {
  /* dst[i] = src[i] converted from src_dtype to dst_dtype over an ndim-d shape; strides in
     elements (src's 0 where broadcast). Floats to integers saturate, integers wrap as a C cast.
     dst and src must not overlap unless they are the same view. */
  int (*copy)(void *dst, int32_t dst_dtype, const int64_t *dst_stride, const void *src, int32_t src_dtype,
              const int64_t *src_stride, int32_t ndim, const int64_t *shape);
  /* Copies nbytes between host memory and this backend's device memory: host to device when
     to_device is 1, else device to host. NULL on the CPU backend, whose memory is the host's. */
  int (*transfer)(void *dst, const void *src, size_t nbytes, int32_t to_device);
};

/* The CPU backend's copy kernels (kernels/cpu/copy.c). */
extern const struct tide_copy_kernels tide_cpu_copy;

#endif
