/* The optimizer's kernels: the fused AdamW step, and the 2-norm that
   gradient clipping (tide_multi_norm) takes of each gradient. The op layer
   (runtime/ops/adamw.c) checks the operands and hyperparameters. */
#ifndef TIDE_KERNELS_ADAMW_H
#define TIDE_KERNELS_ADAMW_H
#include "tide.h"

/* One tensor of a multi-tensor AdamW step: four contiguous operands of numel elements in the call's
   dtype, an optional contiguous bf16 copy of the parameter (shadow, NULL: none) and the step count
   after this update (>= 1; the bias corrections are per tensor). */
typedef struct tide_adamw_entry {
  void *param;
  const void *grad;
  void *exp_avg;
  void *exp_avg_sq;
  void *shadow;
  int64_t numel;
  int64_t step;
} tide_adamw_entry;

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
  /* The multi-tensor AdamW step: each of the n entries updated exactly as adamw_step updates it
     (the same bits), all in dtype (f32 or f64); where an entry has a shadow, the updated parameter
     rounded to bf16 (nearest even, through f32 as tide's casts) is written there in the same pass.
     No operand overlaps another (of its entry or any other). */
  int (*adamw_multi_step)(int32_t n, const tide_adamw_entry *entries, int32_t dtype, double lr, double beta1,
                          double beta2, double eps, double weight_decay);
  /* *out (out_dtype: f64 when some entry is f64, else f32) = the 2-norm of the n per-tensor 2-norms
     of the contiguous xs[i] (ns[i] elements of dtypes[i], f32 or f64), each norm rounded to its own
     tensor's dtype first: tide_multi_norm's p = 2. The CPU's equals norm2 applied tensor by tensor
     then to the norms; the CUDA one sums squares in double in a fixed order (deterministic). */
  int (*multi_norm2)(void *out, int32_t out_dtype, int32_t n, const void *const *xs, const int64_t *ns,
                     const int32_t *dtypes);
  /* Gradient clipping's scaling: each of the n contiguous xs[i] (ns[i] elements of dtypes[i]: f32,
     f64, bf16 or f16) multiplied in place by coef = min(max_norm / (*total + 1e-6), 1) (NaN stays
     NaN), where total is one element of total_dtype (f32 or f64) in the backend's memory and coef is
     computed as torch's clip_grad_norm_ does in that dtype (f32: the reciprocal of round(total +
     round(1e-6)), times round(max_norm), each rounded). The product is mul_'s: coef rounded to the
     compute dtype (f64 for f64 tensors, else f32), one correctly rounded product, stored in the
     tensor's dtype. total is read on the device: no host round trip. */
  int (*clip_scale)(int32_t n, void *const *xs, const int64_t *ns, const int32_t *dtypes, const void *total,
                    int32_t total_dtype, double max_norm);
};

/* The CPU's (kernels/cpu/adamw.c). */
extern const struct tide_adamw_kernels tide_cpu_adamw;

#endif
