/* The optimizer's kernels: the fused AdamW step, and the 2-norm that
   gradient clipping (tide_multi_norm) takes of each gradient. The op layer
   (runtime/ops/adamw.c) checks the operands and hyperparameters. */
#ifndef TIDE_KERNELS_ADAMW_H
#define TIDE_KERNELS_ADAMW_H
#include "tide.h"

struct tide_adamw_kernels {
  /* One torch.optim.AdamW step (single-tensor path) over ndim-d operands of one shape and dtype
     (f32 or f64), each read and written through its own element strides; step >= 1 is the count
     after this update. The operands do not overlap and none repeats an element. */
  int (*adamw_step)(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, int32_t dtype, int32_t ndim,
                    const int64_t *shape, const int64_t *param_stride, const int64_t *grad_stride,
                    const int64_t *exp_avg_stride, const int64_t *exp_avg_sq_stride, double lr, double beta1,
                    double beta2, double eps, double weight_decay, int64_t step);
  /* *out = the 2-norm of the n contiguous elements at x, in dtype (f32 or f64, out too), summed in
     the order of torch's CPU vector_norm so clipping factors match torch's bit for bit. */
  int (*norm2)(void *out, const void *x, int64_t n, int32_t dtype);
};

/* The CPU's (kernels/cpu/adamw.c). */
extern const struct tide_adamw_kernels tide_cpu_adamw;

#endif
