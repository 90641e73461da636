// The norm family on CUDA (kernels/nn_norm.h): layer norm over the last
// dimension, forward and backward, and the residual add fused with it (at
// the end of the file). The first two members, for f64 and mixed dtypes,
// follow the CPU backend's arithmetic
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

// residual add + layer norm, in the storage dtype ----------------------------------------------
// The residual members (and, through them, layer_norm of the f32 family on a device) read and write
// f32, bf16, f16 or f64 as they are: no conversion copies. One warp per row: a row of GPT-2 (768 to
// 1600 elements) is 24 to 50 per lane, and a warp reduces with shuffles alone, without barriers.
// Loads and stores are 16 bytes wide (8 bf16, 4 f32, 2 f64 per lane) where C and the pointers allow.
// Statistics accumulate in f64, as the family's contract and the CPU kernels do: the few f64 adds
// per element cost nothing next to the memory traffic; the elementwise work is in f32 (f64 for f64).
// The backward's dweight and dbias: each warp of a block owns a row of per-column partial sums in
// shared memory (its lane owns the columns it touches), the block adds its warps' rows in warp
// order into one partial row per block, and a second kernel adds the blocks' rows in block order:
// the same bits on every run, no atomics.

// fixed-trip loops over a pack are unrolled so the pack stays in registers
#if defined(__CUDACC__)
#define RLN_UNROLL _Pragma("unroll")
#else
#define RLN_UNROLL
#endif

template <int DT> struct ln_elem;  // T: storage, A: arithmetic, S: the saved statistics
template <> struct ln_elem<TIDE_F32> {
  typedef float T, A, S;
  static __device__ __forceinline__ float ld(float v) { return v; }
  static __device__ __forceinline__ float st(float v) { return v; }
};
template <> struct ln_elem<TIDE_F64> {
  typedef double T, A, S;
  static __device__ __forceinline__ double ld(double v) { return v; }
  static __device__ __forceinline__ double st(double v) { return v; }
};
template <> struct ln_elem<TIDE_BF16> {
  typedef uint16_t T;
  typedef float A, S;
  static __device__ __forceinline__ float ld(uint16_t v) { return tide_bf16_to_f32(v); }
  static __device__ __forceinline__ uint16_t st(float v) { return tide_f32_to_bf16(v); }
};
template <> struct ln_elem<TIDE_F16> {
  typedef uint16_t T;
  typedef float A, S;
  static __device__ __forceinline__ float ld(uint16_t v) { return tide_f16_to_f32(v); }
  static __device__ __forceinline__ uint16_t st(float v) { return tide_f32_to_f16(v); }
};

// a + b rounded once (no contraction), as the add op's kernel computes it
__device__ __forceinline__ float ln_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ double ln_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// V elements of T, aligned so that nvcc moves them with one 16-byte instruction (V > 1)
template <class T, int V> struct alignas(sizeof(T) * V) ln_pack { T v[V]; };

template <int DT, int V>
__device__ __forceinline__ void ln_load(typename ln_elem<DT>::A *o, const typename ln_elem<DT>::T *p) {
  ln_pack<typename ln_elem<DT>::T, V> q = *(const ln_pack<typename ln_elem<DT>::T, V> *)p;
RLN_UNROLL
  for (int e = 0; e < V; e++) o[e] = ln_elem<DT>::ld(q.v[e]);
}

template <int DT, int V>
__device__ __forceinline__ void ln_store(typename ln_elem<DT>::T *p, const typename ln_elem<DT>::A *a) {
  ln_pack<typename ln_elem<DT>::T, V> q;
RLN_UNROLL
  for (int e = 0; e < V; e++) q.v[e] = ln_elem<DT>::st(a[e]);
  *(ln_pack<typename ln_elem<DT>::T, V> *)p = q;
}

enum { RLN_FWD_WARPS = 4, RLN_BWD_WARPS = 8, RLN_SMEM = 48 * 1024 };

// Calls f(c, j) for the packs of a row this lane owns: c = (32 j + lane) V, j = 0, 1, ... while c < C. With
// NV > 0 (the launch guarantees C <= 32 V NV) the loop is unrolled, so a pack cache indexed by j stays in
// registers; with NV == 0 it runs as long as the row needs.
template <int V, int NV, class F> __device__ __forceinline__ void rln_packs(int64_t C, int lane, F f) {
  if constexpr (NV > 0) {
RLN_UNROLL
    for (int j = 0; j < NV; j++) {
      const int64_t c = ((int64_t)j * 32 + lane) * V;
      if (c < C) f(c, j);
    }
  } else {
    int j = 0;
    for (int64_t c = (int64_t)lane * V; c < C; c += 32 * V, j++) f(c, j);
  }
}

