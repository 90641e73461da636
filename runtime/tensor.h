/* Storage and tensor handles: allocation on a device, refcounts, shapes and
   views (runtime/tensor.c: geometry only, it calls no kernel). The op layer
   (runtime/ops) builds on the helpers declared here. */
#ifndef TIDE_TENSOR_H
#define TIDE_TENSOR_H
#include "tide.h"
#include "dtype.h"
#include "error.h"
#include "device.h"


struct tide_storage {
  char *data;
  size_t nbytes;
  _Atomic int32_t refcount;
  int32_t device;
  _Atomic int64_t version;  /* in-place writes so far, shared by every view (autograd checks it) */
};

/* Allocates a contiguous tensor of dtype and shape (uninitialised) on the CPU; NULL with an error set on failure. */
tide_tensor *tide_new(int32_t dtype, int32_t ndim, const int64_t *shape);
/* As tide_new, on device (-1: CPU, n: cuda:n), through that device's allocator. */
tide_tensor *tide_new_on(int32_t device, int32_t dtype, int32_t ndim, const int64_t *shape);
/* A new contiguous tensor with t's dtype, shape and device. */
tide_tensor *tide_new_like(const tide_tensor *t);
/* A new handle on t's storage with the given geometry (offset in elements); NULL with an error set when the
   shape is invalid or too large (tide_shape_numel) or the offset lies outside the storage. Strides are not checked. */
tide_tensor *tide_new_view(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset);
/* Checks that t is a usable tensor handle on any device (live, geometry inside its storage). */
int tide_check_handle(const tide_tensor *t, const char *what);
/* Checks that t is a usable CPU tensor handle; `what` names the caller in the message. Ops not yet under
   the op layer use it; those under it use tide_op_device (runtime/ops/dispatch.h), which takes any device. */
int tide_check_tensor(const tide_tensor *t, const char *what);
/* Checks that t's numel, data pointer, offset and strides agree with its shape and lie inside its storage. */
int tide_check_geometry(const tide_tensor *t, const char *what);
/* Counts an in-place write to t's storage (every view of it sees the new version). */
void tide_bump_version(tide_tensor *t);
/* Checks that dim is in [0, ndim). */
int tide_check_dim(const tide_tensor *t, int32_t dim, const char *what);
/* Product of shape with overflow checks; -1 with an error set when negative or too large. */
int64_t tide_shape_numel(int32_t ndim, const int64_t *shape, const char *what);
/* Broadcasts two shapes (numpy rules) into out/out_ndim; names the shapes on failure. */
int tide_broadcast_shapes(int32_t na, const int64_t *a, int32_t nb, const int64_t *b, int32_t *out_ndim, int64_t *out, const char *what);
/* Strides (in elements) that read t as if it had the broadcast shape; 0 where broadcast. */
void tide_broadcast_strides(const tide_tensor *t, int32_t ndim, const int64_t *shape, int64_t *stride);
/* Row-major contiguous strides for shape. */
void tide_contiguous_strides(int32_t ndim, const int64_t *shape, int64_t *stride);
/* Resolves req (one -1 inferred) against t's numel into shape: 1 when t can be viewed with that shape
   without copying (strides written to stride), 0 when only a copy can have it, -1 with an error naming what. */
int tide_view_geometry(const tide_tensor *t, int32_t ndim, const int64_t *req, int64_t *shape, int64_t *stride, const char *what);

/* The op layer's copy helpers, defined in runtime/ops/copy.c (they dispatch to the copy
   kernels). Declared here so the kernel files not yet moved under the op layer still find
   them; they belong with the op layer's declarations once every family has moved. */

/* Copies src, broadcast to dst's shape, into dst with dtype conversion on their device
   (dst may be any view; overlapping storage is read first). Operands must already be checked. */
int tide_copy_into(tide_tensor *dst, const tide_tensor *src);
/* src itself (retained) when already contiguous with dtype, else a contiguous converted copy on src's device. */
tide_tensor *tide_contiguous_as(const tide_tensor *src, int32_t dtype);

#endif
