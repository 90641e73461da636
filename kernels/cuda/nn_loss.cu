// The loss family on CUDA (kernels/nn_loss.h): the fused classifier.
// Cross-entropy of logits [N, V] (f32, f64, or bf16 read in place) against
// class ids, in two passes over the logits for a forward and backward and no
// stored probabilities:
// - target check: one block finds the first bad target (a min over indices,
//   so the CPU's "first") and the host reads the verdict: the one host round
//   trip, in the forward only (the backward is safe with any target);
// - forward: one block per row reads the row once, in 16-byte vectors, and
//   keeps a running max m and sum s = sum exp(x - m) per thread (online
//   softmax: when a larger value arrives, s is rescaled by exp(m_old - m_new)),
//   in f32 (f64 for f64 logits); the threads' (m, s) pairs merge in a fixed
//   tree; lse = m + log(s) is saved (compute dtype) and the row loss
//   lse - x[t] formed in double, written in the loss dtype (none) or summed
//   by a second small kernel, one block in a fixed tree (sum, mean);
// - backward: one block per row reads the row once more and writes
//   dlogits = scale_n * (exp(x - lse) - onehot(t)) in the logits' dtype,
//   in the same vectors; scale_n comes from dloss (one value for sum, that
//   over the rows not ignored for mean, one per row for none: how per-sample
//   weights reach the kernel without another pass over the logits).
// bf16 rows use the GPU's fast exp (CeT<uint16_t>::ex says why). Every sum
// has a fixed shape (thread strides, then xor butterflies), so results have
// the same bits on every run. Rows need not be 16-byte aligned
// (V = 50257 bf16 rows are not): each row starts with up to 15 bytes read
// one element at a time, then whole vectors, then a tail.
#include "nn_softmax_rows.cuh"
extern "C" {
#include "nn_loss.h"
#include "dtype.h"
}

// Loops over a vector's elements are unrolled so its values stay in registers.
#if defined(__CUDACC__)
#define CE_UNROLL _Pragma("unroll")
#else
#define CE_UNROLL
#endif

// The element types: f32, f64, and bf16 as its bits; A is the compute type.
template <class T> struct CeT;
template <> struct CeT<float> {
  typedef float A;
  static __device__ __forceinline__ float ex(float v) { return expf(v); }
  static __device__ __forceinline__ float ld(float v) { return v; }
  static __device__ __forceinline__ float st(float a) { return a; }
};
template <> struct CeT<double> {
  typedef double A;
  static __device__ __forceinline__ double ex(double v) { return exp(v); }
  static __device__ __forceinline__ double ld(double v) { return v; }
  static __device__ __forceinline__ double st(double a) { return a; }
};
template <> struct CeT<uint16_t> {
  typedef float A;
  // bf16 logits: the hardware exp (ex2 of x log2 e, two instructions; relative error a few 1e-6, far
  // below bf16's 4e-3), where expf's ~8 instructions an element would make the kernel compute-bound at
  // HBM speed; the emulator has only expf
  static __device__ __forceinline__ float ex(float v) {
#if defined(__CUDA_ARCH__)
    return __expf(v);
#else
    return expf(v);
#endif
  }
  static __device__ __forceinline__ float ld(uint16_t v) { return tide_bf16_to_f32(v); }
  // round to nearest even, as tide_f32_to_bf16 (one instruction on the GPU)
  static __device__ __forceinline__ uint16_t st(float a) {
#if defined(__CUDA_ARCH__)
    return __bfloat16_as_ushort(__float2bfloat16_rn(a));
#else
    return tide_f32_to_bf16(a);
#endif
  }
};

// 16 bytes of elements: one vector load or store.
template <class T> struct alignas(16) CeVec {
  enum { W = 16 / sizeof(T) };
  T v[W];
};