// s = x + r (r NULL: s NULL, x normalised), y = layer_norm(s); one row per warp. NV > 0: the row is held in
// registers between the passes (NV packs of V per lane); NV == 0: the later passes read it again (from
// L1/L2: this lane wrote or read those bytes in the first pass).
template <int DT, int V, int NV>
__global__ void rln_forward(typename ln_elem<DT>::T *s, typename ln_elem<DT>::T *y, typename ln_elem<DT>::S *mean,
                            typename ln_elem<DT>::S *rstd, const typename ln_elem<DT>::T *x,
                            const typename ln_elem<DT>::T *r, const typename ln_elem<DT>::T *w,
                            const typename ln_elem<DT>::T *b, int64_t rows, int64_t C, double eps) {
  typedef ln_elem<DT> E;
  typedef typename E::T T;
  typedef typename E::A A;
  const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
  A cache[NV > 0 ? NV * V : 1] = {};
  for (int64_t row = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); row < rows; row += (int64_t)gridDim.x * wpb) {
    const T *xr = x + row * C;
    T *sr = s ? s + row * C : nullptr;
    const T *src = r ? sr : xr;  // the row normalised: the rounded sum, as the unfused ops see it
    double sum = 0;
    rln_packs<V, NV>(C, lane, [&](int64_t c, int j) {
      A v[V];
      ln_load<DT, V>(v, xr + c);
      if (r) {
        A q[V];
        ln_load<DT, V>(q, r + row * C + c);
RLN_UNROLL
        for (int e = 0; e < V; e++) v[e] = E::ld(E::st(ln_add(v[e], q[e])));
        ln_store<DT, V>(sr + c, v);
      }
RLN_UNROLL
      for (int e = 0; e < V; e++) {
        sum += (double)v[e];
        if constexpr (NV > 0) cache[j * V + e] = v[e];
      }
    });
    const double mu = tide_warp_sum(sum) / (double)C;  // NaN for C == 0, as the contract says
    // x - mean as (x - mt) - ml: exact or relative to itself when the mean is large against the spread
    const A mt = (A)mu, ml = (A)(mu - (double)mt);
    A ps = 0;
    rln_packs<V, NV>(C, lane, [&](int64_t c, int j) {
      A v[V];
      if constexpr (NV > 0) {
RLN_UNROLL
        for (int e = 0; e < V; e++) v[e] = cache[j * V + e];
      } else {
        ln_load<DT, V>(v, src + c);
      }
RLN_UNROLL
      for (int e = 0; e < V; e++) {
        A d = (v[e] - mt) - ml;
        ps += d * d;
      }
    });
    const double ss = tide_warp_sum((double)ps);
    const double rs = 1.0 / sqrt(ss / (double)C + eps);
    if (lane == 0) {
      mean[row] = (typename E::S)mu;
      rstd[row] = (typename E::S)rs;
    }
    const A rt = (A)rs;
    rln_packs<V, NV>(C, lane, [&](int64_t c, int j) {
      A v[V], wv[V] = {}, bv[V] = {};
      if constexpr (NV > 0) {
RLN_UNROLL
        for (int e = 0; e < V; e++) v[e] = cache[j * V + e];
      } else {
        ln_load<DT, V>(v, src + c);
      }
      if (w) ln_load<DT, V>(wv, w + c);
      if (b) ln_load<DT, V>(bv, b + c);
RLN_UNROLL
      for (int e = 0; e < V; e++) {
        A o = ((v[e] - mt) - ml) * rt;
        if (w) o = o * wv[e];
        if (b) o = o + bv[e];
        v[e] = o;
      }
      ln_store<DT, V>(y + row * C + c, v);
    });
  }
}

