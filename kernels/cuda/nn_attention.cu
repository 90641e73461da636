// The attention family on CUDA (kernels/nn_attention.h): fused scaled
// dot-product attention, forward and backward, in plain (not flash) form:
// f32 and f64, any head size. The flash kernels (bf16 tensor cores) are in
// nn_attention_flash.cu; the op layer chooses (runtime/ops/attention.c).
//
// One warp per row. The forward gives a warp one query row: its lanes take
// the keys 32 at a time (lane j scores key j0 + j against the query held in
// shared memory), a warp max updates the running maximum, and each lane then
// adds the chunk's probabilities times v into the output elements d it owns
// (d = lane, lane + 32, ...), rescaled as the maximum moves (an online
// softmax, so no T x S scores are held). The backward is three launches:
// rowdot = rowsum(dout * out) one thread per query row; dq one warp per query
// row over its keys; dk and dv one warp per key row over the queries that see
// it. Every output element is thus summed by one lane in a fixed order (keys
// or queries ascending), and the warp reductions are xor butterflies whose
// result every lane shares: the same bits on every run, no atomics.
//
// Masking as the CPU kernels (kernels/cpu/nn_attention.c): under causal
// query t sees keys s <= t + q_offset (q_offset = 0: the top-left triangle,
// also when T != S; q_offset = S - T: bottom-right, decoding over a KV cache), the key
// mask hides keys of its batch row, and a query left no key gets zeros, lse
// -inf and no gradient.
//
// Shared memory: each warp has 4 D + 64 elements of the compute type for its
// rows (the query or key row, a second operand row, accumulators, the chunk's
// probabilities); blocks hold 4 warps, or fewer when D is large.
#include "common.cuh"
extern "C" {
#include "nn_attention.h"
}
#include <math.h>
#include <string.h>