// Elements of row p before its first 16-byte boundary (all V when vec is 0: no vectors).
template <class T> __device__ __forceinline__ int64_t ce_head(const T *p, int64_t V, int vec) {
  if (!vec) return V;
  const int64_t W = 16 / sizeof(T), mis = (int64_t)(((uintptr_t)p / sizeof(T)) % W);
  const int64_t h = mis ? W - mis : 0;
  return h < V ? h : V;
}

// Folds k values into a running max m and sum s = sum exp(x - m) (NaN skipped by the max and
// carried by the sum, as on the CPU). While m is -inf every value so far was -inf (adding 0) or NaN.
template <class E, class A, int K> __device__ __forceinline__ void ce_fold(A &m, A &s, const A (&v)[K]) {
  A cm = m;
CE_UNROLL
  for (int k = 0; k < K; k++) cm = nn_max(cm, v[k]);
  if (cm > m) {
    s = s * E::ex(m - cm);  // m == -inf: s is 0 and stays 0
    m = cm;
  }
  if (m == A(-INFINITY)) {
CE_UNROLL
    for (int k = 0; k < K; k++)
      if (v[k] != v[k]) s = v[k];
  } else {
CE_UNROLL
    for (int k = 0; k < K; k++) s += E::ex(v[k] - m);
  }
}

// (m, s) merged with (m2, s2); symmetric in its two operands, so an xor butterfly gives every lane the same bits.
template <class E, class A> __device__ __forceinline__ void ce_merge(A &m, A &s, A m2, A s2) {
  const A M = nn_max(m, m2);
  const A a = m == M ? s : s * E::ex(m - M), b = m2 == M ? s2 : s2 * E::ex(m2 - M);
  m = M;
  s = a + b;
}

template <class E, class A> __device__ __forceinline__ void ce_warp_merge(A &m, A &s) {
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    ce_merge<E>(m, s, m2, s2);
  }
}

// Every thread's (m, s) merged, returned to every thread. Called by all threads of the block.
template <class E, class A> __device__ void ce_block_merge(A &m, A &s) {
  __shared__ A pm[32], ps[32];
  ce_warp_merge<E>(m, s);
  __syncthreads();  // a previous row's reads of pm, ps are over
  if ((threadIdx.x & 31) == 0) pm[threadIdx.x >> 5] = m, ps[threadIdx.x >> 5] = s;
  __syncthreads();
  const bool have = (threadIdx.x & 31) < (blockDim.x >> 5);
  m = have ? pm[threadIdx.x & 31] : A(-INFINITY);
  s = have ? ps[threadIdx.x & 31] : A(0);
  ce_warp_merge<E>(m, s);
}

// Threads for rows of V elements read in vectors of W: one vector each where the row is short.
static int row_threads(int64_t V, int W) {
  int64_t t = ((V + W - 1) / W + 31) / 32 * 32;
  return t < 32 ? 32 : t > NN_ROW_THREADS ? NN_ROW_THREADS : (int)t;
}

static size_t ce_fsize(int32_t dt) { return dt == TIDE_F64 ? 8 : dt == TIDE_F32 ? 4 : 2; }

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

