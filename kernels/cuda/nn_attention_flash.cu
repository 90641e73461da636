// Flash attention on tensor cores (kernels/nn_attention.h, flash_forward and
// flash_backward): the attention family's fast path on CUDA. Same masking
// and results as the plain kernels of nn_attention.cu (causal with q_offset,
// key mask, a query left no key gets zeros and lse -inf), with the products
// in bf16 (mma.sync m16n8k16, f32 accumulation) and never a T x S matrix in
// memory. docs/cuda.md has the design and the expected speed.
//
// Tiles. Operands are staged tile by tile into shared memory as bf16 (the
// conversion from the operand type, f32 or bf16, happens there), rows
// padded by 8 elements so that ldmatrix's eight 16-byte rows fall in
// different banks, and columns past D zero-filled up to kD = 64 or 128 (the
// two compiled head sizes: a zero column adds exact zeros to every product).
// A block is 4 warps; each warp owns 16 rows of the block's 64 and keeps its
// accumulators in registers, in the mma C-fragment layout, whose pairs of
// n-tiles are exactly the A-fragment layout of the next product (P V,
// dS K, ...), so probabilities never go through shared memory. ldmatrix has
// no transposing form under the emulator, so operands a product needs
// transposed (V in the forward, Q and dout in the dk/dv pass, K in the dq
// pass) are staged a second time transposed.
//
// Forward: one block per 64 queries of a head; keys in tiles of 64 up to the
// causal limit of the block's last query; online softmax (running max and
// sum per row, the accumulator rescaled as the max moves); out = acc / sum,
// lse = max + log(sum).
// Backward (FlashAttention-2): rowdot = rowsum(dout * out) in f32, then
// dk, dv with one block per 64 keys walking the query tiles (32 rows) that
// see them, then dq with one block per 64 queries walking the key tiles (32
// keys) they see; both recompute P = exp(s * scale - lse) and
// dS = P (dout v^T - rowdot). Every output element is accumulated by one
// lane in one fixed order and written once: no atomics, the same bits on
// every run.
#include "common.cuh"
extern "C" {
#include "nn_attention.h"
#include "dtype.h"
}
#include "../../tests/cudaemu/mma.h"
#include <math.h>
#include <string.h>

// Loops over fragments are unrolled so that nvcc keeps the accumulators in
// registers (an array indexed at run time would live in local memory).
#if defined(__CUDACC__)
#define FLASH_UNROLL _Pragma("unroll")
#else
#define FLASH_UNROLL
#define __launch_bounds__(...)  // the emulator has no register budget to bound
#endif

namespace {

const int kThreads = 128;   // 4 warps
const int kRows = 64;       // rows a block owns: queries (forward, dq) or keys (dk, dv)
const int kFwdKeys = 64;    // keys per tile of the forward
const int kBwdCols = 32;    // queries per tile of the dk/dv pass, keys per tile of the dq pass
const unsigned kFull = 0xffffffffu;
const size_t kDefaultSmem = 48u << 10;  // what a launch gets without opting in

struct flash_params {
  const void *q, *k, *v, *o, *dout;
  const float *lse, *rowdot;
  void *out, *dq, *dk, *dv;
  float *lse_out, *rowdot_out;
  const uint8_t *km;  // [B, S] or NULL
  tide_attn_strides st;
  int64_t B, H, T, S, D;
  int causal;
  int64_t qoff;  // query row 0's position under the causal mask, in [0, S]
  float scale;
};

// element types: f32, or bf16 as its bits
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(uint16_t x) { return tide_bf16_to_f32(x); }
__device__ __forceinline__ void store(float *p, float x) { *p = x; }
__device__ __forceinline__ void store(uint16_t *p, float x) { *p = tide_f32_to_bf16(x); }

// Two f32 as a bf16 pair (lo in the low half), as a fragment register holds them.
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  return (uint32_t)tide_f32_to_bf16(lo) | (uint32_t)tide_f32_to_bf16(hi) << 16;
}

