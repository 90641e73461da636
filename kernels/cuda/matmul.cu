// The matmul family on CUDA (kernels/matmul.h). Float products go to
// cuBLASLt through the table of cublaslt_api.h (the library loaded with
// dlopen on the first matmul; the reference GEMM of
// tests/cudaemu/cublaslt_emu.cc under the emulator); integer products are a
// plain kernel summing in 64 bits with wrap-around.
//
// cuBLASLt is column-major, the contract row-major. A row-major X (r x c,
// leading dim ld) is the column-major X^T (c x r, same ld), so the row-major
// C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T:
// cuBLASLt's A is our B with our transb, its B is our A with our transa, and
// its D is C^T, n x m with ld n. No ORDER_ROW attribute is used.
#include "common.cuh"
extern "C" {
#include "matmul.h"
#include "dtype.h"
}
#include "cublaslt_api.h"
#include <limits.h>
#include <mutex>

// TF32 for f32 products (CUBLAS_COMPUTE_32F_FAST_TF32): off unless set, as in PyTorch.
static int32_t allow_tf32 = 0;
static std::mutex lt_mutex;  // guards allow_tf32 and the handles

static int set_allow_tf32(int32_t on) {
  std::lock_guard<std::mutex> g(lt_mutex);
  int32_t was = allow_tf32;
  allow_tf32 = on != 0;
  return was;
}

// One cuBLASLt handle per device, created on the device's first matmul and kept for the process.
enum { MAX_DEVICES = 64 };
static tide_lt_handle lt_handles[MAX_DEVICES];

// cuBLASLt's recommended workspace on Hopper (it asks for no more than 32 MiB); from the caching allocator.
static const size_t kWorkspace = (size_t)32 << 20;

static int lt_fail(const tide_cublaslt_api *lt, tide_lt_status st, const char *what, int64_t m, int64_t n, int64_t k,
                   int64_t batch) {
  return tide_fail("matmul on cuda: %s failed: %s (m %lld, n %lld, k %lld, batch %lld)", what, lt->GetStatusString(st),
                   (long long)m, (long long)n, (long long)k, (long long)batch);
}

// Alignment in bytes (a power of two, at most 256) that every one of count pointers p + i * stride_bytes has.
static uint32_t alignment(const void *p, int64_t stride_bytes, int64_t count) {
  uint64_t bits = (uint64_t)(uintptr_t)p | 256u;
  if (count > 1) bits |= (uint64_t)stride_bytes;
  return (uint32_t)(bits & (~bits + 1));
}

// The descriptors of one cuBLASLt call, destroyed with it.
struct LtCall {
  const tide_cublaslt_api *lt;
  tide_lt_desc desc = nullptr;
  tide_lt_layout la = nullptr, lb = nullptr, lc = nullptr;
  tide_lt_pref pref = nullptr;
  explicit LtCall(const tide_cublaslt_api *api) : lt(api) {}
  ~LtCall() {
    if (pref) lt->MatmulPreferenceDestroy(pref);
    if (lc) lt->MatrixLayoutDestroy(lc);
    if (lb) lt->MatrixLayoutDestroy(lb);
    if (la) lt->MatrixLayoutDestroy(la);
    if (desc) lt->MatmulDescDestroy(desc);
  }
};

