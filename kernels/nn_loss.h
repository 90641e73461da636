/* Loss kernels: cross-entropy of logits [N, V] (contiguous rows) against
   0-based class ids (contiguous i64), forward and backward. The op layer
   (runtime/ops/loss.c) flattens leading dims, converts operands and names
   the op in messages.
   The compute dtype is f64 for f64 logits and f32 otherwise; lse is saved
   in the compute dtype. dtype (the logits') is TIDE_F32 or TIDE_F64, or
   TIDE_BF16 where bf16_logits is set (read in place, math in f32, dlogits
   written in bf16). */
#ifndef TIDE_KERNELS_NN_LOSS_H
#define TIDE_KERNELS_NN_LOSS_H
#include "tide.h"

struct tide_loss_kernels {
  /* 1 where cross_entropy_forward/backward take bf16 logits themselves (CUDA: no f32 copy of the
     logits); 0 where the op layer converts bf16/f16 logits to f32 first (CPU). */
  int32_t bf16_logits;
  /* 1 where cross_entropy_backward needs targets the op layer has checked (the CPU's reads x[n, t[n]]
     unguarded; checking costs nothing there). 0 where the backward is safe with any target (a row whose
     target is out of range gets NaN, nothing is read out of bounds), so the op layer does not check them
     again: on CUDA the check is a host round trip, the forward made it, and autograd refuses targets
     changed in place since. */
  int32_t backward_checks_targets;
  /* Finds the first of targets[0..N) that is neither ignore_index nor in 0..V-1: returns 1 with its
     value in *bad, 0 when all are valid (on CUDA: one small kernel over the targets and one 16-byte read
     back, the only host round trip of a forward and backward). */
  int (*cross_entropy_check_targets)(const int64_t *targets, int64_t N, int64_t V, int64_t ignore_index, int64_t *bad);
  /* lse[n] = log sum_v exp(x[n, v]) (compute dtype) and the row losses lse[n] - x[n, t[n]] (0 where
     t[n] == ignore_index), formed in double; loss (loss_dtype, any float dtype) gets the N row losses
     (TIDE_REDUCE_NONE), or their sum or mean over the rows not ignored (one value; a mean of none is NaN),
     added in double in a fixed order (the CPU: row order; CUDA: a fixed tree), rounded once to loss_dtype. */
  int (*cross_entropy_forward)(void *loss, int32_t loss_dtype, void *lse, const void *logits, const int64_t *targets,
                               int64_t N, int64_t V, int64_t ignore_index, int32_t reduction, int32_t dtype);
  /* dlogits [N, V] (dtype, contiguous) = scale_n * (softmax(x_n) - onehot(t_n)), 0 on ignored rows;
     scale_n is dloss[0] (sum), dloss[0] / rows not ignored (mean) or dloss[n] (none: per-row weights,
     such as a per-sample weighted loss's, arrive this way); dloss is contiguous of dloss_dtype (any float
     dtype), lse the forward's (compute dtype). */
  int (*cross_entropy_backward)(void *dlogits, const void *logits, const int64_t *targets, const void *lse,
                                const void *dloss, int32_t dloss_dtype, int64_t N, int64_t V, int64_t ignore_index,
                                int32_t reduction, int32_t dtype);
};

/* The CPU's (kernels/cpu/nn_loss.c). */
extern const struct tide_loss_kernels tide_cpu_loss;

#endif