// Row r of head (b, h) of an operand with strides s = {batch, head, row}.
template <class In> __device__ __forceinline__ In *head_at(const void *p, const int64_t s[3], int64_t b, int64_t h) {
  return (In *)p + b * s[0] + h * s[1];
}

// Four consecutive elements, loaded or stored as one access (16 bytes of
// f32, 8 of bf16); the alignment makes nvcc emit the vector instruction.
template <class E> struct alignas(4 * sizeof(E)) quad {
  E x[4];
};

// Rows [r0, r0 + n) of a head's operand (row stride rs, R rows, D columns)
// into shared memory as bf16: row-major into dst (pitch), transposed into
// dstT (pitch tp), either may be NULL. Rows past R and columns past D are
// zeros. Threads walk the elements row-major, so global reads are
// coalesced; four at a time where the rows allow (D and rs multiples of 4,
// the head's base aligned, as in contiguous and GPT-2's fused layouts),
// else one at a time. The choice is the same for the whole block.
template <int kD, class In>
__device__ __forceinline__ void stage(uint16_t *dst, int pitch, uint16_t *dstT, int tp, const In *base, int64_t rs,
                                      int64_t r0, int n, int64_t R, int64_t D) {
  if (D % 4 == 0 && rs % 4 == 0 && (uintptr_t)base % sizeof(quad<In>) == 0) {
    for (int i = threadIdx.x; i < n * (kD / 4); i += kThreads) {
      int r = i / (kD / 4), d = i % (kD / 4) * 4;
      int64_t row = r0 + r;
      quad<uint16_t> x = {{0, 0, 0, 0}};
      if (row < R && d < D) {  // D % 4 == 0: the four columns are all in or all out
        quad<In> v = *(const quad<In> *)(base + row * rs + d);
        for (int e = 0; e < 4; e++) x.x[e] = tide_f32_to_bf16(to_f32(v.x[e]));
      }
      if (dst) *(quad<uint16_t> *)(dst + r * pitch + d) = x;
      if (dstT)
        for (int e = 0; e < 4; e++) dstT[(d + e) * tp + r] = x.x[e];
    }
    return;
  }
  for (int i = threadIdx.x; i < n * kD; i += kThreads) {
    int r = i / kD, d = i % kD;
    int64_t row = r0 + r;
    uint16_t x = row < R && d < D ? tide_f32_to_bf16(to_f32(base[row * rs + d])) : 0;
    if (dst) dst[r * pitch + d] = x;
    if (dstT) dstT[d * tp + r] = x;
  }
}

// The A fragment of rows [row0, row0 + 16) x columns [k0, k0 + 16) of a row-major bf16 tile.
__device__ __forceinline__ void load_a(uint32_t a[4], const uint16_t *s, int pitch, int row0, int k0) {
  int l = threadIdx.x & 31, j = l >> 3, r = l & 7;
  ldmatrix_x4(a, s + (row0 + r + (j & 1) * 8) * pitch + k0 + (j >> 1) * 8);
}

// The B fragments of two n-tiles, n in [n0, n0 + 16), k in [k0, k0 + 16),
// from a tile stored [n][k]: b[0..1] for n0, b[2..3] for n0 + 8.
__device__ __forceinline__ void load_b2(uint32_t b[4], const uint16_t *s, int pitch, int n0, int k0) {
  int l = threadIdx.x & 31, j = l >> 3, r = l & 7;
  ldmatrix_x4(b, s + (n0 + r + (j >> 1) * 8) * pitch + k0 + (j & 1) * 8);
}