static tide_lt_status layout(const tide_cublaslt_api *lt, tide_lt_layout *l, int32_t type, uint64_t rows, uint64_t cols,
                             int64_t ld, int32_t count, int64_t stride) {
  tide_lt_status st = lt->MatrixLayoutCreate(l, type, rows, cols, ld);
  if (st == TIDE_LT_SUCCESS && count > 1) {
    st = lt->MatrixLayoutSetAttribute(*l, TIDE_LT_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (st == TIDE_LT_SUCCESS) st = lt->MatrixLayoutSetAttribute(*l, TIDE_LT_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
  }
  return st;
}

// count strided products on the stream: C_e = op(A_e) op(B_e), e < count, A_e at a + e * sa elements (likewise B,
// C with sc), in row-major terms; see the top of the file for the column-major description given to cuBLASLt.
static int lt_gemm(const tide_cublaslt_api *lt, tide_lt_handle h, void *ws, void *c, const void *a, const void *b,
                   int32_t dtype, int64_t m, int64_t n, int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb,
                   int32_t count, int64_t sa, int64_t sb, int64_t sc, int32_t tf32) {
  int32_t type, compute, scale;
  if (dtype == TIDE_F64) type = TIDE_LT_R_64F, compute = TIDE_LT_COMPUTE_64F, scale = TIDE_LT_R_64F;
  else if (dtype == TIDE_F32) type = TIDE_LT_R_32F, compute = tf32 ? TIDE_LT_COMPUTE_32F_FAST_TF32 : TIDE_LT_COMPUTE_32F, scale = TIDE_LT_R_32F;
  else type = TIDE_LT_R_16BF, compute = TIDE_LT_COMPUTE_32F, scale = TIDE_LT_R_32F;  // bf16 in and out, f32 sums
  int64_t es = tide_dtype_size(dtype);
  LtCall call(lt);
  int32_t opa = transb == TIDE_GEMM_T ? TIDE_LT_OP_T : TIDE_LT_OP_N;  // cuBLASLt's A is our B
  int32_t opb = transa == TIDE_GEMM_T ? TIDE_LT_OP_T : TIDE_LT_OP_N;
  tide_lt_status st = lt->MatmulDescCreate(&call.desc, compute, scale);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_TRANSA, &opa, sizeof opa);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_TRANSB, &opb, sizeof opb);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulDesc", m, n, k, count);
  // stored shapes, column-major: our B (k x n row-major) is n x k; transposed (n x k row-major) it is k x n
  st = layout(lt, &call.la, type, transb == TIDE_GEMM_T ? k : n, transb == TIDE_GEMM_T ? n : k, ldb, count, sb);
  if (st == TIDE_LT_SUCCESS)
    st = layout(lt, &call.lb, type, transa == TIDE_GEMM_T ? m : k, transa == TIDE_GEMM_T ? k : m, lda, count, sa);
  if (st == TIDE_LT_SUCCESS) st = layout(lt, &call.lc, type, n, m, n, count, sc);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatrixLayout", m, n, k, count);
  uint64_t wsz = kWorkspace;
  uint32_t al_a = alignment(b, sb * es, count), al_b = alignment(a, sa * es, count), al_c = alignment(c, sc * es, count);
  st = lt->MatmulPreferenceCreate(&call.pref);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
  if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulPreference", m, n, k, count);
  tide_lt_heuristic heur;
  int found = 0;
  st = lt->MatmulAlgoGetHeuristic(h, call.desc, call.la, call.lb, call.lc, call.lc, call.pref, 1, &heur, &found);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulAlgoGetHeuristic", m, n, k, count);
  if (found < 1) return lt_fail(lt, TIDE_LT_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)", m, n, k, count);
  // alpha 1, beta 0 (C is then not read; C and D are the same buffer and layout), in the scale type
  double one64 = 1, zero64 = 0;
  float one32 = 1, zero32 = 0;
  const void *alpha = scale == TIDE_LT_R_64F ? (const void *)&one64 : (const void *)&one32;
  const void *beta = scale == TIDE_LT_R_64F ? (const void *)&zero64 : (const void *)&zero32;
  st = lt->Matmul(h, call.desc, alpha, b, call.la, a, call.lb, beta, c, call.lc, c, call.lc, &heur.algo, ws, kWorkspace,
                  (void *)TIDE_CUDA_STREAM);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmul", m, n, k, count);
  return tide_cuda_after_launch("matmul");
}

// One batch dim after merging: entries and the element strides of A, B and C over it.
struct BatchDim {
  int64_t size, sa, sb, sc;
};