// lse[n] and the row losses (0 on ignored rows), formed in double, written to rl as out_dt.
template <class T>
__global__ void ce_forward_rows(void *rl, int32_t out_dt, int out_size, typename CeT<T>::A *lse, const T *x,
                                const int64_t *t, int64_t N, int64_t V, int64_t ignore_index) {
  typedef typename CeT<T>::A A;
  typedef CeVec<T> Vec;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T *xr = x + n * V;
    const int64_t head = ce_head(xr, V, 1), nvec = (V - head) / Vec::W, tail = head + nvec * Vec::W;
    const Vec *xv = reinterpret_cast<const Vec *>(xr + head);
    A m = A(-INFINITY), s = A(0);
    for (int64_t v = threadIdx.x; v < head; v += blockDim.x) {
      const A a[1] = {CeT<T>::ld(xr[v])};
      ce_fold<CeT<T> >(m, s, a);
    }
    // two vectors in flight per thread, then the odd one
    int64_t i = threadIdx.x;
    for (; i + blockDim.x < nvec; i += 2 * (int64_t)blockDim.x) {
      const Vec c0 = xv[i], c1 = xv[i + blockDim.x];
      A a[Vec::W];
CE_UNROLL
      for (int k = 0; k < Vec::W; k++) a[k] = CeT<T>::ld(c0.v[k]);
      ce_fold<CeT<T> >(m, s, a);
CE_UNROLL
      for (int k = 0; k < Vec::W; k++) a[k] = CeT<T>::ld(c1.v[k]);
      ce_fold<CeT<T> >(m, s, a);
    }
    if (i < nvec) {
      const Vec c0 = xv[i];
      A a[Vec::W];
CE_UNROLL
      for (int k = 0; k < Vec::W; k++) a[k] = CeT<T>::ld(c0.v[k]);
      ce_fold<CeT<T> >(m, s, a);
    }
    for (int64_t v = tail + threadIdx.x; v < V; v += blockDim.x) {
      const A a[1] = {CeT<T>::ld(xr[v])};
      ce_fold<CeT<T> >(m, s, a);
    }
    ce_block_merge<CeT<T> >(m, s);
    if (threadIdx.x == 0) {
      const double l = (double)m + log((double)s);
      const int64_t tn = t[n];
      lse[n] = (A)l;
      // a target out of range (the op layer has checked them) gives NaN rather than a stray read
      const double r = tn == ignore_index ? 0.0 : tn >= 0 && tn < V ? l - (double)CeT<T>::ld(xr[tn]) : (double)NAN;
      tide_store_f64((char *)rl + n * out_size, out_dt, r);
    }
  }
}

// *loss (loss_dt) = the sum of the row losses, or their mean over the rows not ignored (NaN if none), in double
// in a fixed tree.
__global__ void ce_reduce(void *loss, int32_t loss_dt, const double *rl, const int64_t *t, int64_t N,
                          int64_t ignore_index, int mean) {
  double s = 0;
  long long c = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    s += rl[n];
    c += t[n] != ignore_index;
  }
  s = nn_block_sum(s);
  c = nn_block_sum(c);  // integers: exact in any order
  if (threadIdx.x == 0) tide_store_f64((char *)loss, loss_dt, mean ? (c ? s / (double)c : (double)NAN) : s);
}

template <class T>
static int ce_forward_run(void *loss, int32_t loss_dt, typename CeT<T>::A *lse, const T *x, const int64_t *t,
                          int64_t N, int64_t V, int64_t ignore_index, int32_t reduction) {
  const char *op = "cross_entropy";
  const int none = reduction == TIDE_REDUCE_NONE;
  double *rl = NULL;
  const size_t bytes = (size_t)(N ? N : 1) * sizeof(double);
  if (!none && !(rl = (double *)tide_cuda_scratch(bytes))) return -1;
  int rc = 0;
  if (N > 0) {
    LAUNCH(ce_forward_rows<T>, nn_row_blocks(N), row_threads(V, CeVec<T>::W), 0, TIDE_CUDA_STREAM,
           none ? loss : (void *)rl, none ? loss_dt : (int32_t)TIDE_F64, none ? (int)ce_fsize(loss_dt) : 8, lse, x, t,
           N, V, ignore_index);
    rc = tide_cuda_after_launch(op);
  }
  if (!rc && !none) {
    LAUNCH(ce_reduce, 1, 1024, 0, TIDE_CUDA_STREAM, loss, loss_dt, (const double *)rl, t, N, ignore_index,
           reduction == TIDE_REDUCE_MEAN);
    rc = tide_cuda_after_launch(op);
  }
  if (!none) tide_cuda_scratch_free(rl, bytes);
  return rc;
}

