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
//
// Epilogues (gemm_epilogue, gemm_bgrad): a bias per column of C is a bias per
// row of D (cuBLASLt's BIAS, GELU_AUX_BIAS: "one element per row of D"); the
// GELU's input, C's shape, is an aux matrix n x m with ld n; the row sums of
// our op(A) are the sums over k of cuBLASLt's op(B) (BGRADB), the column sums
// of our op(B) those of its op(A) (BGRADA). Where cuBLASLt has no algorithm
// for an epilogue (the heuristic finds none, or the aux ld n is not a multiple
// of 8 as GELU_AUX requires), the plain product runs and a kernel here adds
// the bias, takes the GELU or sums the bias gradient, in a fixed order.
//
// The heuristic's answer is cached per problem (shape, types, transposes,
// leading dims, batch, epilogue, TF32, device and the pointers' alignments):
// repeated shapes, a training step's, skip cublasLtMatmulAlgoGetHeuristic.
#include "common.cuh"
extern "C" {
#include "matmul.h"
#include "dtype.h"
}
#include "cublaslt_api.h"
#include <limits.h>
#include <string.h>
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

// What an epilogue adds to one call: cuBLASLt's epilogue value and its pointers.
struct LtEpi {
  uint32_t epilogue = TIDE_LT_EPILOGUE_DEFAULT;
  void *bias = nullptr;  // read (BIAS), or written (BGRADA/B)
  void *aux = nullptr;   // GELU's input, n x m col-major with ld aux_ld
  int64_t aux_ld = 0;
};

// ---- the heuristic cache ----

// One problem as the heuristic sees it: every value it could choose an algorithm by.
struct LtKey {
  int64_t m, n, k, lda, ldb, sa, sb, sc, aux_ld;
  int32_t dtype, transa, transb, count, tf32, device;
  uint32_t epilogue, al_a, al_b, al_c, al_bias, al_aux;
  bool operator==(const LtKey &o) const { return memcmp(this, &o, sizeof *this) == 0; }
};
struct LtEntry {
  LtKey key;
  bool used, found;  // found: an algorithm exists (else the epilogue falls back)
  tide_lt_heuristic heur;
};
// Bounded: a model has a few dozen shapes; when the table fills, it is cleared and refilled.
enum { LT_CACHE = 256 };
static LtEntry lt_cache[LT_CACHE];