// Rows [blockIdx.x * rb, ...) of dx = ds + layer_norm_backward(dy); warp k of the block takes rows k, k + W, ...
// of the block. pw / pb (NULL: unwanted) receive the block's partial sums of dy * xhat and dy, row blockIdx.x
// of [nblk, C] in A. acc_g: the warps' accumulators in global scratch when shared memory is too small.
// NV > 0: dy and s of a row stay in registers for the second pass; NV == 0: it reads them again.
template <int DT, int V, int NV>
__global__ void rln_backward(typename ln_elem<DT>::T *dx, typename ln_elem<DT>::A *pw, typename ln_elem<DT>::A *pb,
                             const typename ln_elem<DT>::T *ds, const typename ln_elem<DT>::T *dy,
                             const typename ln_elem<DT>::T *s, const typename ln_elem<DT>::T *w,
                             const typename ln_elem<DT>::S *mean, const typename ln_elem<DT>::S *rstd, int64_t rows,
                             int64_t C, int64_t rb, typename ln_elem<DT>::A *acc_g) {
  typedef ln_elem<DT> E;
  typedef typename E::T T;
  typedef typename E::A A;
  CUDAEMU_DYNAMIC_SMEM(A, acc_s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const bool part = pw || pb;
  // acc: [2][W][C], dweight's rows then dbias's
  A *acc = acc_g ? acc_g + (size_t)blockIdx.x * 2 * W * C : acc_s;
  A *aw = acc + (size_t)warp * C, *ab = acc + (size_t)(W + warp) * C;
  const int64_t r0 = (int64_t)blockIdx.x * rb, r1 = r0 + rb < rows ? r0 + rb : rows;
  if (part)  // each lane zeroes the columns it accumulates below, so no lane waits for another
    for (int64_t c = (int64_t)lane * V; c < C; c += 32 * V)
      for (int e = 0; e < V; e++) aw[c + e] = ab[c + e] = 0;
  A cg[NV > 0 ? NV * V : 1] = {}, cs[NV > 0 ? NV * V : 1] = {};
  for (int64_t row = r0 + warp; row < r1; row += W) {
    const T *dyr = dy + row * C, *sr = s + row * C;
    const A mt = (A)mean[row], rt = (A)rstd[row];
    A pg = 0, pgx = 0;
    rln_packs<V, NV>(C, lane, [&](int64_t c, int j) {
      A g[V], v[V], wv[V] = {};
      ln_load<DT, V>(g, dyr + c);
      ln_load<DT, V>(v, sr + c);
      if (w) ln_load<DT, V>(wv, w + c);
RLN_UNROLL
      for (int e = 0; e < V; e++) {
        A gg = w ? g[e] * wv[e] : g[e];
        pg += gg;
        pgx += gg * ((v[e] - mt) * rt);
        if constexpr (NV > 0) {
          cg[j * V + e] = g[e];
          cs[j * V + e] = v[e];
        }
      }
    });
    const A a = (A)(tide_warp_sum((double)pg) / (double)C), bb = (A)(tide_warp_sum((double)pgx) / (double)C);
    rln_packs<V, NV>(C, lane, [&](int64_t c, int j) {
      A g[V], v[V], wv[V] = {}, d[V] = {};
      if constexpr (NV > 0) {
RLN_UNROLL
        for (int e = 0; e < V; e++) {
          g[e] = cg[j * V + e];
          v[e] = cs[j * V + e];
        }
      } else {
        ln_load<DT, V>(g, dyr + c);
        ln_load<DT, V>(v, sr + c);
      }
      if (w) ln_load<DT, V>(wv, w + c);
      if (ds) ln_load<DT, V>(d, ds + row * C + c);
RLN_UNROLL
      for (int e = 0; e < V; e++) {
        A xh = (v[e] - mt) * rt;
        A gg = w ? g[e] * wv[e] : g[e];
        A o = rt * (gg - a - xh * bb);
        v[e] = ds ? ln_add(d[e], o) : o;
        if (part) {  // this lane owns columns c..c+V-1 of its warp's rows
          aw[c + e] += g[e] * xh;
          ab[c + e] += g[e];
        }
      }
      ln_store<DT, V>(dx + row * C + c, v);
    });
  }
  if (!part) return;
  __syncthreads();  // every warp's rows are summed
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    A sw = 0, sb = 0;
    for (int k = 0; k < W; k++) {  // warp order: the same tree on every run
      sw += acc[(size_t)k * C + c];
      sb += acc[(size_t)(W + k) * C + c];
    }
    if (pw) pw[(size_t)blockIdx.x * C + c] = sw;
    if (pb) pb[(size_t)blockIdx.x * C + c] = sb;
  }
}

// o[c] = the nblk partial rows of p added in block order, in f64, stored as T (zeros when nblk == 0)
template <int DT>
__global__ void rln_sum_partials(typename ln_elem<DT>::T *o, const typename ln_elem<DT>::A *p, int64_t nblk, int64_t C) {
  TIDE_CUDA_FOR(c, C) {
    double t = 0;
    for (int64_t k = 0; k < nblk; k++) t += (double)p[k * C + c];
    o[c] = ln_elem<DT>::st((typename ln_elem<DT>::A)t);
  }
}

static bool rln_aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

