// The adamw family on CUDA (kernels/adamw.h): the fused AdamW step, per
// tensor and over many tensors at once (with the bf16 shadows written in the
// same pass), the 2-norm of gradient clipping, per tensor and over many, and
// clipping's scaling with the factor computed on the device.
//
// adamw_step replays kernels/cpu/adamw.c's per-element arithmetic operation
// by operation (torch's single-tensor AdamW: see the comment there), with the
// same double scalars rounded once to the dtype, the same fused
// multiply-adds and nothing else fused: every other product and sum is an
// explicit round-to-nearest intrinsic under nvcc, so contraction cannot move
// a result. Division and sqrt are IEEE (nvcc's default -prec-div and
// -prec-sqrt), so results equal the CPU's bit for bit.
//
// norm2 is a deterministic two-pass tree reduction: a fixed number of blocks
// (a function of n alone) each sum the squares of a grid-stride share in
// double, reduce in a fixed tree, then one block adds the partials the same
// way and rounds sqrt to the dtype. The result is the same bits on every run;
// it agrees with the CPU's torch-ordered f32 sum to rounding (1e-6 relative),
// not bit for bit.
#include "common.cuh"
extern "C" {
#include "adamw.h"
#include "dtype.h"
}
#include <math.h>

// Unfused, correctly rounded products and sums (nvcc would otherwise contract a*b + c).
__device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__device__ __forceinline__ double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
__device__ __forceinline__ float fma_t(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_t(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float sqrt_t(float a) { return sqrtf(a); }
__device__ __forceinline__ double sqrt_t(double a) { return sqrt(a); }

// ---- adamw_step -----------------------------------------------------------------------------

// The step's scalars, already rounded to T (see adamw_step).
template <class T> struct adamw_scalars {
  T decay, w, beta2, c2, bc2s, eps, nss;
  int small;
};

// operands of g: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq (element strides); CONTIG: all four
// contiguous, indexed directly (the usual case, spared the strided offsets' divisions)
// One element of the step (p, m, v updated in place from g): the single and the multi-tensor
// kernels share it, so both give the CPU's bits.
template <class T>
__device__ __forceinline__ void adamw_elem(T &p, T gv, T &m, T &v, const adamw_scalars<T> &k) {
  T mv = m;
  T pv = mul_rn(p, k.decay);
  T d = sub_rn(gv, mv);
  mv = k.small ? fma_t(k.w, d, mv) : fma_t(sub_rn(k.w, (T)1), d, gv);
  T vv = mul_rn(v, k.beta2);
  vv = fma_t(mul_rn(k.c2, gv), gv, vv);
  T den = add_rn(sqrt_t(vv) / k.bc2s, k.eps);
  p = add_rn(pv, mul_rn(k.nss, mv) / den);
  m = mv;
  v = vv;
}

template <class T, bool CONTIG>
__global__ void adamw_kernel(T *P, const T *G, T *M, T *V, tide_cuda_strided<4> g, int64_t n, adamw_scalars<T> k) {
  TIDE_CUDA_FOR(i, n) {
    T *p = P + (CONTIG ? i : g.offset(0, i)), *m = M + (CONTIG ? i : g.offset(2, i)), *v = V + (CONTIG ? i : g.offset(3, i));
    adamw_elem(*p, G[CONTIG ? i : g.offset(1, i)], *m, *v, k);
  }
}

template <class T>
static int launch_adamw(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, const tide_cuda_strided<4> &g,
                        int64_t n, double decay, double w, double beta2, double c2, double bc2s, double eps, double nss) {
  adamw_scalars<T> k;
  k.decay = (T)decay, k.w = (T)w, k.beta2 = (T)beta2, k.c2 = (T)c2, k.bc2s = (T)bc2s, k.eps = (T)eps, k.nss = (T)nss;
  // torch decides the lerp formula on the weight in the tensor's dtype
  k.small = (k.w < 0 ? -k.w : k.w) < (T)0.5;
  bool contig = true;
  for (int op = 0; op < 4; op++) {
    int64_t s = 1;
    for (int d = g.ndim - 1; d >= 0; d--) {
      if (g.shape[d] != 1 && g.stride[op][d] != s) contig = false;
      s *= g.shape[d];
    }
  }
  void (*kernel)(T *, const T *, T *, T *, tide_cuda_strided<4>, int64_t, adamw_scalars<T>) =
      contig ? adamw_kernel<T, true> : adamw_kernel<T, false>;
  TIDE_CUDA_LAUNCH("adamw_step_", kernel, tide_cuda_blocks(n), TIDE_CUDA_THREADS, 0, (T *)param, (const T *)grad,
                   (T *)exp_avg, (T *)exp_avg_sq, g, n, k);
  return 0;
}

static int adamw_step(void *param, const void *grad, void *exp_avg, void *exp_avg_sq, int32_t dtype, int32_t ndim,
                      const int64_t *shape, const int64_t *param_stride, const int64_t *grad_stride,
                      const int64_t *exp_avg_stride, const int64_t *exp_avg_sq_stride, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int64_t step) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64)
    return tide_fail("adamw_step_: the CUDA kernel takes f32 or f64, got %s", tide_dtype_name(dtype));
  tide_cuda_strided<4> g;
  const int64_t *st[4] = {param_stride, grad_stride, exp_avg_stride, exp_avg_sq_stride};
  int64_t n = tide_cuda_strided_init(&g, ndim, shape, st);
  if (n == 0) return 0;
  // the Python-side scalars of torch's _single_tensor_adamw, in double (as kernels/cpu/adamw.c)
  double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
  double decay = 1.0 - lr * weight_decay, w = 1.0 - beta1, c2 = 1.0 - beta2, bc2s = sqrt(bc2), nss = -(lr / bc1);
  if (dtype == TIDE_F32)
    return launch_adamw<float>(param, grad, exp_avg, exp_avg_sq, g, n, decay, w, beta2, c2, bc2s, eps, nss);
  return launch_adamw<double>(param, grad, exp_avg, exp_avg_sq, g, n, decay, w, beta2, c2, bc2s, eps, nss);
}