namespace {

const unsigned kFull = 0xffffffffu;
const int kMaxWarps = 4;
const size_t kSmemLimit = 48u << 10;  // the dynamic shared memory a launch gets without opting in

struct attn_params {
  const void *q, *k, *v, *o, *dout, *lse;
  void *out, *dq, *dk, *dv, *lse_out, *rowdot;
  const uint8_t *km;  // [B, S] or NULL
  tide_attn_strides st;
  int64_t B, H, T, S, D;
  int causal;
  int64_t qoff;  // query row 0's position under the causal mask, in [0, S]
  double scale;
};

__device__ __forceinline__ float attn_exp(float x) { return expf(x); }
__device__ __forceinline__ double attn_exp(double x) { return exp(x); }
__device__ __forceinline__ float attn_log(float x) { return logf(x); }
__device__ __forceinline__ double attn_log(double x) { return log(x); }

// Row r of head (b, h) of an operand with strides s = {batch, head, row}.
template <class R> __device__ __forceinline__ R *row_at(const void *p, const int64_t s[3], int64_t b, int64_t h, int64_t r) {
  return (R *)p + b * s[0] + h * s[1] + r * s[2];
}

template <class R> __device__ __forceinline__ R dot(const R *a, const R *b, int64_t D) {
  R s = 0;
  for (int64_t d = 0; d < D; d++) s += a[d] * b[d];
  return s;
}

// The maximum over the warp, the same value in every lane.
template <class R> __device__ __forceinline__ R warp_max(R x) {
  for (int o = 16; o > 0; o >>= 1) {
    R y = __shfl_xor_sync(kFull, x, o);
    x = y > x ? y : x;
  }
  return x;
}

// The sum over the warp: lane i adds x_i and x_(i^o) in either order, which
// rounds the same, so every lane ends with the same bits.
template <class R> __device__ __forceinline__ R warp_sum(R x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

// Copies a row of D elements into shared memory, lanes striding.
template <class R> __device__ __forceinline__ void load_row(R *dst, const R *src, int64_t D, int lane) {
  for (int64_t d = lane; d < D; d += 32) dst[d] = src[d];
}

// How many keys query t may see before the key mask: a prefix.
__device__ __forceinline__ int64_t keys_for(const attn_params &a, int64_t t) {
  if (!a.causal) return a.S;
  return t + a.qoff + 1 < a.S ? t + a.qoff + 1 : a.S;
}

// The warp's shared memory: 4 D + 64 elements from the start of its slice.
template <class R> __device__ __forceinline__ R *warp_smem(int64_t D) {
  CUDAEMU_DYNAMIC_SMEM(R, smem);
  return smem + (threadIdx.x / 32) * (4 * D + 64);
}

// forward: one warp per query row (b, h, t) ------------------------------------

template <class R> __global__ void attn_fwd_kernel(attn_params a) {
  int lane = threadIdx.x % 32;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= a.B * a.H * a.T) return;  // the whole warp leaves together
  int64_t t = row % a.T, bh = row / a.T, b = bh / a.H, h = bh % a.H, D = a.D;
  R *qs = warp_smem<R>(D), *acc = qs + D, *ps = acc + D;
  load_row(qs, row_at<R>(a.q, a.st.q, b, h, t), D, lane);
  for (int64_t d = lane; d < D; d += 32) acc[d] = 0;
  __syncwarp();
  const R *K = row_at<R>(a.k, a.st.k, b, h, 0), *V = row_at<R>(a.v, a.st.v, b, h, 0);
  const uint8_t *km = a.km ? a.km + b * a.S : nullptr;
  R scale = (R)a.scale, m = (R)-INFINITY, l = 0;  // running max (warp-wide), this lane's share of the sum
  int64_t n = keys_for(a, t);
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    int64_t j = j0 + lane;
    bool vis = j < n && (!km || km[j]);
    R s = vis ? dot(qs, K + j * a.st.k[2], D) * scale : (R)-INFINITY;
    R mnew = warp_max(s);
    mnew = m > mnew ? m : mnew;
    if (mnew == (R)-INFINITY) continue;  // nothing visible yet (warp-uniform)
    R corr = attn_exp(m - mnew);         // 0 while m is -inf
    R p = vis ? attn_exp(s - mnew) : (R)0;
    l = l * corr + p;
    __syncwarp();  // the previous chunk's ps has been read
    ps[lane] = p;
    __syncwarp();
    int64_t cnt = n - j0 < 32 ? n - j0 : 32;
    for (int64_t d = lane; d < D; d += 32) {
      R x = acc[d] * corr;
      for (int64_t jj = 0; jj < cnt; jj++) x += ps[jj] * V[(j0 + jj) * a.st.v[2] + d];
      acc[d] = x;
    }
    m = mnew;
  }
  l = warp_sum(l);
  R *O = row_at<R>(a.out, a.st.out, b, h, t);
  R *L = (R *)a.lse_out + bh * a.T + t;
  if (m == (R)-INFINITY) {  // no key: zeros and lse -inf
    for (int64_t d = lane; d < D; d += 32) O[d] = 0;
    if (lane == 0) *L = (R)-INFINITY;
    return;
  }
  R inv = (R)1 / l;
  for (int64_t d = lane; d < D; d += 32) O[d] = acc[d] * inv;
  if (lane == 0) *L = m + attn_log(l);
}

// backward -----------------------------------------------------------------------

// rowdot[b, h, t] = dout[b, h, t, :] . out[b, h, t, :], one thread per row
template <class R> __global__ void attn_rowdot_kernel(attn_params a) {
  TIDE_CUDA_FOR(row, a.B * a.H * a.T) {
    int64_t t = row % a.T, bh = row / a.T, b = bh / a.H, h = bh % a.H;
    ((R *)a.rowdot)[row] = dot(row_at<R>(a.dout, a.st.dout, b, h, t), row_at<R>(a.o, a.st.out, b, h, t), a.D);
  }
}

// dq[t] = scale * sum_j P[t, j] (dout[t] . v[j] - rowdot[t]) k[j], one warp per query row
template <class R> __global__ void attn_dq_kernel(attn_params a) {
  int lane = threadIdx.x % 32;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= a.B * a.H * a.T) return;
  int64_t t = row % a.T, bh = row / a.T, b = bh / a.H, h = bh % a.H, D = a.D;
  R *qs = warp_smem<R>(D), *gs = qs + D, *acc = gs + D, *dss = acc + D;
  load_row(qs, row_at<R>(a.q, a.st.q, b, h, t), D, lane);
  load_row(gs, row_at<R>(a.dout, a.st.dout, b, h, t), D, lane);
  for (int64_t d = lane; d < D; d += 32) acc[d] = 0;
  __syncwarp();
  const R *K = row_at<R>(a.k, a.st.k, b, h, 0), *V = row_at<R>(a.v, a.st.v, b, h, 0);
  const uint8_t *km = a.km ? a.km + b * a.S : nullptr;
  R scale = (R)a.scale, lt = ((const R *)a.lse)[row], rt = ((const R *)a.rowdot)[row];
  int64_t n = keys_for(a, t);
  for (int64_t j0 = 0; j0 < n; j0 += 32) {
    int64_t j = j0 + lane;
    R ds = 0;
    if (j < n && (!km || km[j])) {
      R p = attn_exp(dot(qs, K + j * a.st.k[2], D) * scale - lt);
      ds = p * (dot(gs, V + j * a.st.v[2], D) - rt);
    }
    __syncwarp();
    dss[lane] = ds;
    __syncwarp();
    int64_t cnt = n - j0 < 32 ? n - j0 : 32;
    for (int64_t d = lane; d < D; d += 32) {
      R x = acc[d];
      for (int64_t jj = 0; jj < cnt; jj++) x += dss[jj] * K[(j0 + jj) * a.st.k[2] + d];
      acc[d] = x;
    }
  }
  R *dQ = row_at<R>(a.dq, a.st.dq, b, h, t);
  for (int64_t d = lane; d < D; d += 32) dQ[d] = acc[d] * scale;
}