static int cross_entropy_forward(void *loss, int32_t loss_dt, void *lse, const void *logits, const int64_t *targets,
                                 int64_t N, int64_t V, int64_t ignore_index, int32_t reduction, int32_t dtype) {
  if (!tide_is_float(loss_dt))
    return tide_fail("cross_entropy: the loss must be a float dtype, got %s", tide_dtype_name(loss_dt));
  if (dtype == TIDE_F32)
    return ce_forward_run(loss, loss_dt, (float *)lse, (const float *)logits, targets, N, V, ignore_index, reduction);
  if (dtype == TIDE_F64)
    return ce_forward_run(loss, loss_dt, (double *)lse, (const double *)logits, targets, N, V, ignore_index,
                          reduction);
  if (dtype == TIDE_BF16)
    return ce_forward_run(loss, loss_dt, (float *)lse, (const uint16_t *)logits, targets, N, V, ignore_index,
                          reduction);
  return tide_fail("cross_entropy: the CUDA kernel takes f32, f64 or bf16 logits, got %s", tide_dtype_name(dtype));
}

// *scale = dloss[0] / (rows not ignored), 0 when every row is (then it is never used)
__global__ void ce_mean_scale(double *scale, const int64_t *t, const void *dloss, int32_t ddt, int64_t N,
                              int64_t ignore_index) {
  long long c = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) c += t[i] != ignore_index;
  c = nn_block_sum(c);  // integers: exact in any order
  if (threadIdx.x == 0) *scale = c ? tide_load_f64((const char *)dloss, ddt) / (double)c : 0.0;
}

// One element of the gradient: scale * (p - [v == t]), p - 1 formed before scaling (no cancellation when
// p is close to 1).
template <class E, class A> __device__ __forceinline__ A ce_grad(A x, A l, A sc, bool target) {
  const A e = E::ex(x - l);
  return target ? (e - A(1)) * sc : e * sc;
}

// dx_n = scale_n * (exp(x_n - lse_n) - onehot(t_n)), 0 on ignored rows, NaN on rows whose target is out of
// range; scale_n = dloss[n] (none), *mean_scale (mean) or dloss[0] (sum). vec: x and dx have the same
// offset from a 16-byte boundary, so their rows go in vectors together.
template <class T>
__global__ void ce_backward_rows(T *dx, const T *x, const int64_t *t, const typename CeT<T>::A *lse,
                                 const void *dloss, int32_t ddt, int dsize, const double *mean_scale, int64_t N,
                                 int64_t V, int64_t ignore_index, int none, int vec) {
  typedef typename CeT<T>::A A;
  typedef CeVec<T> Vec;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    T *o = dx + n * V;
    const T *xr = x + n * V;
    const int64_t tn = t[n];
    const int64_t head = ce_head(xr, V, vec), nvec = (V - head) / Vec::W, tail = head + nvec * Vec::W;
    if (tn == ignore_index) {
      for (int64_t v = threadIdx.x; v < head; v += blockDim.x) o[v] = CeT<T>::st(A(0));
      Vec z;
CE_UNROLL
      for (int k = 0; k < Vec::W; k++) z.v[k] = CeT<T>::st(A(0));
      for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) reinterpret_cast<Vec *>(o + head)[i] = z;
      for (int64_t v = tail + threadIdx.x; v < V; v += blockDim.x) o[v] = CeT<T>::st(A(0));
      continue;
    }
    const double scd = none ? tide_load_f64((const char *)dloss + n * dsize, ddt)
                            : mean_scale ? *mean_scale : tide_load_f64((const char *)dloss, ddt);
    // a target out of range (never checked again after the forward) makes the row NaN, reading nothing stray
    const A l = tn >= 0 && tn < V ? lse[n] : A(NAN), sc = (A)scd;
    for (int64_t v = threadIdx.x; v < head; v += blockDim.x) o[v] = CeT<T>::st(ce_grad<CeT<T> >(CeT<T>::ld(xr[v]), l, sc, v == tn));
    const Vec *xv = reinterpret_cast<const Vec *>(xr + head);
    Vec *ov = reinterpret_cast<Vec *>(o + head);
    for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
      const Vec c = xv[i];
      Vec r;
      // the target's place in this vector, or -1: 32-bit compares in the unrolled loop
      const int64_t rel = tn - (head + i * Vec::W);
      const int kt = rel >= 0 && rel < Vec::W ? (int)rel : -1;