// ---- norm2 ----------------------------------------------------------------------------------

enum { NORM_THREADS = 256, NORM_MAX_BLOCKS = 1024 };

// Block-wide sum of each thread's v in a fixed tree; the total is returned to thread 0.
__device__ double block_sum(double v) {
  __shared__ double buf[NORM_THREADS];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = NORM_THREADS / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + s];
    __syncthreads();
  }
  double r = buf[0];
  __syncthreads();  // buf may be reused by the caller's next call
  return r;
}

// partial[b] = the sum of squares of block b's grid-stride share, in double
template <class T> __global__ void norm2_partial(double *partial, const T *x, int64_t n) {
  double acc = 0;
  TIDE_CUDA_FOR(i, n) {
    double v = (double)x[i];
    acc = fma(v, v, acc);
  }
  double s = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// *out = sqrt of the sum of the nb partials, rounded to T
template <class T> __global__ void norm2_final(T *out, const double *partial, int nb) {
  double acc = 0;
  for (int b = threadIdx.x; b < nb; b += NORM_THREADS) acc = acc + partial[b];
  double s = block_sum(acc);
  if (threadIdx.x == 0) *out = (T)sqrt(s);
}

template <class T> static int launch_norm2(void *out, const void *x, int64_t n) {
  int64_t nb = (n + NORM_THREADS * 4 - 1) / (NORM_THREADS * 4);  // a function of n only: same bits everywhere
  if (nb < 1) nb = 1;
  if (nb > NORM_MAX_BLOCKS) nb = NORM_MAX_BLOCKS;
  double *partial = (double *)tide_cuda_scratch((size_t)nb * sizeof(double));
  if (!partial) return -1;
  int rc = 0;
  LAUNCH(norm2_partial<T>, (unsigned)nb, NORM_THREADS, 0, TIDE_CUDA_STREAM, partial, (const T *)x, n);
  rc = tide_cuda_after_launch("multi_norm");
  if (rc == 0) {
    LAUNCH(norm2_final<T>, 1, NORM_THREADS, 0, TIDE_CUDA_STREAM, (T *)out, (const double *)partial, (int)nb);
    rc = tide_cuda_after_launch("multi_norm");
  }
  // freed in stream order: a later user of the block runs after these kernels
  tide_cuda_scratch_free(partial, (size_t)nb * sizeof(double));
  return rc;
}

static int norm2(void *out, const void *x, int64_t n, int32_t dtype) {
  if (dtype == TIDE_F32) return launch_norm2<float>(out, x, n);
  if (dtype == TIDE_F64) return launch_norm2<double>(out, x, n);
  return tide_fail("multi_norm: the CUDA 2-norm takes f32 or f64, got %s", tide_dtype_name(dtype));
}

// ---- multi-tensor kernels: the tables ------------------------------------------------------
//
// The multi-tensor kernels take their tensors' descriptors (pointers, sizes, per-tensor scalars)
// as a kernel argument, a fixed-size table of at most 4 KB, not as a device buffer: filling a
// device buffer from pageable host memory (cudaMemcpy) waits for the stream's earlier work, a
// host round trip per call, whereas kernel arguments travel with the launch. A call over more
// tensors than a table holds launches once per table (GPT-2 124M's 148 parameters in its two
// weight-decay groups of 50 and 98: 3 AdamW launches; the norm 2, the clipping 1). Each tensor is cut into chunks of a fixed
// number of elements, numbered across the table's tensors; a block takes chunks c = blockIdx.x,
// + gridDim.x, ... and finds its tensor by binary search over the tensors' first chunks. No
// element is written by two threads, and no sum depends on the grid size: the same bits on
// every run.

// The last entry i of d[0..n) with d[i].chunk0 <= c (chunk0 ascending; entries with no chunks
// share their successor's chunk0 and are passed over).
template <class D> __device__ __forceinline__ int find_entry(const D *d, int n, int64_t c) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (d[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// At most this many blocks walk a table's chunks (grid-stride beyond).
enum { MULTI_THREADS = 256, MULTI_MAX_BLOCKS = 65535 * 8 };
static unsigned multi_grid(int64_t nchunks) { return (unsigned)(nchunks < (int64_t)MULTI_MAX_BLOCKS ? nchunks : (int64_t)MULTI_MAX_BLOCKS); }

// ---- adamw_multi_step ----------------------------------------------------------------------

// elements per chunk (a multiple of 4); tensors per launch (GPT-2's decayed group is 50 tensors)
enum { ADAMW_CHUNK = 4096, ADAMW_TABLE = 50 };

template <class T> struct adamw_desc {
  T *p;
  const T *g;
  T *m, *v;
  uint16_t *shadow;  // bf16 copy of p, or NULL
  int64_t n;
  int32_t chunk0;    // the entry's first chunk within the table
  int32_t vec;       // p, g, m, v aligned to 4 elements and shadow to 8 bytes: 4 elements per access
  T bc2s, nss;       // the step-dependent scalars, rounded to T as the CPU rounds them
};
template <class T> struct adamw_table {
  adamw_desc<T> d[ADAMW_TABLE];
};

// A launch's arguments stay within the 4 KB every CUDA version and architecture accepts.
static_assert(sizeof(adamw_table<double>) + sizeof(adamw_scalars<double>) + 64 <= 4096, "adamw table too large");

template <class T> struct alignas(4 * sizeof(T)) pack4 { T a[4]; };
struct alignas(8) pack4_bf16 { uint16_t a[4]; };

__device__ __forceinline__ uint16_t shadow_of(float p) { return tide_f32_to_bf16(p); }
__device__ __forceinline__ uint16_t shadow_of(double p) { return tide_f32_to_bf16((float)p); }

template <class T>
__global__ void adamw_multi_kernel(adamw_table<T> t, int nt, int64_t nchunks, adamw_scalars<T> k0) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const adamw_desc<T> &d = t.d[find_entry(t.d, nt, c)];
    adamw_scalars<T> k = k0;
    k.bc2s = d.bc2s;
    k.nss = d.nss;
    int64_t lo = (c - d.chunk0) * (int64_t)ADAMW_CHUNK, hi = lo + ADAMW_CHUNK;
    if (hi > d.n) hi = d.n;
    int64_t i = lo + threadIdx.x;
    if (d.vec) {
      // four elements a thread at a time (128-bit f32 accesses), then the last chunk's < 4 left
      int64_t end4 = lo + ((hi - lo) & ~(int64_t)3);
      for (int64_t j = lo + 4 * (int64_t)threadIdx.x; j < end4; j += 4 * (int64_t)blockDim.x) {
        pack4<T> p = *(pack4<T> *)(d.p + j), g = *(const pack4<T> *)(d.g + j);
        pack4<T> m = *(pack4<T> *)(d.m + j), v = *(pack4<T> *)(d.v + j);
        for (int e = 0; e < 4; e++) adamw_elem(p.a[e], g.a[e], m.a[e], v.a[e], k);
        *(pack4<T> *)(d.p + j) = p;
        *(pack4<T> *)(d.m + j) = m;
        *(pack4<T> *)(d.v + j) = v;
        if (d.shadow) {
          pack4_bf16 h;
          for (int e = 0; e < 4; e++) h.a[e] = shadow_of(p.a[e]);
          *(pack4_bf16 *)(d.shadow + j) = h;
        }
      }
      i = end4 + threadIdx.x;
    }
    for (; i < hi; i += blockDim.x) {
      T p = d.p[i], m = d.m[i], v = d.v[i];
      adamw_elem(p, d.g[i], m, v, k);
      d.p[i] = p;
      d.m[i] = m;
      d.v[i] = v;
      if (d.shadow) d.shadow[i] = shadow_of(p);
    }
  }
}

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

template <class T>
static int launch_adamw_multi(int32_t n, const tide_adamw_entry *e, double lr, double beta1, double beta2, double eps,
                              double weight_decay) {
  adamw_scalars<T> k;
  double w = 1.0 - beta1;
  k.decay = (T)(1.0 - lr * weight_decay), k.w = (T)w, k.beta2 = (T)beta2, k.c2 = (T)(1.0 - beta2), k.eps = (T)eps;
  k.bc2s = 0, k.nss = 0;  // per tensor, from the table
  k.small = (k.w < 0 ? -k.w : k.w) < (T)0.5;
  adamw_table<T> t;
  int nt = 0;
  int64_t nchunks = 0;
  for (int32_t i = 0; i <= n; i++) {
    // a full table, or the last tensor: launch what the table holds
    if (nt == ADAMW_TABLE || (i == n && nt > 0)) {
      unsigned grid = multi_grid(nchunks);
      TIDE_CUDA_LAUNCH("adamw_multi_step_", adamw_multi_kernel<T>, grid, MULTI_THREADS, 0, t, nt, nchunks, k);
      nt = 0;
      nchunks = 0;
    }
    if (i == n || e[i].numel == 0) continue;
    adamw_desc<T> &d = t.d[nt++];
    d.p = (T *)e[i].param, d.g = (const T *)e[i].grad, d.m = (T *)e[i].exp_avg, d.v = (T *)e[i].exp_avg_sq;
    d.shadow = (uint16_t *)e[i].shadow;
    d.n = e[i].numel;
    d.chunk0 = (int32_t)nchunks;
    size_t a = 4 * sizeof(T);
    d.vec = aligned(d.p, a) && aligned(d.g, a) && aligned(d.m, a) && aligned(d.v, a) && aligned(d.shadow, 8);
    // the Python-side scalars of torch's _single_tensor_adamw, in double (as kernels/cpu/adamw.c)
    double bc1 = 1.0 - pow(beta1, (double)e[i].step), bc2 = 1.0 - pow(beta2, (double)e[i].step);
    d.bc2s = (T)sqrt(bc2);
    d.nss = (T)(-(lr / bc1));
    nchunks += (d.n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
    if (nchunks > INT32_MAX - ADAMW_CHUNK) return tide_fail("adamw_multi_step_: a tensor of %lld elements is too large", (long long)d.n);
  }
  return 0;
}

static int adamw_multi_step(int32_t n, const tide_adamw_entry *e, int32_t dtype, double lr, double beta1, double beta2,
                            double eps, double weight_decay) {
  if (dtype == TIDE_F32) return launch_adamw_multi<float>(n, e, lr, beta1, beta2, eps, weight_decay);
  if (dtype == TIDE_F64) return launch_adamw_multi<double>(n, e, lr, beta1, beta2, eps, weight_decay);
  return tide_fail("adamw_multi_step_: the CUDA kernel takes f32 or f64, got %s", tide_dtype_name(dtype));
}

// ---- multi_norm2 -------------------------------------------------------------------------------
//
// Two kernels per table: norm_chunks writes the sum of squares (double) of every chunk of the
// table's tensors into partial[]; norm_finish (one block) adds each tensor's chunk sums in a
// fixed order, takes the square root rounded to the tensor's dtype (its norm, as the per-tensor
// path rounds it) into norms[], and, after the last table, the total: the square root of the sum
// of the squared norms, rounded to the total's dtype.

enum { NORM_CHUNK = 8192, NORM_TABLE = 160 };

struct norm_desc {
  const void *x;
  int64_t n;
  int32_t chunk0;  // first chunk within the table
  int32_t f64;     // 1: f64 elements and an f64 norm; 0: f32
};
struct norm_table {
  norm_desc d[NORM_TABLE];
};

static_assert(sizeof(norm_table) + 64 <= 4096, "norm table too large");

__global__ void norm_chunks(norm_table t, int nt, int64_t nchunks, double *partial) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const norm_desc &d = t.d[find_entry(t.d, nt, c)];
    int64_t lo = (c - d.chunk0) * (int64_t)NORM_CHUNK, hi = lo + NORM_CHUNK;
    if (hi > d.n) hi = d.n;
    double acc = 0;
    if (d.f64) {
      const double *x = (const double *)d.x;
      for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) acc = fma(x[i], x[i], acc);
    } else {
      const float *x = (const float *)d.x;
      for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double v = (double)x[i];
        acc = fma(v, v, acc);
      }
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[c] = s;
  }
}