// Packs per lane held in registers for a row of C (V elements a pack): the smallest of 1, 2, 4, 8 (, 16) that
// holds the row, or 0 (re-read) past `most`. Only f32 and bf16, the training dtypes, get the cached kernels
// (RLN_NV maps the others to 0 so those instances are never compiled).
template <int DT> static int rln_cache_packs(int64_t C, int V, int most) {
  if (DT != TIDE_F32 && DT != TIDE_BF16) return 0;
  int64_t need = (C + 32 * V - 1) / (32 * V);
  for (int nv = 1; nv <= most; nv *= 2)
    if (need <= nv) return nv;
  return 0;
}
#define RLN_NV(DT, N) ((DT) == TIDE_F32 || (DT) == TIDE_BF16 ? (N) : 0)

template <int DT>
static int rln_forward_launch(void *s, void *y, void *mean, void *rstd, const void *x, const void *r, const void *w,
                              const void *b, int64_t rows, int64_t C, double eps) {
  typedef ln_elem<DT> E;
  typedef typename E::T T;
  typedef typename E::S S;
  const char *op = r ? "residual_layer_norm" : "layer_norm";
  enum { V = 16 / sizeof(T) };
  const bool vec = C % V == 0 && rln_aligned(s) && rln_aligned(y) && rln_aligned(x) && rln_aligned(r) &&
                   rln_aligned(w) && rln_aligned(b);
  int64_t blocks = (rows + RLN_FWD_WARPS - 1) / RLN_FWD_WARPS;
  unsigned grid = (unsigned)(blocks > 65535 * 8 ? 65535 * 8 : blocks);
  const int nv = vec ? rln_cache_packs<DT>(C, V, 16) : 0;
#define RLN_FWD(VV, NN)                                                                                        \
  TIDE_CUDA_LAUNCH(op, (rln_forward<DT, VV, NN>), grid, 32 * RLN_FWD_WARPS, 0, (T *)s, (T *)y, (S *)mean,       \
                   (S *)rstd, (const T *)x, (const T *)r, (const T *)w, (const T *)b, rows, C, eps)
  switch (nv) {
    case 1: RLN_FWD(V, RLN_NV(DT, 1)); break;
    case 2: RLN_FWD(V, RLN_NV(DT, 2)); break;
    case 4: RLN_FWD(V, RLN_NV(DT, 4)); break;
    case 8: RLN_FWD(V, RLN_NV(DT, 8)); break;
    case 16: RLN_FWD(V, RLN_NV(DT, 16)); break;
    default:
      if (vec) RLN_FWD(V, 0);
      else RLN_FWD(1, 0);
  }
#undef RLN_FWD
  return 0;
}

// Rows per block of the backward's partial sums: fixed by the row count (at most 256 blocks, at least 2
// rows per warp), so dweight's summation tree does not depend on the run.
static int64_t rln_block_rows(int64_t rows, int W) {
  int64_t rb = (rows + 255) / 256;
  return rb < 2 * W ? 2 * W : rb;
}