// acc[n] += A (16 x 16k) times the tile [n][k] for the warp's 16 rows: acc has
// kN / 8 n-tiles, the A fragments of rows row0.. come from a row-major tile.
template <int kN, int kK>
__device__ __forceinline__ void mma_rows(float (*acc)[4], const uint16_t *a_s, int a_pitch, int row0, const uint16_t *b_s,
                                         int b_pitch) {
FLASH_UNROLL
  for (int kk = 0; kk < kK / 16; kk++) {
    uint32_t a[4];
    load_a(a, a_s, a_pitch, row0, kk * 16);
FLASH_UNROLL
    for (int n = 0; n < kN / 8; n += 2) {
      uint32_t b[4];
      load_b2(b, b_s, b_pitch, n * 8, kk * 16);
      mma_bf16_16816(acc[n], a, b, acc[n]);
      mma_bf16_16816(acc[n + 1], a, b + 2, acc[n + 1]);
    }
  }
}

// acc[n] += X (16 x kK, held as C fragments x of kK / 8 n-tiles, rounded to
// bf16 here) times the tile [n][k]: the C layout of n-tiles 2kk and 2kk + 1
// is the A layout of k-chunk kk.
template <int kN, int kK>
__device__ __forceinline__ void mma_frag(float (*acc)[4], const float (*x)[4], const uint16_t *b_s, int b_pitch) {
FLASH_UNROLL
  for (int kk = 0; kk < kK / 16; kk++) {
    uint32_t a[4] = {pack(x[2 * kk][0], x[2 * kk][1]), pack(x[2 * kk][2], x[2 * kk][3]),
                     pack(x[2 * kk + 1][0], x[2 * kk + 1][1]), pack(x[2 * kk + 1][2], x[2 * kk + 1][3])};
FLASH_UNROLL
    for (int n = 0; n < kN / 8; n += 2) {
      uint32_t b[4];
      load_b2(b, b_s, b_pitch, n * 8, kk * 16);
      mma_bf16_16816(acc[n], a, b, acc[n]);
      mma_bf16_16816(acc[n + 1], a, b + 2, acc[n + 1]);
    }
  }
}

