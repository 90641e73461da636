// The loss family on CUDA (kernels/nn_loss.h): cross-entropy of logits
// [N, V] against class ids, with the CPU backend's arithmetic
// (kernels/cpu/nn_loss.c): per row the max in the compute type T, exps in T
// summed in double, lse = max + log(sum) and the row loss in double; the
// backward in T, exp(x - lse) * scale, with the target's p - 1 formed in
// double before scaling.
// - target check: one block finds the first bad target (a min over indices,
//   so the CPU's "first"), and the host reads the verdict (the op layer
//   needs it before anything is computed);
// - forward: one block per row, block reductions in a fixed tree
//   (nn_softmax_rows.cuh); the sum / mean of the row losses is added by one
//   thread in row order, as the contract says, so the same bits every run;
// - backward: one block per row; the mean's row count is an integer sum.
#include "nn_softmax_rows.cuh"
extern "C" {
#include "nn_loss.h"
#include "dtype.h"
}

static int row_threads(int64_t V) {
  int64_t t = (V + 31) / 32 * 32;
  return t < 32 ? 32 : t > NN_ROW_THREADS ? NN_ROW_THREADS : (int)t;
}

__device__ __forceinline__ long long ce_min(long long a, long long b) { return b < a ? b : a; }

// res[0] = 1 and res[1] = the value of the first target that is neither ignore_index nor in 0..V-1, else res[0] = 0.
__global__ void ce_check_targets(int64_t *res, const int64_t *t, int64_t N, int64_t V, int64_t ignore_index) {
  __shared__ long long part[32];
  long long first = N;  // this thread's first bad index (its indices rise)
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    int64_t v = t[i];
    if (v != ignore_index && (v < 0 || v >= V)) {
      first = i;
      break;
    }
  }
  for (int o = 16; o > 0; o >>= 1) first = ce_min(first, __shfl_xor_sync(0xffffffffu, first, o));
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = first;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned k = 1; k < blockDim.x >> 5; k++) first = ce_min(first, part[k]);
    res[0] = first < N;
    res[1] = first < N ? t[first] : 0;
  }
}

static int cross_entropy_check_targets(const int64_t *targets, int64_t N, int64_t V, int64_t ignore_index,
                                       int64_t *bad) {
  const char *op = "cross_entropy";
  if (N <= 0) return 0;
  int64_t *res = (int64_t *)tide_cuda_scratch(2 * sizeof(int64_t)), h[2] = {0, 0};
  if (!res) return -1;
  LAUNCH(ce_check_targets, 1, NN_ROW_THREADS, 0, TIDE_CUDA_STREAM, res, targets, N, V, ignore_index);
  int rc = tide_cuda_after_launch(op);
  if (!rc) rc = tide_cuda_to_host(h, res, sizeof h, op);
  tide_cuda_scratch_free(res, 2 * sizeof(int64_t));
  if (rc) return -1;
  if (h[0]) *bad = h[1];
  return h[0] ? 1 : 0;
}

// lse[n] and the row losses rl[n] (0 on ignored rows), in double
template <class T>
__global__ void ce_forward_rows(double *rl, double *lse, const T *x, const int64_t *t, int64_t N, int64_t V,
                                int64_t ignore_index) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T *xr = x + n * V;
    T m = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) m = nn_max(m, xr[v]);
    m = nn_block_max(m);
    double s = 0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) s += (double)nn_exp(xr[v] - m);
    s = nn_block_sum(s);
    if (threadIdx.x == 0) {
      const double l = (double)m + log(s);
      const int64_t tn = t[n];
      lse[n] = l;
      // a target out of range (the op layer has checked them) gives NaN rather than a stray read
      rl[n] = tn == ignore_index ? 0.0 : tn >= 0 && tn < V ? l - (double)xr[tn] : (double)NAN;
    }
  }
}

// *loss = the sum of the row losses added in row order, or their mean over the rows not ignored (NaN if none)
__global__ void ce_reduce(double *loss, const double *rl, const int64_t *t, int64_t N, int64_t ignore_index,
                          int mean) {
  if (threadIdx.x != 0) return;
  double s = 0;
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) {
    s += rl[n];
    count += t[n] != ignore_index;
  }
  *loss = mean ? (count ? s / (double)count : (double)NAN) : s;
}