static uint64_t key_hash(const LtKey &k) {
  uint64_t h = 1469598103934665603ull;
  const unsigned char *p = (const unsigned char *)&k;
  for (size_t i = 0; i < sizeof k; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Looks a problem up (under lt_mutex): 1 and the entry when cached.
static int cache_find(const LtKey &key, LtEntry *out) {
  std::lock_guard<std::mutex> g(lt_mutex);
  uint64_t h = key_hash(key);
  for (int i = 0; i < LT_CACHE; i++) {
    LtEntry &e = lt_cache[(h + (uint64_t)i) % LT_CACHE];
    if (!e.used) break;
    if (e.key == key) {
      *out = e;
      return 1;
    }
  }
  return 0;
}

static void cache_put(const LtKey &key, bool found, const tide_lt_heuristic &heur) {
  std::lock_guard<std::mutex> g(lt_mutex);
  uint64_t h = key_hash(key);
  LtEntry *slot = nullptr;
  for (int i = 0; i < LT_CACHE; i++) {
    LtEntry &e = lt_cache[(h + (uint64_t)i) % LT_CACHE];
    if (!e.used || e.key == key) {
      slot = &e;
      break;
    }
  }
  if (!slot) {  // full: start over (a probe chain must not have holes, so a partial eviction would need rehashing)
    memset(lt_cache, 0, sizeof lt_cache);
    slot = &lt_cache[h % LT_CACHE];
  }
  slot->key = key, slot->used = true, slot->found = found, slot->heur = heur;
}

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
// With an epilogue: returns 1 (nothing run) where cuBLASLt has no algorithm for it, so the caller falls back.
static int lt_gemm(const tide_cublaslt_api *lt, tide_lt_handle h, void *ws, void *c, const void *a, const void *b,
                   int32_t dtype, int64_t m, int64_t n, int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb,
                   int32_t count, int64_t sa, int64_t sb, int64_t sc, int32_t tf32, const LtEpi &epi = LtEpi()) {
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
  const bool with_epi = epi.epilogue != TIDE_LT_EPILOGUE_DEFAULT;
  if (with_epi) {
    if (st == TIDE_LT_SUCCESS)
      st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_EPILOGUE, &epi.epilogue, sizeof epi.epilogue);
    if (st == TIDE_LT_SUCCESS && epi.bias)
      st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_BIAS_POINTER, &epi.bias, sizeof epi.bias);
    if (st == TIDE_LT_SUCCESS && epi.aux)
      st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_EPILOGUE_AUX_POINTER, &epi.aux, sizeof epi.aux);
    if (st == TIDE_LT_SUCCESS && epi.aux)
      st = lt->MatmulDescSetAttribute(call.desc, TIDE_LT_DESC_EPILOGUE_AUX_LD, &epi.aux_ld, sizeof epi.aux_ld);
  }
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulDesc", m, n, k, count);
  // stored shapes, column-major: our B (k x n row-major) is n x k; transposed (n x k row-major) it is k x n
  st = layout(lt, &call.la, type, transb == TIDE_GEMM_T ? k : n, transb == TIDE_GEMM_T ? n : k, ldb, count, sb);
  if (st == TIDE_LT_SUCCESS)
    st = layout(lt, &call.lb, type, transa == TIDE_GEMM_T ? m : k, transa == TIDE_GEMM_T ? k : m, lda, count, sa);
  if (st == TIDE_LT_SUCCESS) st = layout(lt, &call.lc, type, n, m, n, count, sc);
  if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatrixLayout", m, n, k, count);
  uint64_t wsz = kWorkspace;
  uint32_t al_a = alignment(b, sb * es, count), al_b = alignment(a, sa * es, count), al_c = alignment(c, sc * es, count);
  LtKey key;
  memset(&key, 0, sizeof key);  // padding included: the key is compared and hashed as bytes
  key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.sa = sa, key.sb = sb, key.sc = sc;
  key.aux_ld = epi.aux_ld, key.dtype = dtype, key.transa = transa, key.transb = transb, key.count = count;
  key.tf32 = tf32, key.device = tide_cuda_current(), key.epilogue = epi.epilogue;
  key.al_a = al_a, key.al_b = al_b, key.al_c = al_c;
  key.al_bias = alignment(epi.bias, 0, 1), key.al_aux = alignment(epi.aux, 0, 1);  // the heuristic reads them
  LtEntry hit;
  tide_lt_heuristic heur;
  memset(&heur, 0, sizeof heur);
  if (cache_find(key, &hit)) {
    if (!hit.found) return 1;
    heur = hit.heur;
  } else {
    st = lt->MatmulPreferenceCreate(&call.pref);
    if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
    if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
    if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
    if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
    if (st == TIDE_LT_SUCCESS) st = lt->MatmulPreferenceSetAttribute(call.pref, TIDE_LT_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
    if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulPreference", m, n, k, count);
    int found = 0;
    st = lt->MatmulAlgoGetHeuristic(h, call.desc, call.la, call.lb, call.lc, call.lc, call.pref, 1, &heur, &found);
    // an epilogue the library has no kernel for (NOT_SUPPORTED, or nothing found) falls back; a plain product must run
    if (with_epi && (st == TIDE_LT_NOT_SUPPORTED || (st == TIDE_LT_SUCCESS && found < 1))) {
      cache_put(key, false, heur);
      return 1;
    }
    if (st != TIDE_LT_SUCCESS) return lt_fail(lt, st, "cublasLtMatmulAlgoGetHeuristic", m, n, k, count);
    if (found < 1) return lt_fail(lt, TIDE_LT_NOT_SUPPORTED, "cublasLtMatmulAlgoGetHeuristic (no algorithm)", m, n, k, count);
    cache_put(key, true, heur);
  }
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

// The library, this device's handle (made on first use) and the TF32 setting.
static int lt_handle(const tide_cublaslt_api **lt_out, tide_lt_handle *h, int32_t *tf32) {
  const tide_cublaslt_api *lt = tide_cublaslt();
  if (!lt) return -1;
  int32_t dev = tide_cuda_current();
  if (dev < 0 || dev >= MAX_DEVICES) return tide_fail("matmul on cuda: device %d out of range", dev);
  std::lock_guard<std::mutex> g(lt_mutex);
  if (!lt_handles[dev]) {
    tide_lt_status st = lt->Create(&lt_handles[dev]);
    if (st != TIDE_LT_SUCCESS) {
      lt_handles[dev] = nullptr;
      return tide_fail("matmul on cuda: cublasLtCreate failed: %s", lt->GetStatusString(st));
    }
  }
  *lt_out = lt, *h = lt_handles[dev], *tf32 = allow_tf32;
  return 0;
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
  const tide_cublaslt_api *lt;
  tide_lt_handle h;
  int32_t tf32;
  if (lt_handle(&lt, &h, &tf32)) return -1;
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

// ---- epilogues: the fused forward and the bias gradient ----

// bf16 is stored as uint16_t (runtime/dtype.h's conversions); f32 arithmetic for f32 and bf16, f64 for f64
template <class T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };
static __device__ __forceinline__ float epi_load(float v) { return v; }
static __device__ __forceinline__ double epi_load(double v) { return v; }
static __device__ __forceinline__ float epi_load(uint16_t v) { return tide_bf16_to_f32(v); }
static __device__ __forceinline__ void epi_store(float *p, float v) { *p = v; }
static __device__ __forceinline__ void epi_store(double *p, double v) { *p = v; }
static __device__ __forceinline__ void epi_store(uint16_t *p, float v) { *p = tide_f32_to_bf16(v); }

static __device__ __forceinline__ float epi_exp(float v) { return expf(v); }
static __device__ __forceinline__ double epi_exp(double v) { return exp(v); }

// The fallback epilogue over C (m x n row-major) after a plain product: + bias[j], then the tanh GELU in the
// unary kernel's arrangement (a / (1 + e^(-2u))), its input kept in aux.
template <class T>
__global__ void bias_act_kernel(T *c, T *aux, const T *bias, int64_t n, int64_t total, int32_t epi) {
  typedef typename Acc<T>::type A;
  TIDE_CUDA_FOR(i, total) {
    A v = epi_load(c[i]);
    if (epi & TIDE_EPI_BIAS) v = v + epi_load(bias[i % n]);
    if (epi & TIDE_EPI_GELU) {
      epi_store(&aux[i], v);
      A u = (A)0.7978845608028654 * (v + (A)0.044715 * v * v * v);
      v = v / ((A)1 + epi_exp((A)-2 * u));
    }
    epi_store(&c[i], v);
  }
}

// The fallback bias gradient: out[r] = sum_p X(r, p) over p < len, X(r, p) at x[r * sr + p * sp], one warp per
// r: lane l sums p = l, l + 32, ... in order, then a butterfly in a fixed order (the same bits every run).
template <class T>
__global__ void bias_grad_kernel(T *out, const T *x, int64_t rows, int64_t len, int64_t sr, int64_t sp) {
  typedef typename Acc<T>::type A;
  int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    A s = 0;
    for (int64_t p = threadIdx.x % 32; p < len; p += 32) s += epi_load(x[r * sr + p * sp]);
    s = tide_warp_sum(s);
    if (threadIdx.x % 32 == 0) epi_store(&out[r], s);
  }
}