// One block of NORM_THREADS: warp w finishes the table's tensors w, w + 8, ... into
// norms[first + w], ...; the last table's launch also writes the total of norms[0, ntotal).
template <class TO>
__global__ void norm_finish(norm_table t, int nt, const double *partial, double *norms, int first, int ntotal, int last,
                            TO *out) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int i = warp; i < nt; i += NORM_THREADS / 32) {
    const norm_desc &d = t.d[i];
    int64_t nc = (d.n + NORM_CHUNK - 1) / NORM_CHUNK;
    double acc = 0;
    for (int64_t j = lane; j < nc; j += 32) acc = acc + partial[d.chunk0 + j];
    double s = sqrt(tide_warp_sum(acc));
    if (lane == 0) norms[first + i] = d.f64 ? s : (double)(float)s;
  }
  if (!last) return;
  __syncthreads();  // the norms of this table are in memory (earlier tables' by earlier launches)
  double acc = 0;
  for (int i = threadIdx.x; i < ntotal; i += NORM_THREADS) acc = fma(norms[i], norms[i], acc);
  double s = block_sum(acc);
  if (threadIdx.x == 0) *out = (TO)sqrt(s);
}

template <class TO>
static int launch_multi_norm2(TO *out, int32_t n, const void *const *xs, const int64_t *ns, const int32_t *dts) {
  int64_t total_chunks = 0;
  for (int32_t i = 0; i < n; i++) total_chunks += (ns[i] + NORM_CHUNK - 1) / NORM_CHUNK;
  size_t pbytes = (size_t)(total_chunks > 0 ? total_chunks : 1) * sizeof(double);
  size_t nbytes = (size_t)(n > 0 ? n : 1) * sizeof(double);
  double *partial = (double *)tide_cuda_scratch(pbytes);
  if (!partial) return -1;
  double *norms = (double *)tide_cuda_scratch(nbytes);
  if (!norms) {
    tide_cuda_scratch_free(partial, pbytes);
    return -1;
  }
  int rc = 0;
  norm_table t;
  int32_t first = 0;  // the table's first tensor
  int64_t pbase = 0;  // its first chunk in partial[]
  while (rc == 0) {
    int nt = 0;
    int64_t nchunks = 0;
    for (; nt < NORM_TABLE && first + nt < n; nt++) {
      int32_t i = first + nt;
      t.d[nt].x = xs[i], t.d[nt].n = ns[i], t.d[nt].chunk0 = (int32_t)nchunks, t.d[nt].f64 = dts[i] == TIDE_F64;
      nchunks += (ns[i] + NORM_CHUNK - 1) / NORM_CHUNK;
    }
    int last = first + nt >= n;
    if (nchunks > 0) {
      unsigned grid = multi_grid(nchunks);
      LAUNCH(norm_chunks, grid, NORM_THREADS, 0, TIDE_CUDA_STREAM, t, nt, nchunks, partial + pbase);
      rc = tide_cuda_after_launch("multi_norm");
      if (rc) break;
    }
    LAUNCH(norm_finish<TO>, 1, NORM_THREADS, 0, TIDE_CUDA_STREAM, t, nt, (const double *)(partial + pbase),
           norms, (int)first, (int)n, last, out);
    rc = tide_cuda_after_launch("multi_norm");
    if (last) break;
    first += nt;
    pbase += nchunks;
  }
  // freed in stream order: a later user of the blocks runs after these kernels
  tide_cuda_scratch_free(norms, nbytes);
  tide_cuda_scratch_free(partial, pbytes);
  return rc;
}