template <class T>
static int ce_forward_run(double *loss, double *lse, const T *x, const int64_t *t, int64_t N, int64_t V,
                          int64_t ignore_index, int32_t reduction) {
  const char *op = "cross_entropy";
  int none = reduction == TIDE_REDUCE_NONE;
  double *rl = none ? loss : NULL;
  size_t bytes = (size_t)(N ? N : 1) * sizeof(double);
  if (!none && !(rl = (double *)tide_cuda_scratch(bytes))) return -1;
  int rc = 0;
  if (N > 0) {
    LAUNCH(ce_forward_rows<T>, nn_row_blocks(N), row_threads(V), 0, TIDE_CUDA_STREAM, rl, lse, x, t, N, V,
           ignore_index);
    rc = tide_cuda_after_launch(op);
  }
  if (!rc && !none) {
    LAUNCH(ce_reduce, 1, 1, 0, TIDE_CUDA_STREAM, loss, (const double *)rl, t, N, ignore_index,
           reduction == TIDE_REDUCE_MEAN);
    rc = tide_cuda_after_launch(op);
  }
  if (!none) tide_cuda_scratch_free(rl, bytes);
  return rc;
}

static int cross_entropy_forward(double *loss, double *lse, const void *logits, const int64_t *targets, int64_t N,
                                 int64_t V, int64_t ignore_index, int32_t reduction, int32_t dtype) {
  if (dtype == TIDE_F32)
    return ce_forward_run(loss, lse, (const float *)logits, targets, N, V, ignore_index, reduction);
  if (dtype == TIDE_F64)
    return ce_forward_run(loss, lse, (const double *)logits, targets, N, V, ignore_index, reduction);
  return tide_fail("cross_entropy: the CUDA kernel takes f32 or f64 logits, got %s", tide_dtype_name(dtype));
}

// *scale = dloss[0] / (rows not ignored), 0 when every row is (then it is never used)
__global__ void ce_mean_scale(double *scale, const int64_t *t, const double *dloss, int64_t N, int64_t ignore_index) {
  long long c = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) c += t[i] != ignore_index;
  c = nn_block_sum(c);  // integers: exact in any order
  if (threadIdx.x == 0) *scale = c ? dloss[0] / (double)c : 0.0;
}

// dx_n = scale_n * (exp(x_n - lse_n) - onehot(t_n)), 0 on ignored rows; scale_n = dloss[n] (none) or *common
template <class T>
__global__ void ce_backward_rows(T *dx, const T *x, const int64_t *t, const double *lse, const double *dloss,
                                 const double *common, int64_t N, int64_t V, int64_t ignore_index, int none) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    T *o = dx + n * V;
    const T *xr = x + n * V;
    const int64_t tn = t[n];
    if (tn == ignore_index) {
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) o[v] = T(0);
      continue;
    }
    const double scd = none ? dloss[n] : *common;
    const T l = (T)lse[n], sc = (T)scd;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      T e = nn_exp(xr[v] - l);
      // p - 1 before scaling: no cancellation when p is close to 1
      o[v] = v == tn ? (T)(((double)e - 1.0) * scd) : e * sc;
    }
  }
}

template <class T>
static int ce_backward_run(T *dx, const T *x, const int64_t *t, const double *lse, const double *dloss, int64_t N,
                           int64_t V, int64_t ignore_index, int32_t reduction) {
  const char *op = "cross_entropy_backward";
  if (N == 0 || V == 0) return 0;
  const double *common = dloss;
  double *sc = NULL;
  if (reduction == TIDE_REDUCE_MEAN) {
    if (!(sc = (double *)tide_cuda_scratch(sizeof(double)))) return -1;
    LAUNCH(ce_mean_scale, 1, NN_ROW_THREADS, 0, TIDE_CUDA_STREAM, sc, t, dloss, N, ignore_index);
    if (tide_cuda_after_launch(op)) {
      tide_cuda_scratch_free(sc, sizeof(double));
      return -1;
    }
    common = sc;
  }
  LAUNCH(ce_backward_rows<T>, nn_row_blocks(N), row_threads(V), 0, TIDE_CUDA_STREAM, dx, x, t, lse, dloss, common, N,
         V, ignore_index, reduction == TIDE_REDUCE_NONE);
  int rc = tide_cuda_after_launch(op);
  if (sc) tide_cuda_scratch_free(sc, sizeof(double));
  return rc;
}

static int cross_entropy_backward(void *dlogits, const void *logits, const int64_t *targets, const double *lse,
                                  const double *dloss, int64_t N, int64_t V, int64_t ignore_index, int32_t reduction,
                                  int32_t dtype) {
  if (dtype == TIDE_F32)
    return ce_backward_run((float *)dlogits, (const float *)logits, targets, lse, dloss, N, V, ignore_index, reduction);
  if (dtype == TIDE_F64)
    return ce_backward_run((double *)dlogits, (const double *)logits, targets, lse, dloss, N, V, ignore_index,
                           reduction);
  return tide_fail("cross_entropy_backward: the CUDA kernel takes f32 or f64 logits, got %s", tide_dtype_name(dtype));
}

extern "C" const struct tide_loss_kernels tide_cuda_loss = {cross_entropy_check_targets, cross_entropy_forward,
                                                            cross_entropy_backward};
