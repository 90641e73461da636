// The norm family on CUDA (kernels/nn_norm.h): layer norm over the last
// dimension, forward and backward, with the CPU backend's arithmetic
// (kernels/cpu/nn_norm.c): row statistics in double (the mean as a double
// sum, the variance as the sum of squared deviations from the mean split
// into two T values), the elementwise work in the compute type T.
// - forward: one block per row, block reductions in a fixed tree
//   (nn_softmax_rows.cuh);
// - backward: rows are cut into the CPU's blocks (a size fixed by the row
//   count); one CUDA block per row block walks its rows in order, forming dx
//   per row and adding dout * xhat and dout into that block's partial sums of
//   dweight / dbias, [nblk, C] in scratch, where each column belongs to one
//   thread (no atomics); a second kernel adds the partials in block order.
//   So dweight and dbias have the same bits on every run, as on the CPU.
#include "nn_softmax_rows.cuh"
extern "C" {
#include "nn_norm.h"
#include "dtype.h"
}

static int row_threads(int64_t C) {
  int64_t t = (C + 31) / 32 * 32;
  return t < 32 ? 32 : t > NN_ROW_THREADS ? NN_ROW_THREADS : (int)t;
}

// Rows per block of the backward's partial sums: the CPU's rule (a function of the row count alone).
static int64_t block_rows(int64_t rows) {
  int64_t rb = (rows + 255) / 256;
  return rb < 32 ? 32 : rb;
}

template <class T>
__global__ void ln_forward(T *y, double *mean, double *rstd, const T *x, const T *w, const T *b, int64_t rows,
                           int64_t C, double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *xr = x + r * C;
    T *yr = y + r * C;
    double s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += (double)xr[c];
    const double mu = nn_block_sum(s) / (double)C;  // NaN for C == 0, as the contract says
    // x - mean as (x - mt) - ml: exact or relative to itself when the mean is large against the spread
    const T mt = (T)mu, ml = (T)(mu - (double)mt);
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T d = (xr[c] - mt) - ml;
      ss += (double)(d * d);
    }
    ss = nn_block_sum(ss);
    const double rs = 1.0 / sqrt(ss / (double)C + eps);
    if (threadIdx.x == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    const T rt = (T)rs;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T v = ((xr[c] - mt) - ml) * rt;
      if (w) v = v * w[c];
      if (b) v = v + b[c];
      yr[c] = v;
    }
  }
}

// Block k of rows [k * rb, min((k + 1) * rb, rows)); pw / pb (NULL when unwanted) get row k of the partials.
template <class T>
__global__ void ln_backward(T *dx, double *pw, double *pb, const T *dy, const T *x, const T *w, const double *mean,
                            const double *rstd, int64_t rows, int64_t C, int64_t rb) {
  const int64_t k = blockIdx.x, r0 = k * rb, r1 = r0 + rb < rows ? r0 + rb : rows;
  double *aw = pw ? pw + k * C : nullptr, *ab = pb ? pb + k * C : nullptr;
  for (int64_t r = r0; r < r1; r++) {
    const T *dyr = dy + r * C, *xr = x + r * C;
    T *dxr = dx + r * C;
    const T mt = (T)mean[r], rt = (T)rstd[r];
    double sg = 0, sgx = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T g = w ? dyr[c] * w[c] : dyr[c];
      sg += (double)g;
      sgx += (double)(g * ((xr[c] - mt) * rt));
    }
    sg = nn_block_sum(sg);
    sgx = nn_block_sum(sgx);
    const T a = (T)(sg / (double)C), bb = (T)(sgx / (double)C);
    const bool first = r == r0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T g = w ? dyr[c] * w[c] : dyr[c];
      dxr[c] = rt * (g - a - (xr[c] - mt) * rt * bb);
      // this thread owns column c of the partials for every row of the block
      if (aw) aw[c] = (first ? 0.0 : aw[c]) + (double)(dyr[c] * ((xr[c] - mt) * rt));
      if (ab) ab[c] = (first ? 0.0 : ab[c]) + (double)dyr[c];
    }
  }
}

// o[c] = the nblk partial rows of p added in block order (0 when nblk == 0)
__global__ void ln_sum_partials(double *o, const double *p, int64_t nblk, int64_t C) {
  TIDE_CUDA_FOR(c, C) {
    double s = 0;
    for (int64_t k = 0; k < nblk; k++) s += p[k * C + c];
    o[c] = s;
  }
}

static int layernorm_forward(void *out, double *mean, double *rstd, const void *inp, const void *weight,
                             const void *bias, int64_t rows, int64_t C, double eps, int32_t dtype) {
  const char *op = "layer_norm";
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
  if (rows == 0) return 0;
  if (dtype == TIDE_F32)
    TIDE_CUDA_LAUNCH(op, ln_forward<float>, nn_row_blocks(rows), row_threads(C), 0, (float *)out, mean, rstd,
                     (const float *)inp, (const float *)weight, (const float *)bias, rows, C, eps);
  else
    TIDE_CUDA_LAUNCH(op, ln_forward<double>, nn_row_blocks(rows), row_threads(C), 0, (double *)out, mean, rstd,
                     (const double *)inp, (const double *)weight, (const double *)bias, rows, C, eps);
  return 0;
}

static int layernorm_backward(void *dinp, double *dweight, double *dbias, const void *dout, const void *inp,
                              const void *weight, const double *mean, const double *rstd, int64_t rows, int64_t C,
                              int32_t dtype) {
  const char *op = "layer_norm_backward";
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
  if (C == 0) return 0;
  int64_t rb = block_rows(rows), nblk = (rows + rb - 1) / rb;
  int nparts = (dweight != NULL) + (dbias != NULL);
  size_t bytes = (size_t)nblk * (size_t)C * sizeof(double) * (size_t)nparts;
  double *part = NULL;
  if (bytes && !(part = (double *)tide_cuda_scratch(bytes))) return -1;
  double *pw = dweight ? part : NULL, *pb = dbias ? part + (dweight ? nblk * C : 0) : NULL;
  int rc = 0;
  if (nblk) {
    if (dtype == TIDE_F32)
      LAUNCH(ln_backward<float>, (unsigned)nblk, row_threads(C), 0, TIDE_CUDA_STREAM, (float *)dinp, pw, pb,
             (const float *)dout, (const float *)inp, (const float *)weight, mean, rstd, rows, C, rb);
    else
      LAUNCH(ln_backward<double>, (unsigned)nblk, row_threads(C), 0, TIDE_CUDA_STREAM, (double *)dinp, pw, pb,
             (const double *)dout, (const double *)inp, (const double *)weight, mean, rstd, rows, C, rb);
    rc = tide_cuda_after_launch(op);
  }
  // the final passes run even with no rows: dweight and dbias are then zeros
  if (!rc && dweight) {
    LAUNCH(ln_sum_partials, tide_cuda_blocks(C), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, dweight, pw, nblk, C);
    rc = tide_cuda_after_launch(op);
  }
  if (!rc && dbias) {
    LAUNCH(ln_sum_partials, tide_cuda_blocks(C), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, dbias, pb, nblk, C);
    rc = tide_cuda_after_launch(op);
  }
  if (part) tide_cuda_scratch_free(part, bytes);  // stream-ordered: the kernels above run first
  return rc;
}

extern "C" const struct tide_norm_kernels tide_cuda_norm = {layernorm_forward, layernorm_backward};
