// The reduce family on CUDA (kernels/reduce.h): sum, mean, prod, max, min,
// argmax and argmin over one dim or every element of a strided input, with
// the CPU kernel's semantics (kernels/cpu/reduce.c): float inputs accumulate
// in double, integer sums and products wrap in 64 bits, max/min propagate
// NaN and report the first occurrence (the first NaN when there is one).
//
// Determinism: a block of 256 threads is a TX x TY grid; each of the TX
// columns owns one output (a "unit"), its TY lanes walk the unit's elements
// in a fixed interleave and then fold their partials in a fixed tree through
// shared memory. TX and TY depend only on the shape, so a result has the same
// bits on every run. Where that gives too few blocks (few long reductions, or
// column sums of a tall matrix), the reduced dim is cut into pieces fixed by
// the shape, whose partials (in device scratch) a second launch folds the
// same way. The max/min updates are order-free (NaN first, then the larger value,
// ties to the lower index), as on the CPU, so any fold order gives torch's
// first-occurrence answer.
#include "common.cuh"
extern "C" {
#include "reduce.h"
#include "dtype.h"
}

namespace {

enum { K_SUM, K_PROD, K_MAX, K_MIN };
enum { THREADS = 256 };
// a launch of fewer than FEW_BLOCKS blocks cuts reductions of at least 2 * MIN_PIECE elements into
// pieces of at least MIN_PIECE, at most MAX_PIECES of them
enum { FEW_BLOCKS = 512, MIN_PIECE = 1024, MAX_PIECES = 1024 };

// A partial result: f for float inputs, i for integers, at the position of
// the max/min (INT64_MAX while nothing was seen).
struct Acc {
  double f;
  int64_t i;
  int64_t at;
};

struct Params {
  int32_t op, kind, dt, odt, isf, es, oes;
  int32_t tx_log;      // TX = 1 << tx_log outputs per block; TY = THREADS / TX lanes per output
  int64_t M, R;        // outputs, elements reduced per output
  int64_t P, piece;    // pieces per output (1: not split) and their length
  tide_cuda_strided<1> og;  // output flat index -> input element offset of its first element
  tide_cuda_strided<1> rg;  // reduction index (the logical position argmax reports) -> element offset
};

__device__ __forceinline__ void acc_init(Acc &a, int kind) {
  a.at = INT64_MAX;
  switch (kind) {
    case K_SUM: a.f = 0; a.i = 0; break;
    case K_PROD: a.f = 1; a.i = 1; break;
    case K_MAX: a.f = -INFINITY; a.i = INT64_MIN; break;
    default: a.f = INFINITY; a.i = INT64_MAX; break;
  }
}

// The CPU's order-free max/min updates (upd_max_f and friends).
__device__ __forceinline__ void upd_f(Acc &a, double v, int64_t i, bool want_max) {
  bool take = v != v ? (a.f == a.f || i < a.at) : ((want_max ? v > a.f : v < a.f) || (v == a.f && i < a.at));
  if (take) { a.f = v; a.at = i; }
}
__device__ __forceinline__ void upd_i(Acc &a, int64_t v, int64_t i, bool want_max) {
  if ((want_max ? v > a.i : v < a.i) || (v == a.i && i < a.at)) { a.i = v; a.at = i; }
}

// Folds element v (float vf or integer vi) at reduction index j into a.
__device__ __forceinline__ void acc_add(Acc &a, const char *p, int64_t j, const Params &q) {
  if (q.isf) {
    double v = tide_load_f64(p, q.dt);
    switch (q.kind) {
      case K_SUM: a.f += v; break;
      case K_PROD: a.f *= v; break;
      default: upd_f(a, v, j, q.kind == K_MAX); break;
    }
  } else {
    int64_t v = tide_load_i64(p, q.dt);
    if (q.dt == TIDE_BOOL) v = v != 0;
    switch (q.kind) {
      case K_SUM: a.i = (int64_t)((uint64_t)a.i + (uint64_t)v); break;  // wraps like torch's int64
      case K_PROD: a.i = (int64_t)((uint64_t)a.i * (uint64_t)v); break;
      default: upd_i(a, v, j, q.kind == K_MAX); break;
    }
  }
}

// Folds partial b into a.
__device__ __forceinline__ void acc_combine(Acc &a, const Acc &b, const Params &q) {
  switch (q.kind) {
    case K_SUM: a.f += b.f; a.i = (int64_t)((uint64_t)a.i + (uint64_t)b.i); break;
    case K_PROD: a.f *= b.f; a.i = (int64_t)((uint64_t)a.i * (uint64_t)b.i); break;
    default:
      if (b.at == INT64_MAX) break;  // an empty partial
      if (q.isf) upd_f(a, b.f, b.at, q.kind == K_MAX);
      else upd_i(a, b.i, b.at, q.kind == K_MAX);
      break;
  }
}

__device__ __forceinline__ void store_int(char *p, int32_t dt, int64_t v) {
  switch (dt) {
    case TIDE_I32: *(int32_t *)p = (int32_t)v; break;
    case TIDE_U8: case TIDE_BOOL: *(uint8_t *)p = (uint8_t)v; break;
    case TIDE_U16: *(uint16_t *)p = (uint16_t)v; break;
    default: *(int64_t *)p = v; break;
  }
}

// Writes output o (and its index) from the final accumulator, as the CPU's finish().
__device__ void finish(const Params &q, const Acc &a, int64_t o, char *out, int64_t *idx) {
  char *dst = out + o * q.oes;
  switch (q.op) {
    case TIDE_SUM: case TIDE_PROD:
      if (q.isf) tide_store_f64(dst, q.odt, a.f);
      else *(int64_t *)dst = a.i;
      break;
    case TIDE_MEAN:  // empty: 0 / 0 gives NaN like torch
      tide_store_f64(dst, q.odt, (q.isf ? a.f : (double)a.i) / (double)q.R);
      break;
    case TIDE_MAX: case TIDE_MIN:
      if (q.isf) tide_store_f64(dst, q.odt, a.f);
      else store_int(dst, q.odt, a.i);
      if (idx) idx[o] = a.at;
      break;
    default:  // argmax, argmin
      *(int64_t *)dst = a.at;
      break;
  }
}

// Element offset of index i in g; the common 1-d case without a division.
__device__ __forceinline__ int64_t offset_of(const tide_cuda_strided<1> &g, int64_t i) {
  if (g.ndim == 1) return i * g.stride[0][0];
  return g.offset(0, i);
}

// MODE 0: input -> outputs; 1: input pieces -> partials (unit = piece * M + o);
// 2: the P partials of each output -> outputs.
template <int MODE>
__global__ void reduce_kernel(Params q, const char *in, const Acc *part_in, char *out, int64_t *idx, Acc *part_out) {
  __shared__ Acc sm[THREADS];
  const int tid = threadIdx.x, tx = 1 << q.tx_log, ty = THREADS >> q.tx_log;
  const int x = tid & (tx - 1), y = tid >> q.tx_log;
  const int64_t units = MODE == 1 ? q.M * q.P : q.M;
  const int64_t ntiles = (units + tx - 1) / tx;
  for (int64_t tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    int64_t u = tile * tx + x;
    Acc a;
    acc_init(a, q.kind);
    if (u < units) {
      if (MODE == 2) {
        for (int64_t k = y; k < q.P; k += ty) acc_combine(a, part_in[k * q.M + u], q);
      } else {
        // pieces are the slow index of the units, so neighbouring threads take neighbouring outputs
        int64_t o = MODE == 1 ? u % q.M : u;
        int64_t j0 = MODE == 1 ? (u / q.M) * q.piece : 0;
        int64_t j1 = MODE == 1 ? (j0 + q.piece < q.R ? j0 + q.piece : q.R) : q.R;
        const char *base = in + offset_of(q.og, o) * q.es;
        for (int64_t j = j0 + y; j < j1; j += ty) acc_add(a, base + offset_of(q.rg, j) * q.es, j, q);
      }
    }
    sm[tid] = a;
    __syncthreads();
    for (int s = ty >> 1; s > 0; s >>= 1) {  // the fixed tree over the TY lanes of each output
      if (y < s) {
        Acc b = sm[tid + (s << q.tx_log)];
        Acc c = sm[tid];
        acc_combine(c, b, q);
        sm[tid] = c;
      }
      __syncthreads();
    }
    if (y == 0 && u < units) {
      if (MODE == 1) part_out[u] = sm[tid];
      else finish(q, sm[tid], u, out, idx);
    }
    __syncthreads();  // sm is rewritten by the next tile
  }
}

int ceil_log2(int64_t n) {
  int l = 0;
  while (((int64_t)1 << l) < n) l++;
  return l;
}

// TX for row mode: enough lanes per output for R elements (up to all 256), the rest of the block on other outputs.
int row_tx_log(int64_t R) {
  int ly = ceil_log2(R < 1 ? 1 : R);
  if (ly > 8) ly = 8;
  return 8 - ly;
}

unsigned grid_for(int64_t units, int tx_log) {
  int64_t tiles = (units + ((int64_t)1 << tx_log) - 1) >> tx_log;
  if (tiles < 1) tiles = 1;
  if (tiles > 65535 * 8) tiles = 65535 * 8;
  return (unsigned)tiles;
}

int reduce(void *outp, int64_t *indices, const void *inp, int32_t op, int32_t dtype, int32_t odt, int32_t nd,
           const int64_t *shape, const int64_t *stride, int32_t dim) {
  int all = dim < 0 || nd == 0;
  Params q;
  memset(&q, 0, sizeof q);
  q.op = op;
  q.kind = (op == TIDE_SUM || op == TIDE_MEAN) ? K_SUM : op == TIDE_PROD ? K_PROD
         : (op == TIDE_MAX || op == TIDE_ARGMAX) ? K_MAX : K_MIN;
  q.dt = dtype;
  q.odt = odt;
  q.isf = tide_is_float(dtype);
  q.es = (int32_t)tide_dtype_size(dtype);
  q.oes = (int32_t)tide_dtype_size(odt);
  int64_t numel = 1;
  for (int32_t i = 0; i < nd; i++) numel *= shape[i];
  bool column = false;
  if (all) {
    // every element: the reduction index is the row-major flat index (what argmax reports); size-1 dims
    // dropped and dims merged where one is contiguous in the next, which keeps that index
    q.M = 1;
    q.R = numel;
    int32_t m = 0;
    for (int32_t i = 0; i < nd; i++) {
      if (shape[i] == 1) continue;
      if (m > 0 && q.rg.stride[0][m - 1] == stride[i] * shape[i]) {
        q.rg.shape[m - 1] *= shape[i];
        q.rg.stride[0][m - 1] = stride[i];
        continue;
      }
      q.rg.shape[m] = shape[i];
      q.rg.stride[0][m] = stride[i];
      m++;
    }
    q.rg.ndim = m;
    q.og.ndim = 0;
  } else {
    q.R = shape[dim];
    q.M = numel / (q.R > 0 ? q.R : 1);
    if (q.R == 0) {
      q.M = 1;
      for (int32_t i = 0; i < nd; i++) if (i != dim) q.M *= shape[i];
    }
    q.rg.ndim = 1;
    q.rg.shape[0] = q.R;
    q.rg.stride[0][0] = stride[dim];
    int32_t m = 0;
    for (int32_t i = 0; i < nd; i++) {
      if (i == dim || shape[i] == 1) continue;
      q.og.shape[m] = shape[i];
      q.og.stride[0][m] = stride[i];
      m++;
    }
    q.og.ndim = m;
    // column mode: neighbouring outputs lie closer in memory than neighbouring elements of the reduced
    // dim (a sum over the rows of a row-major matrix), so 32 outputs side by side read coalesced rows
    if (m > 0 && q.og.shape[m - 1] >= 16 && q.R > 0) {
      int64_t os = q.og.stride[0][m - 1] < 0 ? -q.og.stride[0][m - 1] : q.og.stride[0][m - 1];
      int64_t rs = stride[dim] < 0 ? -stride[dim] : stride[dim];
      column = os < rs;
    }
  }
  if (q.M == 0) return 0;
  char *out = (char *)outp;
  const char *in = (const char *)inp;
  int tx_log = column ? 5 : row_tx_log(q.R);  // column mode: 32 outputs x 8 lanes
  int64_t blocks = (q.M + ((int64_t)1 << tx_log) - 1) >> tx_log;
  if (blocks < FEW_BLOCKS && q.R >= 2 * MIN_PIECE) {
    // too few blocks for the GPU (few outputs, or a column sum of a tall matrix): the reduced dim is cut
    // into P pieces (by shape alone) reduced by P times as many blocks, then the partials are folded
    int64_t P = (FEW_BLOCKS + blocks - 1) / blocks, most = q.R / MIN_PIECE;
    if (P > most) P = most;
    if (P > MAX_PIECES) P = MAX_PIECES;
    q.piece = (q.R + P - 1) / P;
    q.P = (q.R + q.piece - 1) / q.piece;
    size_t bytes = sizeof(Acc) * (size_t)(q.M * q.P);
    Acc *part = (Acc *)tide_cuda_scratch(bytes);
    if (!part) return -1;
    q.tx_log = column ? 5 : row_tx_log(q.piece);
    LAUNCH(reduce_kernel<1>, grid_for(q.M * q.P, q.tx_log), THREADS, 0, TIDE_CUDA_STREAM, q, in, (const Acc *)nullptr,
           out, indices, part);
    int rc = tide_cuda_after_launch("reduce");
    if (rc == 0) {
      q.tx_log = q.M >= 32 ? 5 : row_tx_log(q.P);
      LAUNCH(reduce_kernel<2>, grid_for(q.M, q.tx_log), THREADS, 0, TIDE_CUDA_STREAM, q, in, (const Acc *)part,
             out, indices, (Acc *)nullptr);
      rc = tide_cuda_after_launch("reduce");
    }
    tide_cuda_scratch_free(part, bytes);  // stream-ordered: the next use of the block runs after these kernels
    return rc;
  }
  q.P = 1;
  q.piece = q.R;
  q.tx_log = tx_log;
  TIDE_CUDA_LAUNCH("reduce", reduce_kernel<0>, grid_for(q.M, q.tx_log), THREADS, 0, q, in, (const Acc *)nullptr,
                   out, indices, (Acc *)nullptr);
  return 0;
}

}  // namespace

extern "C" const struct tide_reduce_kernels tide_cuda_reduce = {reduce};