// dv[s] = sum_t P[t, s] dout[t], dk[s] = scale * sum_t dS[t, s] q[t] over the
// queries t that see key s, one warp per key row
template <class R> __global__ void attn_dkv_kernel(attn_params a) {
  int lane = threadIdx.x % 32;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= a.B * a.H * a.S) return;
  int64_t s = row % a.S, bh = row / a.S, b = bh / a.H, h = bh % a.H, D = a.D, T = a.T;
  R *ks = warp_smem<R>(D), *vs = ks + D, *dk = vs + D, *dv = dk + D, *ps = dv + D, *dss = ps + 32;
  load_row(ks, row_at<R>(a.k, a.st.k, b, h, s), D, lane);
  load_row(vs, row_at<R>(a.v, a.st.v, b, h, s), D, lane);
  for (int64_t d = lane; d < D; d += 32) dk[d] = dv[d] = 0;
  __syncwarp();
  const R *Q = row_at<R>(a.q, a.st.q, b, h, 0), *G = row_at<R>(a.dout, a.st.dout, b, h, 0);
  const R *L = (const R *)a.lse + bh * T, *RD = (const R *)a.rowdot + bh * T;
  R scale = (R)a.scale;
  // the queries that see s: all, or t >= s - q_offset under the causal mask; none when the key is masked
  int64_t t_begin = a.causal && s > a.qoff ? s - a.qoff : 0;
  if (a.km && !a.km[b * a.S + s]) t_begin = T;
  for (int64_t t0 = t_begin; t0 < T; t0 += 32) {
    int64_t t = t0 + lane;
    R p = 0, ds = 0;
    if (t < T) {
      p = attn_exp(dot(Q + t * a.st.q[2], ks, D) * scale - L[t]);
      ds = p * (dot(G + t * a.st.dout[2], vs, D) - RD[t]);
    }
    __syncwarp();
    ps[lane] = p;
    dss[lane] = ds;
    __syncwarp();
    int64_t cnt = T - t0 < 32 ? T - t0 : 32;
    for (int64_t d = lane; d < D; d += 32) {
      R xv = dv[d], xk = dk[d];
      for (int64_t tt = 0; tt < cnt; tt++) {
        xv += ps[tt] * G[(t0 + tt) * a.st.dout[2] + d];
        xk += dss[tt] * Q[(t0 + tt) * a.st.q[2] + d];
      }
      dv[d] = xv, dk[d] = xk;
    }
  }
  R *dK = row_at<R>(a.dk, a.st.dk, b, h, s), *dV = row_at<R>(a.dv, a.st.dv, b, h, s);
  for (int64_t d = lane; d < D; d += 32) {
    dK[d] = dk[d] * scale;
    dV[d] = dv[d];
  }
}

// launch geometry ------------------------------------------------------------------

// Warps per block and the block's shared memory for head size D, or 0 warps
// when even one warp's rows do not fit.
int warps_for(int64_t D, size_t es, size_t *smem) {
  size_t per = (size_t)(4 * D + 64) * es;
  for (int w = kMaxWarps; w >= 1; w /= 2)
    if ((size_t)w * per <= kSmemLimit) {
      *smem = (size_t)w * per;
      return w;
    }
  return 0;
}

int64_t max_head_dim(size_t es) { return (int64_t)((kSmemLimit / es - 64) / 4); }