static int multi_norm2(void *out, int32_t odt, int32_t n, const void *const *xs, const int64_t *ns, const int32_t *dts) {
  for (int32_t i = 0; i < n; i++)
    if (dts[i] != TIDE_F32 && (dts[i] != TIDE_F64 || odt != TIDE_F64))
      return tide_fail("multi_norm: tensor %d has dtype %s; the CUDA 2-norm takes f32 (or f64 with an f64 total)",
                       i + 1, tide_dtype_name(dts[i]));
  if (odt == TIDE_F32) return launch_multi_norm2<float>((float *)out, n, xs, ns, dts);
  if (odt == TIDE_F64) return launch_multi_norm2<double>((double *)out, n, xs, ns, dts);
  return tide_fail("multi_norm: the total's dtype must be f32 or f64, got %s", tide_dtype_name(odt));
}

// ---- clip_scale ----------------------------------------------------------------------------------

enum { CLIP_CHUNK = 8192, CLIP_TABLE = 160 };

struct clip_desc {
  void *x;
  int64_t n;
  int32_t chunk0;
  int32_t dtype;
};
struct clip_table {
  clip_desc d[CLIP_TABLE];
};

static_assert(sizeof(clip_table) + 64 <= 4096, "clip table too large");

// torch's clip coefficient from the total on the device (the arithmetic of kernels/cpu/adamw.c's clip_scale)
__device__ __forceinline__ double clip_coef(const void *total, int32_t tdt, double max_norm) {
  double c;
  if (tdt == TIDE_F32) {
    float den = add_rn(*(const float *)total, (float)1e-6);
    float r = 1.0f / den;
    c = mul_rn(r, (float)max_norm);
  } else {
    c = mul_rn(1.0 / add_rn(*(const double *)total, 1e-6), max_norm);
  }
  return c > 1 ? 1.0 : c;  // clamp(max=1) keeps NaN
}

