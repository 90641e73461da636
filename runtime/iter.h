/* Strided N-d iteration shared by the CPU kernels: operands are walked
   together over one shape (broadcast operands carry stride 0), dimensions
   that are contiguous for every operand are merged, and the work is cut into
   1-d runs spread over OpenMP threads. */
#ifndef TIDE_ITER_H
#define TIDE_ITER_H
#include "tide.h"

#define TIDE_ITER_MAX_OPS 4

typedef struct tide_iter {
  int32_t nops, ndim;
  int64_t numel;
  int64_t shape[TIDE_MAX_DIMS];
  int64_t stride[TIDE_ITER_MAX_OPS][TIDE_MAX_DIMS]; /* bytes */
  char *data[TIDE_ITER_MAX_OPS];
} tide_iter;

/* Processes n elements of a 1-d run: ptrs[k] is operand k's first element and
   strides[k] its step in bytes. Must not fail; report problems through ctx. */
typedef void (*tide_loop_fn)(char **ptrs, const int64_t *strides, int64_t n, void *ctx);

/* Prepares iteration over shape for raw operands: data[k] is operand k's first element and st[k][i] its step
   along dim i in bytes (0 where broadcast). What plain-pointer kernels use. */
void tide_iter_init_raw(tide_iter *it, int32_t ndim, const int64_t *shape, int32_t nops, char *const *data,
                        const int64_t (*st)[TIDE_MAX_DIMS]);
/* Calls fn on every run; in parallel when the work is at least `grain` elements per thread. */
void tide_iter_run(const tide_iter *it, tide_loop_fn fn, void *ctx, int64_t grain);

/* Default number of elements below which splitting work over threads costs more than it saves. */
#define TIDE_GRAIN 32768

#endif