template <class R> int launch_forward(const attn_params &a) {
  size_t smem = 0;
  int w = warps_for(a.D, sizeof(R), &smem);
  int64_t rows = a.B * a.H * a.T;
  if (rows == 0) return 0;
  TIDE_CUDA_LAUNCH("attention", attn_fwd_kernel<R>, (unsigned)((rows + w - 1) / w), 32 * w, smem, a);
  return 0;
}

template <class R> int launch_backward(const attn_params &a) {
  size_t smem = 0;
  int w = warps_for(a.D, sizeof(R), &smem);
  int64_t qrows = a.B * a.H * a.T, krows = a.B * a.H * a.S;
  if (qrows > 0) {
    TIDE_CUDA_LAUNCH("attention_backward", attn_rowdot_kernel<R>, tide_cuda_blocks(qrows), TIDE_CUDA_THREADS, 0, a);
    TIDE_CUDA_LAUNCH("attention_backward", attn_dq_kernel<R>, (unsigned)((qrows + w - 1) / w), 32 * w, smem, a);
  }
  if (krows > 0)
    TIDE_CUDA_LAUNCH("attention_backward", attn_dkv_kernel<R>, (unsigned)((krows + w - 1) / w), 32 * w, smem, a);
  return 0;
}

// Shared checks of both entries: dtype, q_offset >= 0, and a head size whose rows fit in shared memory.
int check_args(const char *op, int64_t D, int64_t q_offset, int32_t dtype) {
  if (q_offset < 0) return tide_fail("%s: q_offset must be >= 0, got %lld", op, (long long)q_offset);
  if (dtype != TIDE_F32 && dtype != TIDE_F64) return tide_fail("%s: no kernel for dtype %s", op, tide_dtype_name(dtype));
  size_t es = dtype == TIDE_F64 ? 8 : 4, smem;
  if (!warps_for(D, es, &smem))
    return tide_fail("%s: head size D = %lld is too large for the cuda kernel (at most %lld for %s)", op, (long long)D,
                     (long long)max_head_dim(es), tide_dtype_name(dtype));
  return 0;
}

}  // namespace

static int attention_forward(void *out, void *lse, const void *q, const void *k, const void *v, const uint8_t *key_mask,
                             int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset,
                             double scale, const tide_attn_strides *st, int32_t dtype) {
  TIDE_TRY(check_args("attention", D, q_offset, dtype));
  attn_params a;
  memset(&a, 0, sizeof a);
  a.q = q, a.k = k, a.v = v, a.out = out, a.lse_out = lse, a.km = key_mask, a.st = *st;
  a.B = B, a.H = H, a.T = T, a.S = S, a.D = D, a.causal = causal, a.scale = scale;
  a.qoff = causal ? (q_offset < S ? q_offset : S) : 0;  // past S every key is seen: no overflow in t + qoff
  return dtype == TIDE_F64 ? launch_forward<double>(a) : launch_forward<float>(a);
}

static int attention_backward(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q, const void *k,
                              const void *v, const void *out, const void *lse, const uint8_t *key_mask, int64_t B,
                              int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                              const tide_attn_strides *st, int32_t dtype) {
  TIDE_TRY(check_args("attention_backward", D, q_offset, dtype));
  attn_params a;
  memset(&a, 0, sizeof a);
  a.q = q, a.k = k, a.v = v, a.o = out, a.dout = dout, a.lse = lse, a.km = key_mask, a.st = *st;
  a.dq = dq, a.dk = dk, a.dv = dv, a.rowdot = rowdot;
  a.B = B, a.H = H, a.T = T, a.S = S, a.D = D, a.causal = causal, a.scale = scale;
  a.qoff = causal ? (q_offset < S ? q_offset : S) : 0;  // past S every key is seen: no overflow in t + qoff
  return dtype == TIDE_F64 ? launch_backward<double>(a) : launch_backward<float>(a);
}

// Flash attention on tensor cores: nn_attention_flash.cu.
int tide_cuda_flash_forward(void *out, void *lse, const void *q, const void *k, const void *v, const uint8_t *key_mask,
                            int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset,
                            double scale, const tide_attn_strides *st, int32_t dtype);
int tide_cuda_flash_backward(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q, const void *k,
                             const void *v, const void *out, const void *lse, const uint8_t *key_mask, int64_t B,
                             int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                             const tide_attn_strides *st, int32_t dtype);

extern "C" const struct tide_attention_kernels tide_cuda_attention = {attention_forward, attention_backward,
                                                                      tide_cuda_flash_forward, tide_cuda_flash_backward};