CE_UNROLL
      for (int k = 0; k < Vec::W; k++) r.v[k] = CeT<T>::st(ce_grad<CeT<T> >(CeT<T>::ld(c.v[k]), l, sc, k == kt));
      ov[i] = r;
    }
    for (int64_t v = tail + threadIdx.x; v < V; v += blockDim.x) o[v] = CeT<T>::st(ce_grad<CeT<T> >(CeT<T>::ld(xr[v]), l, sc, v == tn));
  }
}

template <class T>
static int ce_backward_run(T *dx, const T *x, const int64_t *t, const typename CeT<T>::A *lse, const void *dloss,
                           int32_t ddt, int64_t N, int64_t V, int64_t ignore_index, int32_t reduction) {
  const char *op = "cross_entropy_backward";
  if (N == 0 || V == 0) return 0;
  double *sc = NULL;
  if (reduction == TIDE_REDUCE_MEAN) {
    if (!(sc = (double *)tide_cuda_scratch(sizeof(double)))) return -1;
    LAUNCH(ce_mean_scale, 1, 1024, 0, TIDE_CUDA_STREAM, sc, t, dloss, ddt, N, ignore_index);
    if (tide_cuda_after_launch(op)) {
      tide_cuda_scratch_free(sc, sizeof(double));
      return -1;
    }
  }
  const int vec = (uintptr_t)x % 16 == (uintptr_t)dx % 16;
  LAUNCH(ce_backward_rows<T>, nn_row_blocks(N), row_threads(V, CeVec<T>::W), 0, TIDE_CUDA_STREAM, dx, x, t, lse,
         dloss, ddt, (int)ce_fsize(ddt), (const double *)sc, N, V, ignore_index, reduction == TIDE_REDUCE_NONE, vec);
  int rc = tide_cuda_after_launch(op);
  if (sc) tide_cuda_scratch_free(sc, sizeof(double));
  return rc;
}

static int cross_entropy_backward(void *dlogits, const void *logits, const int64_t *targets, const void *lse,
                                  const void *dloss, int32_t dloss_dt, int64_t N, int64_t V, int64_t ignore_index,
                                  int32_t reduction, int32_t dtype) {
  if (!tide_is_float(dloss_dt))
    return tide_fail("cross_entropy_backward: dloss must be a float dtype, got %s", tide_dtype_name(dloss_dt));
  if (dtype == TIDE_F32)
    return ce_backward_run((float *)dlogits, (const float *)logits, targets, (const float *)lse, dloss, dloss_dt, N, V,
                           ignore_index, reduction);
  if (dtype == TIDE_F64)
    return ce_backward_run((double *)dlogits, (const double *)logits, targets, (const double *)lse, dloss, dloss_dt,
                           N, V, ignore_index, reduction);
  if (dtype == TIDE_BF16)
    return ce_backward_run((uint16_t *)dlogits, (const uint16_t *)logits, targets, (const float *)lse, dloss,
                           dloss_dt, N, V, ignore_index, reduction);
  return tide_fail("cross_entropy_backward: the CUDA kernel takes f32, f64 or bf16 logits, got %s",
                   tide_dtype_name(dtype));
}

extern "C" const struct tide_loss_kernels tide_cuda_loss = {1, 0, cross_entropy_check_targets, cross_entropy_forward,
                                                            cross_entropy_backward};