static int gemm_batched(void *c, const void *a, const void *b, int32_t dtype, int64_t m, int64_t n, int64_t k,
                        int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t nb, const int64_t *bshape,
                        const int64_t *a_bstride, const int64_t *b_bstride) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64 && dtype != TIDE_BF16)
    return tide_fail("matmul on cuda: the GEMM takes f32, f64 or bf16, got %s", tide_dtype_name(dtype));
  int64_t es = tide_dtype_size(dtype), nbatch = 1;
  for (int32_t d = 0; d < nb; d++) nbatch *= bshape[d];
  if (m * n * nbatch == 0) return 0;
  if (k == 0) {  // an empty sum: all-zero bits are 0 in every float dtype
    cudaError_t e = cudaMemsetAsync(c, 0, (size_t)(nbatch * m * n * es), TIDE_CUDA_STREAM);
    if (e != cudaSuccess) return tide_fail("matmul on cuda: %s", cudaGetErrorString(e));
    return tide_cuda_after_launch("matmul");
  }
  // The batch as few strided dims as possible: size-1 dims dropped, a dim merged into the one before it when
  // every operand steps over both evenly. C is contiguous, so only A and B can stop a merge.
  BatchDim dims[TIDE_MAX_DIMS];
  int nd = 0;
  int64_t csz = m * n;
  for (int32_t d = nb - 1; d >= 0; d--) {  // innermost first
    if (bshape[d] == 1) continue;
    BatchDim x = {bshape[d], a_bstride[d], b_bstride[d], csz};
    csz *= bshape[d];
    if (nd > 0) {
      BatchDim &in = dims[nd - 1];
      if (x.sa == in.sa * in.size && x.sb == in.sb * in.size && x.sc == in.sc * in.size && in.size * x.size <= INT_MAX) {
        in.size *= x.size;
        continue;
      }
    }
    dims[nd++] = x;
  }
  // A product whose A entries continue each other's rows and whose B is shared is one tall GEMM
  // (the Linear layer's [B, T, C] @ [C, D]).
  if (nd == 1 && dims[0].sb == 0 && transa == TIDE_GEMM_N && dims[0].sa == lda * m && m * dims[0].size <= INT_MAX) {
    m *= dims[0].size;
    nd = 0;
  }
  const tide_cublaslt_api *lt = tide_cublaslt();
  if (!lt) return -1;
  int32_t dev = tide_cuda_current(), tf32;
  if (dev < 0 || dev >= MAX_DEVICES) return tide_fail("matmul on cuda: device %d out of range", dev);
  tide_lt_handle h;
  {
    std::lock_guard<std::mutex> g(lt_mutex);
    if (!lt_handles[dev]) {
      tide_lt_status st = lt->Create(&lt_handles[dev]);
      if (st != TIDE_LT_SUCCESS) {
        lt_handles[dev] = nullptr;
        return tide_fail("matmul on cuda: cublasLtCreate failed: %s", lt->GetStatusString(st));
      }
    }
    h = lt_handles[dev];
    tf32 = allow_tf32;
  }
  void *ws = tide_cuda_scratch(kWorkspace);
  if (!ws) return -1;
  // cuBLASLt runs the innermost dim as its strided batch; dims outside it loop here
  int64_t inner = nd ? dims[0].size : 1, sa = nd ? dims[0].sa : 0, sb = nd ? dims[0].sb : 0, sc = nd ? dims[0].sc : 0;
  int64_t outer = 1;
  for (int i = 1; i < nd; i++) outer *= dims[i].size;
  int rc = 0;
  for (int64_t o = 0; o < outer && rc == 0; o++) {
    int64_t oa = 0, ob = 0, oc = 0, r = o;
    for (int i = 1; i < nd; i++) {
      int64_t j = r % dims[i].size;
      r /= dims[i].size;
      oa += j * dims[i].sa, ob += j * dims[i].sb, oc += j * dims[i].sc;
    }
    rc = lt_gemm(lt, h, ws, (char *)c + oc * es, (const char *)a + oa * es, (const char *)b + ob * es, dtype, m, n, k,
                 transa, lda, transb, ldb, (int32_t)inner, sa, sb, sc, tf32);
  }
  tide_cuda_scratch_free(ws, kWorkspace);  // stream order keeps it safe for the next op to reuse
  return rc;
}

// ---- integers: one thread per element of C, a 64-bit sum that wraps ----

struct I64Batch {
  int32_t nb;
  int64_t shape[TIDE_MAX_DIMS], sa[TIDE_MAX_DIMS], sb[TIDE_MAX_DIMS];
};

__global__ void gemm_i64_kernel(int64_t *c, const int64_t *a, const int64_t *b, int64_t m, int64_t n, int64_t k,
                                int64_t a_sr, int64_t a_sc, int64_t b_sr, int64_t b_sc, I64Batch bt, int64_t total) {
  TIDE_CUDA_FOR(idx, total) {
    int64_t j = idx % n, t = idx / n, i = t % m, e = t / m;
    int64_t oa = 0, ob = 0;
    for (int d = bt.nb - 1; d >= 0 && e > 0; d--) {
      int64_t q = e / bt.shape[d], x = e - q * bt.shape[d];
      oa += x * bt.sa[d], ob += x * bt.sb[d];
      e = q;
    }
    const int64_t *A = a + oa + i * a_sr, *B = b + ob + j * b_sc;
    uint64_t s = 0;
    for (int64_t p = 0; p < k; p++) s += (uint64_t)A[p * a_sc] * (uint64_t)B[p * b_sr];
    c[idx] = (int64_t)s;
  }
}

static int gemm_batched_i64(int64_t *c, const int64_t *a, const int64_t *b, int64_t m, int64_t n, int64_t k,
                            int64_t a_sr, int64_t a_sc, int64_t b_sr, int64_t b_sc, int32_t nb, const int64_t *bshape,
                            const int64_t *a_bstride, const int64_t *b_bstride) {
  I64Batch bt;
  bt.nb = nb;
  int64_t total = m * n;
  for (int32_t d = 0; d < nb; d++) {
    bt.shape[d] = bshape[d], bt.sa[d] = a_bstride[d], bt.sb[d] = b_bstride[d];
    total *= bshape[d];
  }
  if (total == 0) return 0;
  TIDE_CUDA_LAUNCH("matmul", gemm_i64_kernel, tide_cuda_blocks(total), TIDE_CUDA_THREADS, 0, c, a, b, m, n, k, a_sr, a_sc,
                   b_sr, b_sc, bt, total);
  return 0;
}

extern "C" const struct tide_matmul_kernels tide_cuda_matmul = {gemm_batched, gemm_batched_i64, set_allow_tf32, nullptr, nullptr, 1};
