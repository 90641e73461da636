/* Loss kernels: cross-entropy of logits [N, V] (contiguous, f32 or f64)
   against 0-based class ids (contiguous i64), forward and backward. The op
   layer (runtime/ops/loss.c) flattens leading dims, converts operands and
   names the op in messages. */
#ifndef TIDE_KERNELS_NN_LOSS_H
#define TIDE_KERNELS_NN_LOSS_H
#include "tide.h"

struct tide_loss_kernels {
  /* Finds the first of targets[0..N) that is neither ignore_index nor in 0..V-1: returns 1 with its
     value in *bad, 0 when all are valid. */
  int (*cross_entropy_check_targets)(const int64_t *targets, int64_t N, int64_t V, int64_t ignore_index, int64_t *bad);
  /* lse[n] = log sum_v exp(x[n, v]) and the row losses lse[n] - x[n, t[n]] (0 where t[n] ==
     ignore_index), both f64; loss gets the N row losses (TIDE_REDUCE_NONE) or their sum or mean over
     the rows not ignored (one value; a mean of none is NaN), added in row order. */
  int (*cross_entropy_forward)(double *loss, double *lse, const void *logits, const int64_t *targets, int64_t N,
                               int64_t V, int64_t ignore_index, int32_t reduction, int32_t dtype);
  /* dlogits [N, V] (dtype, contiguous) = scale_n * (softmax(x_n) - onehot(t_n)), 0 on ignored rows;
     scale_n is dloss[0] (sum), dloss[0] / rows not ignored (mean) or dloss[n] (none); lse from the
     forward. */
  int (*cross_entropy_backward)(void *dlogits, const void *logits, const int64_t *targets, const double *lse,
                                const double *dloss, int64_t N, int64_t V, int64_t ignore_index, int32_t reduction,
                                int32_t dtype);
};

/* The CPU's (kernels/cpu/nn_loss.c). */
extern const struct tide_loss_kernels tide_cpu_loss;

#endif