template <int DT>
static int rln_backward_launch(void *dx, void *dweight, void *dbias, const void *ds, const void *dout, const void *s,
                               const void *w, const void *mean, const void *rstd, int64_t rows, int64_t C,
                               const char *op) {
  typedef ln_elem<DT> E;
  typedef typename E::T T;
  typedef typename E::A A;
  typedef typename E::S S;
  enum { V = 16 / sizeof(T) };
  const bool part = dweight || dbias;
  // warps per block: as many as RLN_BWD_WARPS whose accumulators (2 x C per warp) fit in 48 KiB
  int64_t fit = C ? (int64_t)RLN_SMEM / (int64_t)(2 * C * sizeof(A)) : (int64_t)RLN_BWD_WARPS;
  const int W = !part ? RLN_BWD_WARPS : fit >= RLN_BWD_WARPS ? RLN_BWD_WARPS : fit >= 1 ? (int)fit : 1;
  const bool in_smem = !part || fit >= 1;
  const int64_t rb = rln_block_rows(rows, W), nblk = C ? (rows + rb - 1) / rb : 0;
  size_t acc_bytes = part ? (size_t)2 * W * (size_t)C * sizeof(A) : 0;
  size_t part_bytes = part ? (size_t)nblk * (size_t)C * sizeof(A) * (size_t)((dweight != NULL) + (dbias != NULL)) : 0;
  size_t glob_bytes = in_smem ? 0 : acc_bytes * (size_t)nblk;
  A *pbuf = NULL, *acc_g = NULL;
  if (part_bytes && !(pbuf = (A *)tide_cuda_scratch(part_bytes))) return -1;
  if (glob_bytes && !(acc_g = (A *)tide_cuda_scratch(glob_bytes))) {
    if (pbuf) tide_cuda_scratch_free(pbuf, part_bytes);
    return -1;
  }
  A *pw = dweight ? pbuf : NULL, *pb = dbias ? pbuf + (dweight ? nblk * C : 0) : NULL;
  const bool vec = C % V == 0 && rln_aligned(dx) && rln_aligned(ds) && rln_aligned(dout) && rln_aligned(s) &&
                   rln_aligned(w);
  size_t smem = in_smem ? acc_bytes : 0;
  int rc = 0;
  if (nblk) {
    const int nv = vec ? rln_cache_packs<DT>(C, V, 8) : 0;
#define RLN_BWD(VV, NN)                                                                                        \
  LAUNCH((rln_backward<DT, VV, NN>), (unsigned)nblk, 32 * W, smem, TIDE_CUDA_STREAM, (T *)dx, pw, pb,           \
         (const T *)ds, (const T *)dout, (const T *)s, (const T *)w, (const S *)mean, (const S *)rstd, rows, C, rb, \
         acc_g)
    switch (nv) {
      case 1: RLN_BWD(V, RLN_NV(DT, 1)); break;
      case 2: RLN_BWD(V, RLN_NV(DT, 2)); break;
      case 4: RLN_BWD(V, RLN_NV(DT, 4)); break;
      case 8: RLN_BWD(V, RLN_NV(DT, 8)); break;
      default:
        if (vec) RLN_BWD(V, 0);
        else RLN_BWD(1, 0);
    }
#undef RLN_BWD
    rc = tide_cuda_after_launch(op);
  }
  // the final passes run even with no rows: dweight and dbias are then zeros
  if (!rc && dweight) {
    LAUNCH(rln_sum_partials<DT>, tide_cuda_blocks(C), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, (T *)dweight, pw, nblk, C);
    rc = tide_cuda_after_launch(op);
  }
  if (!rc && dbias) {
    LAUNCH(rln_sum_partials<DT>, tide_cuda_blocks(C), TIDE_CUDA_THREADS, 0, TIDE_CUDA_STREAM, (T *)dbias, pb, nblk, C);
    rc = tide_cuda_after_launch(op);
  }
  if (pbuf) tide_cuda_scratch_free(pbuf, part_bytes);  // stream-ordered: the kernels above run first
  if (acc_g) tide_cuda_scratch_free(acc_g, glob_bytes);
  return rc;
}

static int residual_layernorm_forward(void *s, void *out, void *mean, void *rstd, const void *x, const void *r,
                                      const void *weight, const void *bias, int64_t rows, int64_t C, double eps,
                                      int32_t dtype) {
  if (r && !s) return tide_fail("residual_layer_norm: r given without s");
  if (rows == 0) return 0;
  switch (dtype) {
    case TIDE_F32: return rln_forward_launch<TIDE_F32>(s, out, mean, rstd, x, r, weight, bias, rows, C, eps);
    case TIDE_BF16: return rln_forward_launch<TIDE_BF16>(s, out, mean, rstd, x, r, weight, bias, rows, C, eps);
    case TIDE_F16: return rln_forward_launch<TIDE_F16>(s, out, mean, rstd, x, r, weight, bias, rows, C, eps);
    case TIDE_F64: return rln_forward_launch<TIDE_F64>(s, out, mean, rstd, x, r, weight, bias, rows, C, eps);
  }
  return tide_fail("residual_layer_norm: no kernel for dtype %s", tide_dtype_name(dtype));
}

static int residual_layernorm_backward(void *dx, void *dweight, void *dbias, const void *ds, const void *dout,
                                       const void *s, const void *weight, const void *mean, const void *rstd,
                                       int64_t rows, int64_t C, int32_t dtype) {
  const char *op = ds ? "residual_layer_norm_backward" : "layer_norm_backward";
  if (!dout && rows * C != 0) return tide_fail("%s: dout is NULL", op);
  switch (dtype) {
    case TIDE_F32: return rln_backward_launch<TIDE_F32>(dx, dweight, dbias, ds, dout, s, weight, mean, rstd, rows, C, op);
    case TIDE_BF16: return rln_backward_launch<TIDE_BF16>(dx, dweight, dbias, ds, dout, s, weight, mean, rstd, rows, C, op);
    case TIDE_F16: return rln_backward_launch<TIDE_F16>(dx, dweight, dbias, ds, dout, s, weight, mean, rstd, rows, C, op);
    case TIDE_F64: return rln_backward_launch<TIDE_F64>(dx, dweight, dbias, ds, dout, s, weight, mean, rstd, rows, C, op);
  }
  return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
}

extern "C" const struct tide_norm_kernels tide_cuda_norm = {layernorm_forward, layernorm_backward,
                                                             residual_layernorm_forward, residual_layernorm_backward};