__global__ void clip_kernel(clip_table t, int nt, int64_t nchunks, const void *total, int32_t tdt, double max_norm) {
  const double cd = clip_coef(total, tdt, max_norm);
  const float cf = (float)cd;
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const clip_desc &d = t.d[find_entry(t.d, nt, c)];
    int64_t lo = (c - d.chunk0) * (int64_t)CLIP_CHUNK, hi = lo + CLIP_CHUNK;
    if (hi > d.n) hi = d.n;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      switch (d.dtype) {
        case TIDE_F32: ((float *)d.x)[i] = mul_rn(((float *)d.x)[i], cf); break;
        case TIDE_F64: ((double *)d.x)[i] = mul_rn(((double *)d.x)[i], cd); break;
        case TIDE_BF16: {
          uint16_t *x = (uint16_t *)d.x + i;
          *x = tide_f32_to_bf16(mul_rn(tide_bf16_to_f32(*x), cf));
          break;
        }
        default: {
          uint16_t *x = (uint16_t *)d.x + i;
          *x = tide_f32_to_f16(mul_rn(tide_f16_to_f32(*x), cf));
          break;
        }
      }
    }
  }
}

static int clip_scale(int32_t n, void *const *xs, const int64_t *ns, const int32_t *dts, const void *total,
                      int32_t tdt, double max_norm) {
  if (tdt != TIDE_F32 && tdt != TIDE_F64)
    return tide_fail("clip_grads_: the total norm must be f32 or f64, got %s", tide_dtype_name(tdt));
  for (int32_t i = 0; i < n; i++)
    if (!tide_is_float(dts[i]))
      return tide_fail("clip_grads_: tensor %d has dtype %s; expected a floating-point dtype", i + 1, tide_dtype_name(dts[i]));
  clip_table t;
  int nt = 0;
  int64_t nchunks = 0;
  for (int32_t i = 0; i <= n; i++) {
    if (nt == CLIP_TABLE || (i == n && nt > 0)) {
      unsigned grid = multi_grid(nchunks);
      TIDE_CUDA_LAUNCH("clip_grads_", clip_kernel, grid, MULTI_THREADS, 0, t, nt, nchunks, total, tdt, max_norm);
      nt = 0;
      nchunks = 0;
    }
    if (i == n || ns[i] == 0) continue;
    clip_desc &d = t.d[nt++];
    d.x = xs[i], d.n = ns[i], d.chunk0 = (int32_t)nchunks, d.dtype = dts[i];
    nchunks += (ns[i] + CLIP_CHUNK - 1) / CLIP_CHUNK;
  }
  return 0;
}

extern "C" const struct tide_adamw_kernels tide_cuda_adamw = {adamw_step, norm2, adamw_multi_step, multi_norm2, clip_scale};