// Reductions over the 4 lanes that share a fragment row: xor butterflies,
// so both partners of each step add the same two values and every lane ends
// with the same bits.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(kFull, x, 1));
  return fmaxf(x, __shfl_xor_sync(kFull, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(kFull, x, 1);
  return x + __shfl_xor_sync(kFull, x, 2);
}

// Whether query t may see key s under the causal mask (the key mask and s < S are checked apart).
__device__ __forceinline__ bool causal_ok(const flash_params &p, int64_t t, int64_t s) {
  return !p.causal || s <= t + p.qoff;
}

// Keys [0, end) that some query of rows [0, i1) may see.
__device__ __forceinline__ int64_t key_end(const flash_params &p, int64_t i1) {
  if (!p.causal) return p.S;
  int64_t e = (i1 < p.T ? i1 : p.T) + p.qoff;
  return e < p.S ? e : p.S;
}

// The block's tile and head: tiles of a head run last-first, so the costly
// causal tiles (furthest down) start first.
__device__ __forceinline__ void block_at(int64_t ntiles, int64_t *tile, int64_t *bh) {
  *tile = ntiles - 1 - (int64_t)blockIdx.x % ntiles;
  *bh = (int64_t)blockIdx.x / ntiles;
}

// forward ----------------------------------------------------------------------------

template <int kD> constexpr size_t fwd_smem() {
  return ((size_t)kRows * (kD + 8) + (size_t)kFwdKeys * (kD + 8) + (size_t)kD * (kFwdKeys + 8)) * 2 + kFwdKeys;
}

template <class In, int kD> __global__ void __launch_bounds__(kThreads) flash_fwd_kernel(flash_params p) {
  const int P = kD + 8, PT = kFwdKeys + 8;
  CUDAEMU_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t *Qs = smem, *Ks = Qs + kRows * P, *Vt = Ks + kFwdKeys * P;
  uint8_t *vis = (uint8_t *)(Vt + kD * PT);
  int64_t tile, bh;
  block_at((p.T + kRows - 1) / kRows, &tile, &bh);
  int64_t b = bh / p.H, h = bh % p.H, i0 = tile * kRows;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const In *Q = head_at<const In>(p.q, p.st.q, b, h), *K = head_at<const In>(p.k, p.st.k, b, h);
  const In *V = head_at<const In>(p.v, p.st.v, b, h);
  const uint8_t *km = p.km ? p.km + b * p.S : nullptr;

  stage<kD>(Qs, P, nullptr, 0, Q, p.st.q[2], i0, kRows, p.T, p.D);
  __syncthreads();
  uint32_t qf[kD / 16][4];
FLASH_UNROLL
  for (int kk = 0; kk < kD / 16; kk++) load_a(qf[kk], Qs, P, warp * 16, kk * 16);
  const int64_t row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};  // this lane's two rows
  float acc[kD / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0, 0};
FLASH_UNROLL
  for (int n = 0; n < kD / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0;

  int64_t kend = key_end(p, i0 + kRows);
  for (int64_t j0 = 0; j0 < kend; j0 += kFwdKeys) {
    __syncthreads();  // every warp is done with the previous tile
    stage<kD>(Ks, P, nullptr, 0, K, p.st.k[2], j0, kFwdKeys, p.S, p.D);
    stage<kD>(nullptr, 0, Vt, PT, V, p.st.v[2], j0, kFwdKeys, p.S, p.D);
    for (int j = threadIdx.x; j < kFwdKeys; j += kThreads) vis[j] = j0 + j < p.S && (!km || km[j0 + j]);
    __syncthreads();
    float s[kFwdKeys / 8][4];
FLASH_UNROLL
    for (int n = 0; n < kFwdKeys / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0;
FLASH_UNROLL
    for (int kk = 0; kk < kD / 16; kk++) {
FLASH_UNROLL
      for (int n = 0; n < kFwdKeys / 8; n += 2) {
        uint32_t bb[4];
        load_b2(bb, Ks, P, n * 8, kk * 16);
        mma_bf16_16816(s[n], qf[kk], bb, s[n]);
        mma_bf16_16816(s[n + 1], qf[kk], bb + 2, s[n + 1]);
      }
    }
    // scale and mask, then the online softmax of the lane's two rows
    float mx[2] = {m[0], m[1]};
FLASH_UNROLL
    for (int n = 0; n < kFwdKeys / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) {
        int c = n * 8 + 2 * t4 + (e & 1), r = e >> 1;
        bool ok = vis[c] && causal_ok(p, row[r], j0 + c);
        s[n][e] = ok ? s[n][e] * p.scale : -INFINITY;
        mx[r] = fmaxf(mx[r], s[n][e]);
      }
    float base[2];
FLASH_UNROLL
    for (int r = 0; r < 2; r++) {
      mx[r] = quad_max(mx[r]);
      base[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // no key yet: every exp below is 0, nothing rescaled
      float corr = expf(m[r] - base[r]);
      m[r] = mx[r];
      l[r] *= corr;
FLASH_UNROLL
      for (int n = 0; n < kD / 8; n++) acc[n][2 * r] *= corr, acc[n][2 * r + 1] *= corr;
    }
FLASH_UNROLL
    for (int n = 0; n < kFwdKeys / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) {
        s[n][e] = expf(s[n][e] - base[e >> 1]);
        l[e >> 1] += s[n][e];
      }
    mma_frag<kD, kFwdKeys>(acc, s, Vt, PT);
  }

  In *O = head_at<In>(p.out, p.st.out, b, h);
FLASH_UNROLL
  for (int r = 0; r < 2; r++) {
    float sum = quad_sum(l[r]);
    if (row[r] >= p.T) continue;
    float inv = sum > 0 ? 1.f / sum : 0.f;
    if (t4 == 0) p.lse_out[bh * p.T + row[r]] = sum > 0 ? m[r] + logf(sum) : -INFINITY;
FLASH_UNROLL
    for (int n = 0; n < kD / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 2; e++) {
        int64_t d = n * 8 + 2 * t4 + e;
        if (d < p.D) store(O + row[r] * p.st.out[2] + d, acc[n][2 * r + e] * inv);
      }
  }
}

// backward ---------------------------------------------------------------------------

// rowdot[b, h, t] = dout[b, h, t, :] . out[b, h, t, :] in f32, one warp per
// row, with dout rounded to bf16 as the products dP = dout v^T see it: dS =
// P (dP - rowdot) then cancels where it should (one visible key gives dS = 0
// up to f32 rounding, not the bf16 rounding of dout).
template <class In> __global__ void flash_rowdot_kernel(flash_params p) {
  int lane = threadIdx.x & 31;
  int64_t row = (int64_t)blockIdx.x * (kThreads / 32) + threadIdx.x / 32;
  if (row >= p.B * p.H * p.T) return;  // the whole warp leaves together
  int64_t t = row % p.T, bh = row / p.T, b = bh / p.H, h = bh % p.H;
  const In *g = head_at<const In>(p.dout, p.st.dout, b, h) + t * p.st.dout[2];
  const In *o = head_at<const In>(p.o, p.st.out, b, h) + t * p.st.out[2];
  float x = 0;
  for (int64_t d = lane; d < p.D; d += 32) x += tide_bf16_to_f32(tide_f32_to_bf16(to_f32(g[d]))) * to_f32(o[d]);
  x = tide_warp_sum(x);
  if (lane == 0) p.rowdot_out[row] = x;
}

template <int kD> constexpr size_t dkv_smem() {
  return ((size_t)2 * kRows * (kD + 8) + (size_t)2 * kBwdCols * (kD + 8) + (size_t)2 * kD * (kBwdCols + 8)) * 2 +
         2 * kBwdCols * sizeof(float);
}

// dv = P^T dout and dk = scale dS^T q for 64 keys: each warp computes S^T and
// dP^T for its 16 keys against a tile of 32 queries, so P^T and dS^T are
// already the A operands of the two products.
template <class In, int kD> __global__ void __launch_bounds__(kThreads) flash_dkv_kernel(flash_params p) {
  const int P = kD + 8, PT = kBwdCols + 8;
  CUDAEMU_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t *Ks = smem, *Vs = Ks + kRows * P, *Qs = Vs + kRows * P, *Gs = Qs + kBwdCols * P;
  uint16_t *Qt = Gs + kBwdCols * P, *Gt = Qt + kD * PT;
  float *Ls = (float *)(Gt + kD * PT), *Rs = Ls + kBwdCols;
  int64_t tile, bh;
  block_at((p.S + kRows - 1) / kRows, &tile, &bh);
  int64_t b = bh / p.H, h = bh % p.H, s0 = tile * kRows;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const In *Q = head_at<const In>(p.q, p.st.q, b, h), *G = head_at<const In>(p.dout, p.st.dout, b, h);
  const float *L = p.lse + bh * p.T, *RD = p.rowdot + bh * p.T;
  stage<kD>(Ks, P, nullptr, 0, head_at<const In>(p.k, p.st.k, b, h), p.st.k[2], s0, kRows, p.S, p.D);
  stage<kD>(Vs, P, nullptr, 0, head_at<const In>(p.v, p.st.v, b, h), p.st.v[2], s0, kRows, p.S, p.D);
  const int64_t key[2] = {s0 + warp * 16 + g, s0 + warp * 16 + g + 8};
  bool kvis[2];
  for (int r = 0; r < 2; r++) kvis[r] = key[r] < p.S && (!p.km || p.km[b * p.S + key[r]]);
  float dk[kD / 8][4], dv[kD / 8][4];
FLASH_UNROLL
  for (int n = 0; n < kD / 8; n++)
FLASH_UNROLL
    for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0;

  // the queries that see some key of the block: t >= s0 - q_offset under the causal mask
  int64_t t_begin = p.causal && s0 > p.qoff ? s0 - p.qoff : 0;
  t_begin -= t_begin % kBwdCols;
  for (int64_t t0 = t_begin; t0 < p.T; t0 += kBwdCols) {
    __syncthreads();  // every warp is done with the previous tile (and Ks, Vs are staged)
    stage<kD>(Qs, P, Qt, PT, Q, p.st.q[2], t0, kBwdCols, p.T, p.D);
    stage<kD>(Gs, P, Gt, PT, G, p.st.dout[2], t0, kBwdCols, p.T, p.D);
    for (int i = threadIdx.x; i < kBwdCols; i += kThreads) {
      bool in = t0 + i < p.T;
      Ls[i] = in ? L[t0 + i] : -INFINITY;
      Rs[i] = in ? RD[t0 + i] : 0.f;
    }
    __syncthreads();
    float s[kBwdCols / 8][4], dp[kBwdCols / 8][4];
FLASH_UNROLL
    for (int n = 0; n < kBwdCols / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0;
    mma_rows<kBwdCols, kD>(s, Ks, P, warp * 16, Qs, P);   // S^T = K Q^T
    mma_rows<kBwdCols, kD>(dp, Vs, P, warp * 16, Gs, P);  // dP^T = V dout^T
FLASH_UNROLL
    for (int n = 0; n < kBwdCols / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) {
        int c = n * 8 + 2 * t4 + (e & 1), r = e >> 1;
        // a query with lse -inf saw no key: this one included
        bool ok = kvis[r] && Ls[c] != -INFINITY && causal_ok(p, t0 + c, key[r]);
        float pr = ok ? expf(s[n][e] * p.scale - Ls[c]) : 0.f;
        s[n][e] = pr;
        dp[n][e] = pr * (dp[n][e] - Rs[c]);
      }
    mma_frag<kD, kBwdCols>(dv, s, Gt, PT);   // dV += P^T dout
    mma_frag<kD, kBwdCols>(dk, dp, Qt, PT);  // dK += dS^T Q
  }

  In *dK = head_at<In>(p.dk, p.st.dk, b, h), *dV = head_at<In>(p.dv, p.st.dv, b, h);
FLASH_UNROLL
  for (int r = 0; r < 2; r++) {
    if (key[r] >= p.S) continue;
FLASH_UNROLL
    for (int n = 0; n < kD / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 2; e++) {
        int64_t d = n * 8 + 2 * t4 + e;
        if (d >= p.D) continue;
        store(dK + key[r] * p.st.dk[2] + d, dk[n][2 * r + e] * p.scale);
        store(dV + key[r] * p.st.dv[2] + d, dv[n][2 * r + e]);
      }
  }
}

template <int kD> constexpr size_t dq_smem() {
  return ((size_t)2 * kRows * (kD + 8) + (size_t)2 * kBwdCols * (kD + 8) + (size_t)kD * (kBwdCols + 8)) * 2 + kBwdCols;
}

// dq = scale dS K for 64 queries, walking the key tiles of 32 they see.
template <class In, int kD> __global__ void __launch_bounds__(kThreads) flash_dq_kernel(flash_params p) {
  const int P = kD + 8, PT = kBwdCols + 8;
  CUDAEMU_DYNAMIC_SMEM(uint16_t, smem);
  uint16_t *Qs = smem, *Gs = Qs + kRows * P, *Ks = Gs + kRows * P, *Vs = Ks + kBwdCols * P, *Kt = Vs + kBwdCols * P;
  uint8_t *vis = (uint8_t *)(Kt + kD * PT);
  int64_t tile, bh;
  block_at((p.T + kRows - 1) / kRows, &tile, &bh);
  int64_t b = bh / p.H, h = bh % p.H, i0 = tile * kRows;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const In *K = head_at<const In>(p.k, p.st.k, b, h), *V = head_at<const In>(p.v, p.st.v, b, h);
  const uint8_t *km = p.km ? p.km + b * p.S : nullptr;
  stage<kD>(Qs, P, nullptr, 0, head_at<const In>(p.q, p.st.q, b, h), p.st.q[2], i0, kRows, p.T, p.D);
  stage<kD>(Gs, P, nullptr, 0, head_at<const In>(p.dout, p.st.dout, b, h), p.st.dout[2], i0, kRows, p.T, p.D);
  const int64_t row[2] = {i0 + warp * 16 + g, i0 + warp * 16 + g + 8};
  float lse[2], rd[2];
  for (int r = 0; r < 2; r++) {
    bool in = row[r] < p.T;
    lse[r] = in ? p.lse[bh * p.T + row[r]] : -INFINITY;
    rd[r] = in ? p.rowdot[bh * p.T + row[r]] : 0.f;
  }
  float dq[kD / 8][4];
FLASH_UNROLL
  for (int n = 0; n < kD / 8; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0;

  int64_t kend = key_end(p, i0 + kRows);
  for (int64_t j0 = 0; j0 < kend; j0 += kBwdCols) {
    __syncthreads();  // every warp is done with the previous tile (and Qs, Gs are staged)
    stage<kD>(Ks, P, Kt, PT, K, p.st.k[2], j0, kBwdCols, p.S, p.D);
    stage<kD>(Vs, P, nullptr, 0, V, p.st.v[2], j0, kBwdCols, p.S, p.D);
    for (int j = threadIdx.x; j < kBwdCols; j += kThreads) vis[j] = j0 + j < p.S && (!km || km[j0 + j]);
    __syncthreads();
    float s[kBwdCols / 8][4], dp[kBwdCols / 8][4];
FLASH_UNROLL
    for (int n = 0; n < kBwdCols / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0;
    mma_rows<kBwdCols, kD>(s, Qs, P, warp * 16, Ks, P);   // S = Q K^T
    mma_rows<kBwdCols, kD>(dp, Gs, P, warp * 16, Vs, P);  // dP = dout V^T
FLASH_UNROLL
    for (int n = 0; n < kBwdCols / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 4; e++) {
        int c = n * 8 + 2 * t4 + (e & 1), r = e >> 1;
        bool ok = vis[c] && lse[r] != -INFINITY && causal_ok(p, row[r], j0 + c);
        float pr = ok ? expf(s[n][e] * p.scale - lse[r]) : 0.f;
        dp[n][e] = pr * (dp[n][e] - rd[r]);
      }
    mma_frag<kD, kBwdCols>(dq, dp, Kt, PT);  // dQ += dS K
  }

  In *dQ = head_at<In>(p.dq, p.st.dq, b, h);
FLASH_UNROLL
  for (int r = 0; r < 2; r++) {
    if (row[r] >= p.T) continue;
FLASH_UNROLL
    for (int n = 0; n < kD / 8; n++)
FLASH_UNROLL
      for (int e = 0; e < 2; e++) {
        int64_t d = n * 8 + 2 * t4 + e;
        if (d < p.D) store(dQ + row[r] * p.st.dq[2] + d, dq[n][2 * r + e] * p.scale);
      }
  }
}

// launches ---------------------------------------------------------------------------

// Launches kernel with kThreads threads and smem bytes of dynamic shared
// memory, opting in past the default 48 KiB (head size 128 needs it).
template <class Kernel> int launch(const char *op, Kernel kernel, int64_t blocks, size_t smem, const flash_params &p) {
  if (blocks <= 0) return 0;
  if (blocks > 0x7fffffff)
    return tide_fail("%s: %lld blocks of flash attention are more than one launch takes", op, (long long)blocks);
#if defined(__CUDACC__)
  if (smem > kDefaultSmem) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
      return tide_fail("%s: cannot give flash attention %zu bytes of shared memory: %s", op, smem, cudaGetErrorString(e));
  }
#else
  (void)kDefaultSmem;
#endif
  TIDE_CUDA_LAUNCH(op, kernel, (unsigned)blocks, kThreads, smem, p);
  return 0;
}

template <class In, int kD> int run_forward(const flash_params &p) {
  int64_t tiles = (p.T + kRows - 1) / kRows;
  return launch("attention", flash_fwd_kernel<In, kD>, tiles * p.B * p.H, fwd_smem<kD>(), p);
}

template <class In, int kD> int run_backward(const flash_params &p) {
  int64_t qrows = p.B * p.H * p.T;
  TIDE_TRY(launch("attention_backward", flash_rowdot_kernel<In>, (qrows + 3) / 4, 0, p));
  TIDE_TRY(launch("attention_backward", flash_dkv_kernel<In, kD>, (p.S + kRows - 1) / kRows * p.B * p.H, dkv_smem<kD>(), p));
  return launch("attention_backward", flash_dq_kernel<In, kD>, (p.T + kRows - 1) / kRows * p.B * p.H, dq_smem<kD>(), p);
}

// Checks both entries share; fills the sizes and masks of p.
int setup(flash_params *p, const char *op, int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal,
          int64_t q_offset, double scale, const uint8_t *key_mask, const tide_attn_strides *st, int32_t dtype) {
  if (q_offset < 0) return tide_fail("%s: q_offset must be >= 0, got %lld", op, (long long)q_offset);
  if (dtype != TIDE_F32 && dtype != TIDE_BF16)
    return tide_fail("%s: flash attention has no kernel for dtype %s (f32 and bf16)", op, tide_dtype_name(dtype));
  if (D < 16 || D > 128 || D % 16 != 0)
    return tide_fail("%s: flash attention needs a head size D that is a multiple of 16 from 16 to 128, got D = %lld", op,
                     (long long)D);
  p->km = key_mask, p->st = *st;
  p->B = B, p->H = H, p->T = T, p->S = S, p->D = D, p->causal = causal, p->scale = (float)scale;
  p->qoff = causal ? (q_offset < S ? q_offset : S) : 0;  // past S every key is seen: no overflow in t + qoff
  return 0;
}

}  // namespace

int tide_cuda_flash_forward(void *out, void *lse, const void *q, const void *k, const void *v, const uint8_t *key_mask,
                            int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset,
                            double scale, const tide_attn_strides *st, int32_t dtype) {
  flash_params p;
  memset(&p, 0, sizeof p);
  TIDE_TRY(setup(&p, "attention", B, H, T, S, D, causal, q_offset, scale, key_mask, st, dtype));
  p.q = q, p.k = k, p.v = v, p.out = out, p.lse_out = (float *)lse;
  if (dtype == TIDE_BF16) return D <= 64 ? run_forward<uint16_t, 64>(p) : run_forward<uint16_t, 128>(p);
  return D <= 64 ? run_forward<float, 64>(p) : run_forward<float, 128>(p);
}

int tide_cuda_flash_backward(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q, const void *k,
                             const void *v, const void *out, const void *lse, const uint8_t *key_mask, int64_t B,
                             int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                             const tide_attn_strides *st, int32_t dtype) {
  flash_params p;
  memset(&p, 0, sizeof p);
  TIDE_TRY(setup(&p, "attention_backward", B, H, T, S, D, causal, q_offset, scale, key_mask, st, dtype));
  p.q = q, p.k = k, p.v = v, p.o = out, p.dout = dout, p.lse = (const float *)lse;
  p.rowdot = (const float *)rowdot, p.rowdot_out = (float *)rowdot;
  p.dq = dq, p.dk = dk, p.dv = dv;
  if (dtype == TIDE_BF16) return D <= 64 ? run_backward<uint16_t, 64>(p) : run_backward<uint16_t, 128>(p);
  return D <= 64 ? run_backward<float, 64>(p) : run_backward<float, 128>(p);
}