template <class T> static int launch_bias_act(void *c, void *aux, const void *bias, int64_t m, int64_t n, int32_t epi) {
  int64_t total = m * n;
  TIDE_CUDA_LAUNCH("linear", bias_act_kernel<T>, tide_cuda_blocks(total), TIDE_CUDA_THREADS, 0, (T *)c, (T *)aux,
                   (const T *)bias, n, total, epi);
  return 0;
}

template <class T> static int launch_bias_grad(void *out, const void *x, int64_t rows, int64_t len, int64_t sr, int64_t sp) {
  const int threads = 256, per_block = threads / 32;
  int64_t blocks = (rows + per_block - 1) / per_block;
  if (blocks > 4096) blocks = 4096;
  TIDE_CUDA_LAUNCH("linear_backward", bias_grad_kernel<T>, (int)blocks, threads, 0, (T *)out, (const T *)x, rows, len, sr, sp);
  return 0;
}

static int check_dtype(const char *op, int32_t dtype) {
  if (dtype != TIDE_F32 && dtype != TIDE_F64 && dtype != TIDE_BF16)
    return tide_fail("%s on cuda: the GEMM takes f32, f64 or bf16, got %s", op, tide_dtype_name(dtype));
  return 0;
}

static int gemm_epilogue(void *c, void *aux, const void *a, const void *b, const void *bias, int32_t dtype, int64_t m,
                         int64_t n, int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t epilogue) {
  if (check_dtype("linear", dtype)) return -1;
  if (epilogue & ~(TIDE_EPI_BIAS | TIDE_EPI_GELU)) return tide_fail("linear on cuda: unknown epilogue %d", epilogue);
  if (((epilogue & TIDE_EPI_BIAS) && !bias) || ((epilogue & TIDE_EPI_GELU) && !aux))
    return tide_fail("linear on cuda: epilogue %d without its bias or aux buffer", epilogue);
  if (m < 1 || n < 1 || k < 1 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return tide_fail("linear on cuda: m %lld, n %lld, k %lld out of range", (long long)m, (long long)n, (long long)k);
  const tide_cublaslt_api *lt;
  tide_lt_handle h;
  int32_t tf32;
  if (lt_handle(&lt, &h, &tf32)) return -1;
  void *ws = tide_cuda_scratch(kWorkspace);
  if (!ws) return -1;
  LtEpi epi;
  bool gelu = (epilogue & TIDE_EPI_GELU) != 0, with_bias = (epilogue & TIDE_EPI_BIAS) != 0;
  if (gelu) epi.epilogue = with_bias ? TIDE_LT_EPILOGUE_GELU_AUX_BIAS : TIDE_LT_EPILOGUE_GELU_AUX;
  else if (with_bias) epi.epilogue = TIDE_LT_EPILOGUE_BIAS;
  epi.bias = (void *)bias, epi.aux = gelu ? aux : nullptr, epi.aux_ld = gelu ? n : 0;
  // GELU_AUX wants the aux ld (n) a multiple of 8; otherwise the whole epilogue falls back
  int rc = 1;
  if (epilogue != 0 && !(gelu && n % 8 != 0))
    rc = lt_gemm(lt, h, ws, c, a, b, dtype, m, n, k, transa, lda, transb, ldb, 1, 0, 0, 0, tf32, epi);
  if (rc == 1) {  // the plain product (into C), then the epilogue's kernel
    rc = lt_gemm(lt, h, ws, c, a, b, dtype, m, n, k, transa, lda, transb, ldb, 1, 0, 0, 0, tf32);
    if (rc == 0 && epilogue != 0) {
      if (dtype == TIDE_F32) rc = launch_bias_act<float>(c, aux, bias, m, n, epilogue);
      else if (dtype == TIDE_F64) rc = launch_bias_act<double>(c, aux, bias, m, n, epilogue);
      else rc = launch_bias_act<uint16_t>(c, aux, bias, m, n, epilogue);
    }
  }
  tide_cuda_scratch_free(ws, kWorkspace);
  return rc;
}

static int gemm_bgrad(void *c, void *dbias, const void *a, const void *b, int32_t dtype, int64_t m, int64_t n, int64_t k,
                      int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t bgrad) {
  if (check_dtype("linear_backward", dtype)) return -1;
  if (bgrad != TIDE_BGRAD_NONE && bgrad != TIDE_BGRAD_A && bgrad != TIDE_BGRAD_B)
    return tide_fail("linear_backward on cuda: unknown bias gradient %d", bgrad);
  if (bgrad != TIDE_BGRAD_NONE && !dbias) return tide_fail("linear_backward on cuda: no buffer for the bias gradient");
  if (m < 1 || n < 1 || k < 1 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return tide_fail("linear_backward on cuda: m %lld, n %lld, k %lld out of range", (long long)m, (long long)n, (long long)k);
  const tide_cublaslt_api *lt;
  tide_lt_handle h;
  int32_t tf32;
  if (lt_handle(&lt, &h, &tf32)) return -1;
  void *ws = tide_cuda_scratch(kWorkspace);
  if (!ws) return -1;
  LtEpi epi;
  // our op(A) is cuBLASLt's op(B), and the other way round
  if (bgrad == TIDE_BGRAD_A) epi.epilogue = TIDE_LT_EPILOGUE_BGRADB;
  if (bgrad == TIDE_BGRAD_B) epi.epilogue = TIDE_LT_EPILOGUE_BGRADA;
  epi.bias = dbias;
  int rc = 1;
  if (bgrad != TIDE_BGRAD_NONE) rc = lt_gemm(lt, h, ws, c, a, b, dtype, m, n, k, transa, lda, transb, ldb, 1, 0, 0, 0, tf32, epi);
  if (rc == 1) {
    rc = lt_gemm(lt, h, ws, c, a, b, dtype, m, n, k, transa, lda, transb, ldb, 1, 0, 0, 0, tf32);
    if (rc == 0 && bgrad != TIDE_BGRAD_NONE) {
      // op(A)(i, p) = A[i lda + p] (N) or A[p lda + i] (T); op(B)(p, j) = B[p ldb + j] (N) or B[j ldb + p] (T)
      const void *x = bgrad == TIDE_BGRAD_A ? a : b;
      int64_t rows = bgrad == TIDE_BGRAD_A ? m : n, sr, sp;
      if (bgrad == TIDE_BGRAD_A) sr = transa == TIDE_GEMM_N ? lda : 1, sp = transa == TIDE_GEMM_N ? 1 : lda;
      else sr = transb == TIDE_GEMM_N ? 1 : ldb, sp = transb == TIDE_GEMM_N ? ldb : 1;
      if (dtype == TIDE_F32) rc = launch_bias_grad<float>(dbias, x, rows, k, sr, sp);
      else if (dtype == TIDE_F64) rc = launch_bias_grad<double>(dbias, x, rows, k, sr, sp);
      else rc = launch_bias_grad<uint16_t>(dbias, x, rows, k, sr, sp);
    }
  }
  tide_cuda_scratch_free(ws, kWorkspace);
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

extern "C" const struct tide_matmul_kernels tide_cuda_matmul = {gemm_batched, gemm_batched_i64, set_allow_tf32, gemm_epilogue,
                                                                  gemm_bgrad, 1};
