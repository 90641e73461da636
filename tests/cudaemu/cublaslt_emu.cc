// cuBLASLt under the emulator: the backend's matmul calls (kernels/cuda/matmul.cu)
// reach the table of kernels/cuda/cublaslt_api.h, filled here with a
// reference GEMM instead of the library. It implements the descriptor
// semantics the library documents and rejects, with a status and a reason,
// whatever the library would reject or the backend should never send, so an
// argument mistake fails (or gives wrong numbers) on the CPU:
//
// - layouts: type (R_32F, R_64F, R_16BF), rows, cols, ld, order (COL by
//   default: element (i, j) at i + j*ld, ld >= rows; ROW: i*ld + j, ld >= cols),
//   BATCH_COUNT (default 1) and STRIDED_BATCH_OFFSET (elements, default 0; 0
//   broadcasts). rows, cols >= 1; an attribute of the wrong size or one not
//   listed is refused.
// - the matmul desc: compute type and scale type (32F or 32F_FAST_TF32 with a
//   R_32F scale, 64F with R_64F), TRANSA/TRANSB (N or T), POINTER_MODE (host
//   only). Types: A, B, C, D all 32F or all 64F, or A, B 16BF with C, D 16BF or
//   32F (compute 32F). op(A) is m x k, op(B) k x n, C and D m x n; A, B, C and D
//   have the same batch count; C and D may be the same buffer only with the same
//   layout.
// - D = alpha * sum_p op(A)(i,p) op(B)(p,j) + beta * C, alpha and beta read as
//   the scale type; beta == 0 does not read C. 32F sums in float (FAST_TF32
//   rounds each input to 10 mantissa bits first), 64F in double, each in p
//   order; D is rounded to its type (bf16 to nearest even).
// - epilogues (CUBLASLT_MATMUL_DESC_EPILOGUE; cublasLt.h documents them):
//   DEFAULT; BIAS (+ bias[i], one element per row of D, packed, read as D's
//   type); GELU, GELU_BIAS (the bias, then the tanh GELU
//   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), on the unrounded sum);
//   GELU_AUX, GELU_AUX_BIAS (the GELU's input also written, rounded to the
//   aux type, to EPILOGUE_AUX_POINTER with EPILOGUE_AUX_LD); BGRADA / BGRADB
//   (the plain product, and the sums over k of op(A)'s rows / op(B)'s columns,
//   summed as the product is, written to BIAS_POINTER in D's type). Refused
//   as the library refuses them: a bias or aux pointer missing, an aux ld
//   below D's rows or not a multiple of 8, a bias or aux type other than D's
//   (the library's rule for these types), other epilogues, and epilogues on
//   batched layouts or with 64F (not emulated: the backend falls back to its
//   own epilogue kernels, which the f64 tests thus cover). The heuristic reads the bias and aux
//   pointers for their alignment, as the library does; cublasLtMatmul refuses
//   pointers less aligned than the ones the algo was found for.
// - the heuristic: the preference's workspace limit and minimum alignments
//   (A, B, C, D; default 256) are remembered in the returned algo; cublasLtMatmul
//   requires an algo from the heuristic for the same problem, a workspace of
//   the size promised, and every batch entry's pointer aligned as declared.
#include "cublaslt_api.h"
#include "cudaemu.h"
extern "C" {
#include "tide.h"
#include "dtype.h"
}
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <memory>
#include <string>

namespace {

// the reason for the last refusal, appended to the status string
std::string reason;

tide_lt_status refuse(tide_lt_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tide_lt_status refuse(tide_lt_status st, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  reason = buf;
  return st;
}

const uint64_t kMagic = 0x746964656c74656dull;  // marks our objects and algos

struct Layout {
  uint64_t magic = kMagic;
  int32_t type, order = TIDE_LT_ORDER_COL, count = 1;
  uint64_t rows, cols;
  int64_t ld, stride = 0;
};
struct Desc {
  uint64_t magic = kMagic;
  int32_t compute, scale, pointer_mode = 0, transa = TIDE_LT_OP_N, transb = TIDE_LT_OP_N;
  uint32_t epilogue = TIDE_LT_EPILOGUE_DEFAULT;
  void *bias = nullptr, *aux = nullptr;
  int64_t aux_ld = 0;
  int32_t aux_type = -1, bias_type = -1;
};
struct Pref {
  uint64_t magic = kMagic;
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};
struct Context {
  uint64_t magic = kMagic;
};
// what a heuristic result carries (fits tide_lt_algo's 64 bytes)
struct Algo {
  uint64_t magic, key;
  uint32_t align[4];
  uint32_t align_bias, align_aux;  // of the bias and aux pointers the heuristic saw
};
static_assert(sizeof(Algo) <= sizeof(tide_lt_algo), "algo");

int type_size(int32_t t) { return t == TIDE_LT_R_64F ? 8 : t == TIDE_LT_R_32F ? 4 : t == TIDE_LT_R_16BF ? 2 : 0; }

template <class T> bool valid(const T *p) { return p && p->magic == kMagic; }

template <class V> tide_lt_status take(V *dst, const void *buf, size_t size, const char *what) {
  if (!buf || size != sizeof(V)) return refuse(TIDE_LT_INVALID_VALUE, "%s: %zu bytes, expected %zu", what, size, sizeof(V));
  memcpy(dst, buf, sizeof(V));
  return TIDE_LT_SUCCESS;
}

tide_lt_status Create(tide_lt_handle *h) {
  if (!h) return refuse(TIDE_LT_INVALID_VALUE, "cublasLtCreate: NULL handle");
  *h = (tide_lt_handle) new Context();
  return TIDE_LT_SUCCESS;
}

tide_lt_status Destroy(tide_lt_handle h) {
  Context *x = (Context *)h;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "destroying a bad handle");
  x->magic = 0;
  delete x;
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatmulDescCreate(tide_lt_desc *d, int32_t compute, int32_t scale) {
  if (!d) return refuse(TIDE_LT_INVALID_VALUE, "cublasLtMatmulDescCreate: NULL desc");
  bool ok = ((compute == TIDE_LT_COMPUTE_32F || compute == TIDE_LT_COMPUTE_32F_FAST_TF32) && scale == TIDE_LT_R_32F) ||
            (compute == TIDE_LT_COMPUTE_64F && scale == TIDE_LT_R_64F);
  if (!ok) return refuse(TIDE_LT_NOT_SUPPORTED, "compute type %d with scale type %d is not emulated", compute, scale);
  Desc *x = new Desc();
  x->compute = compute, x->scale = scale;
  *d = (tide_lt_desc)x;
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatmulDescSetAttribute(tide_lt_desc d, int32_t attr, const void *buf, size_t size) {
  Desc *x = (Desc *)d;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "matmul desc: not a desc");
  tide_lt_status st;
  switch (attr) {
    case TIDE_LT_DESC_COMPUTE_TYPE: return take(&x->compute, buf, size, "COMPUTE_TYPE");
    case TIDE_LT_DESC_SCALE_TYPE: return take(&x->scale, buf, size, "SCALE_TYPE");
    case TIDE_LT_DESC_POINTER_MODE:
      st = take(&x->pointer_mode, buf, size, "POINTER_MODE");
      if (st == TIDE_LT_SUCCESS && x->pointer_mode != 0)
        return refuse(TIDE_LT_NOT_SUPPORTED, "POINTER_MODE %d is not emulated (host only)", x->pointer_mode);
      return st;
    case TIDE_LT_DESC_TRANSA:
    case TIDE_LT_DESC_TRANSB: {
      int32_t op = 0;
      st = take(&op, buf, size, attr == TIDE_LT_DESC_TRANSA ? "TRANSA" : "TRANSB");
      if (st != TIDE_LT_SUCCESS) return st;
      if (op != TIDE_LT_OP_N && op != TIDE_LT_OP_T) return refuse(TIDE_LT_INVALID_VALUE, "transpose op %d", op);
      (attr == TIDE_LT_DESC_TRANSA ? x->transa : x->transb) = op;
      return TIDE_LT_SUCCESS;
    }
    case TIDE_LT_DESC_EPILOGUE: return take(&x->epilogue, buf, size, "EPILOGUE");
    case TIDE_LT_DESC_BIAS_POINTER: return take(&x->bias, buf, size, "BIAS_POINTER");
    case TIDE_LT_DESC_EPILOGUE_AUX_POINTER: return take(&x->aux, buf, size, "EPILOGUE_AUX_POINTER");
    case TIDE_LT_DESC_EPILOGUE_AUX_LD: return take(&x->aux_ld, buf, size, "EPILOGUE_AUX_LD");
    case TIDE_LT_DESC_EPILOGUE_AUX_DATA_TYPE: return take(&x->aux_type, buf, size, "EPILOGUE_AUX_DATA_TYPE");
    case TIDE_LT_DESC_BIAS_DATA_TYPE: return take(&x->bias_type, buf, size, "BIAS_DATA_TYPE");
    default: return refuse(TIDE_LT_NOT_SUPPORTED, "matmul desc attribute %d is not emulated", attr);
  }
}

bool has_bias(uint32_t e) {
  return e == TIDE_LT_EPILOGUE_BIAS || e == TIDE_LT_EPILOGUE_GELU_BIAS || e == TIDE_LT_EPILOGUE_GELU_AUX_BIAS;
}
bool has_gelu(uint32_t e) {
  return e == TIDE_LT_EPILOGUE_GELU || e == TIDE_LT_EPILOGUE_GELU_BIAS || e == TIDE_LT_EPILOGUE_GELU_AUX ||
         e == TIDE_LT_EPILOGUE_GELU_AUX_BIAS;
}
bool has_aux(uint32_t e) { return e == TIDE_LT_EPILOGUE_GELU_AUX || e == TIDE_LT_EPILOGUE_GELU_AUX_BIAS; }
bool is_bgrad(uint32_t e) { return e == TIDE_LT_EPILOGUE_BGRADA || e == TIDE_LT_EPILOGUE_BGRADB; }

// Alignment in bytes (a power of two, at most 256) of a pointer; 256 for NULL.
uint32_t ptr_align(const void *p) {
  uint64_t bits = (uint64_t)(uintptr_t)p | 256u;
  return (uint32_t)(bits & (~bits + 1));
}

tide_lt_status MatmulDescDestroy(tide_lt_desc d) {
  Desc *x = (Desc *)d;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "destroying a bad desc");
  x->magic = 0;
  delete x;
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatrixLayoutCreate(tide_lt_layout *l, int32_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (!l) return refuse(TIDE_LT_INVALID_VALUE, "cublasLtMatrixLayoutCreate: NULL layout");
  if (!type_size(type)) return refuse(TIDE_LT_NOT_SUPPORTED, "layout type %d is not emulated", type);
  Layout *x = new Layout();
  x->type = type, x->rows = rows, x->cols = cols, x->ld = ld;
  *l = (tide_lt_layout)x;
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatrixLayoutSetAttribute(tide_lt_layout l, int32_t attr, const void *buf, size_t size) {
  Layout *x = (Layout *)l;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "layout: not a layout");
  switch (attr) {
    case TIDE_LT_LAYOUT_TYPE: {
      uint32_t t = 0;
      tide_lt_status st = take(&t, buf, size, "LAYOUT_TYPE");
      if (st == TIDE_LT_SUCCESS) x->type = (int32_t)t;
      return st;
    }
    case TIDE_LT_LAYOUT_ORDER: return take(&x->order, buf, size, "LAYOUT_ORDER");
    case TIDE_LT_LAYOUT_ROWS: return take(&x->rows, buf, size, "LAYOUT_ROWS");
    case TIDE_LT_LAYOUT_COLS: return take(&x->cols, buf, size, "LAYOUT_COLS");
    case TIDE_LT_LAYOUT_LD: return take(&x->ld, buf, size, "LAYOUT_LD");
    case TIDE_LT_LAYOUT_BATCH_COUNT: return take(&x->count, buf, size, "BATCH_COUNT");
    case TIDE_LT_LAYOUT_STRIDED_BATCH_OFFSET: return take(&x->stride, buf, size, "STRIDED_BATCH_OFFSET");
    default: return refuse(TIDE_LT_NOT_SUPPORTED, "layout attribute %d is not emulated", attr);
  }
}

tide_lt_status MatrixLayoutDestroy(tide_lt_layout l) {
  Layout *x = (Layout *)l;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "destroying a bad layout");
  x->magic = 0;
  delete x;
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatmulPreferenceCreate(tide_lt_pref *p) {
  if (!p) return refuse(TIDE_LT_INVALID_VALUE, "cublasLtMatmulPreferenceCreate: NULL");
  *p = (tide_lt_pref) new Pref();
  return TIDE_LT_SUCCESS;
}

tide_lt_status MatmulPreferenceSetAttribute(tide_lt_pref p, int32_t attr, const void *buf, size_t size) {
  Pref *x = (Pref *)p;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "preference: not a preference");
  if (attr == TIDE_LT_PREF_MAX_WORKSPACE_BYTES) return take(&x->workspace, buf, size, "MAX_WORKSPACE_BYTES");
  if (attr >= TIDE_LT_PREF_MIN_ALIGNMENT_A_BYTES && attr <= TIDE_LT_PREF_MIN_ALIGNMENT_D_BYTES) {
    uint32_t a = 0;
    tide_lt_status st = take(&a, buf, size, "MIN_ALIGNMENT");
    if (st != TIDE_LT_SUCCESS) return st;
    if (a == 0 || (a & (a - 1))) return refuse(TIDE_LT_INVALID_VALUE, "alignment %u is not a power of two", a);
    x->align[attr - TIDE_LT_PREF_MIN_ALIGNMENT_A_BYTES] = a;
    return TIDE_LT_SUCCESS;
  }
  return refuse(TIDE_LT_NOT_SUPPORTED, "preference attribute %d is not emulated", attr);
}

tide_lt_status MatmulPreferenceDestroy(tide_lt_pref p) {
  Pref *x = (Pref *)p;
  if (!valid(x)) return refuse(TIDE_LT_INVALID_VALUE, "destroying a bad preference");
  x->magic = 0;
  delete x;
  return TIDE_LT_SUCCESS;
}

// The problem a call describes, checked: m, n, k from the layouts and transposes.
struct Problem {
  const Desc *d;
  const Layout *l[4];  // A, B, C, D
  uint64_t m, n, k;
};

// Stored (rows, cols) of op(X) when X has layout l and op is `op`.
void op_dims(const Layout *l, int32_t op, uint64_t *r, uint64_t *c) {
  *r = op == TIDE_LT_OP_T ? l->cols : l->rows;
  *c = op == TIDE_LT_OP_T ? l->rows : l->cols;
}

tide_lt_status check(Problem *p, tide_lt_handle h, tide_lt_desc desc, tide_lt_layout a, tide_lt_layout b, tide_lt_layout c,
                     tide_lt_layout d) {
  if (!valid((const Context *)h)) return refuse(TIDE_LT_NOT_INITIALIZED, "not a handle");
  p->d = (const Desc *)desc;
  if (!valid(p->d)) return refuse(TIDE_LT_INVALID_VALUE, "not a matmul desc");
  const tide_lt_layout ls[4] = {a, b, c, d};
  const char *names = "ABCD";
  for (int i = 0; i < 4; i++) {
    const Layout *l = p->l[i] = (const Layout *)ls[i];
    if (!valid(l)) return refuse(TIDE_LT_INVALID_VALUE, "layout of %c: not a layout", names[i]);
    if (l->rows < 1 || l->cols < 1)
      return refuse(TIDE_LT_INVALID_VALUE, "%c is %llu x %llu: empty matrices are not sent", names[i],
                    (unsigned long long)l->rows, (unsigned long long)l->cols);
    if (l->order != TIDE_LT_ORDER_COL && l->order != TIDE_LT_ORDER_ROW)
      return refuse(TIDE_LT_NOT_SUPPORTED, "order %d of %c is not emulated", l->order, names[i]);
    uint64_t need = l->order == TIDE_LT_ORDER_COL ? l->rows : l->cols;
    if (l->ld < 1 || (uint64_t)l->ld < need)
      return refuse(TIDE_LT_INVALID_VALUE, "ld %lld of %c is below its %s %llu", (long long)l->ld, names[i],
                    l->order == TIDE_LT_ORDER_COL ? "rows" : "cols", (unsigned long long)need);
    if (l->count < 1) return refuse(TIDE_LT_INVALID_VALUE, "batch count %d of %c", l->count, names[i]);
    if (l->count != p->l[0]->count)
      return refuse(TIDE_LT_INVALID_VALUE, "batch count %d of %c differs from A's %d", l->count, names[i], p->l[0]->count);
  }
  uint64_t ar, ac, br, bc;
  op_dims(p->l[0], p->d->transa, &ar, &ac);
  op_dims(p->l[1], p->d->transb, &br, &bc);
  if (ac != br)
    return refuse(TIDE_LT_INVALID_VALUE, "op(A) is %llux%llu, op(B) %llux%llu: k differs", (unsigned long long)ar,
                  (unsigned long long)ac, (unsigned long long)br, (unsigned long long)bc);
  for (int i = 2; i < 4; i++)
    if (p->l[i]->rows != ar || p->l[i]->cols != bc)
      return refuse(TIDE_LT_INVALID_VALUE, "%c is %llux%llu, expected %llux%llu", names[i], (unsigned long long)p->l[i]->rows,
                    (unsigned long long)p->l[i]->cols, (unsigned long long)ar, (unsigned long long)bc);
  p->m = ar, p->n = bc, p->k = ac;
  int32_t ta = p->l[0]->type, tb = p->l[1]->type, tc = p->l[2]->type, td = p->l[3]->type;
  if (ta != tb || tc != td) return refuse(TIDE_LT_NOT_SUPPORTED, "types A %d, B %d, C %d, D %d are not emulated", ta, tb, tc, td);
  bool ok = false;
  if (ta == TIDE_LT_R_32F) ok = tc == TIDE_LT_R_32F && p->d->scale == TIDE_LT_R_32F && p->d->compute != TIDE_LT_COMPUTE_64F;
  if (ta == TIDE_LT_R_64F) ok = tc == TIDE_LT_R_64F && p->d->compute == TIDE_LT_COMPUTE_64F;
  if (ta == TIDE_LT_R_16BF) ok = (tc == TIDE_LT_R_16BF || tc == TIDE_LT_R_32F) && p->d->compute == TIDE_LT_COMPUTE_32F;
  if (!ok)
    return refuse(TIDE_LT_NOT_SUPPORTED, "A/B type %d, C/D type %d with compute %d, scale %d is not a supported combination",
                  ta, tc, p->d->compute, p->d->scale);
  // the epilogue
  uint32_t e = p->d->epilogue;
  if (e != TIDE_LT_EPILOGUE_DEFAULT && !has_bias(e) && !has_gelu(e) && !is_bgrad(e))
    return refuse(TIDE_LT_NOT_SUPPORTED, "epilogue %u is not emulated", e);
  if (e == TIDE_LT_EPILOGUE_DEFAULT) return TIDE_LT_SUCCESS;
  if (p->l[0]->count > 1) return refuse(TIDE_LT_NOT_SUPPORTED, "epilogue %u on batched layouts is not emulated", e);
  // not emulated, so the backend's own epilogue kernels (its fallback where the library has no algorithm) run in tests
  if (p->d->compute == TIDE_LT_COMPUTE_64F) return refuse(TIDE_LT_NOT_SUPPORTED, "epilogue %u with 64F is not emulated", e);
  if ((has_bias(e) || is_bgrad(e)) && !p->d->bias)
    return refuse(TIDE_LT_INVALID_VALUE, "epilogue %u without CUBLASLT_MATMUL_DESC_BIAS_POINTER", e);
  if ((has_bias(e) || is_bgrad(e)) && p->d->bias_type != -1 && p->d->bias_type != td)
    return refuse(TIDE_LT_NOT_SUPPORTED, "bias type %d with D of type %d: the bias takes D's type", p->d->bias_type, td);
  if (has_aux(e)) {
    if (!p->d->aux) return refuse(TIDE_LT_INVALID_VALUE, "epilogue %u without CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER", e);
    if (p->d->aux_ld < (int64_t)p->m || p->d->aux_ld % 8 != 0)
      return refuse(TIDE_LT_INVALID_VALUE, "EPILOGUE_AUX_LD %lld: must be a multiple of 8 and at least D's %llu rows",
                    (long long)p->d->aux_ld, (unsigned long long)p->m);
    if (p->d->aux_type != -1 && p->d->aux_type != td)
      return refuse(TIDE_LT_INVALID_VALUE, "aux type %d with D of type %d: GELU's input takes D's type", p->d->aux_type, td);
  }
  return TIDE_LT_SUCCESS;
}

uint64_t problem_key(const Problem &p) {
  uint64_t key = 1469598103934665603ull;
  auto mix = [&key](uint64_t v) { key = (key ^ v) * 1099511628211ull; };
  mix((uint64_t)p.d->compute), mix((uint64_t)p.d->scale), mix((uint64_t)p.d->transa), mix((uint64_t)p.d->transb);
  mix((uint64_t)p.d->epilogue), mix((uint64_t)p.d->aux_ld), mix((uint64_t)(uint32_t)p.d->aux_type),
    mix((uint64_t)(uint32_t)p.d->bias_type);
  for (const Layout *l : p.l) mix((uint64_t)l->type), mix((uint64_t)l->order), mix(l->rows), mix(l->cols), mix((uint64_t)l->ld), mix((uint64_t)l->count), mix((uint64_t)l->stride);
  return key;
}

uint64_t heuristic_calls;  // for the backend's cache test

tide_lt_status MatmulAlgoGetHeuristic(tide_lt_handle h, tide_lt_desc desc, tide_lt_layout a, tide_lt_layout b, tide_lt_layout c,
                                      tide_lt_layout d, tide_lt_pref pref, int requested, tide_lt_heuristic *results,
                                      int *returned) {
  heuristic_calls++;
  Problem p;
  tide_lt_status st = check(&p, h, desc, a, b, c, d);
  if (st != TIDE_LT_SUCCESS) return st;
  const Pref *pr = (const Pref *)pref;
  if (!valid(pr)) return refuse(TIDE_LT_INVALID_VALUE, "not a preference");
  if (requested < 1 || !results || !returned) return refuse(TIDE_LT_INVALID_VALUE, "heuristic: %d results requested", requested);
  memset(results, 0, sizeof *results);
  Algo al = {kMagic, problem_key(p), {pr->align[0], pr->align[1], pr->align[2], pr->align[3]}, ptr_align(p.d->bias),
             ptr_align(p.d->aux)};
  memcpy(&results[0].algo, &al, sizeof al);
  results[0].workspaceSize = pr->workspace < 4096 ? pr->workspace : 4096;  // it uses some of what it may
  results[0].state = TIDE_LT_SUCCESS;
  results[0].wavesCount = 1;
  *returned = 1;
  return TIDE_LT_SUCCESS;
}

double load(const char *base, int32_t type, int64_t off) {
  switch (type) {
    case TIDE_LT_R_64F: return ((const double *)base)[off];
    case TIDE_LT_R_32F: return ((const float *)base)[off];
    default: return tide_bf16_to_f32(((const uint16_t *)base)[off]);
  }
}

void store(char *base, int32_t type, int64_t off, double v) {
  switch (type) {
    case TIDE_LT_R_64F: ((double *)base)[off] = v; break;
    case TIDE_LT_R_32F: ((float *)base)[off] = (float)v; break;
    default: ((uint16_t *)base)[off] = tide_f32_to_bf16((float)v); break;
  }
}

// TF32: an f32 rounded to 10 mantissa bits, to nearest even (NaN and infinities kept)
float to_tf32(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  memcpy(&x, &u, 4);
  return x;
}

int64_t offset(const Layout *l, uint64_t i, uint64_t j, int32_t e) {
  int64_t in = l->order == TIDE_LT_ORDER_COL ? (int64_t)i + (int64_t)j * l->ld : (int64_t)i * l->ld + (int64_t)j;
  return (int64_t)e * l->stride + in;
}

tide_lt_status MatmulNow(tide_lt_handle h, tide_lt_desc desc, const void *alpha, const void *a, tide_lt_layout adesc, const void *b,
                         tide_lt_layout bdesc, const void *beta, const void *c, tide_lt_layout cdesc, void *d, tide_lt_layout ddesc,
                         const tide_lt_algo *algo, void *workspace, size_t workspace_size) {
  Problem p;
  tide_lt_status st = check(&p, h, desc, adesc, bdesc, cdesc, ddesc);
  if (st != TIDE_LT_SUCCESS) return st;
  if (!alpha || !beta || !a || !b || !d) return refuse(TIDE_LT_INVALID_VALUE, "a NULL pointer among alpha, beta, A, B, D");
  Algo al;
  if (!algo) return refuse(TIDE_LT_INVALID_VALUE, "no algo: the backend always passes the heuristic's");
  memcpy(&al, algo, sizeof al);
  if (al.magic != kMagic || al.key != problem_key(p))
    return refuse(TIDE_LT_INVALID_VALUE, "the algo was not found by the heuristic for this problem");
  if (workspace_size < 4096 || !workspace)
    return refuse(TIDE_LT_INVALID_VALUE, "workspace %p of %zu bytes, less than the algo's 4096", workspace, workspace_size);
  const Layout *L[4] = {p.l[0], p.l[1], p.l[2], p.l[3]};
  if (c == d && memcmp(L[2], L[3], sizeof(Layout)) != 0)
    return refuse(TIDE_LT_INVALID_VALUE, "C and D are the same buffer with different layouts");
  const void *ptrs[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++) {
    if (!ptrs[i]) continue;
    for (int32_t e = 0; e < L[i]->count; e++) {
      uintptr_t addr = (uintptr_t)ptrs[i] + (uintptr_t)(e * L[i]->stride * type_size(L[i]->type));
      if (addr % al.align[i])
        return refuse(TIDE_LT_INVALID_VALUE, "batch entry %d of %c at %p is not aligned to the %u bytes declared to the heuristic",
                      e, "ABCD"[i], (void *)addr, al.align[i]);
    }
  }
  if (ptr_align(p.d->bias) < al.align_bias || ptr_align(p.d->aux) < al.align_aux)
    return refuse(TIDE_LT_INVALID_VALUE, "bias %p or aux %p is less aligned than those the algo was found for (%u, %u bytes)",
                  p.d->bias, p.d->aux, al.align_bias, al.align_aux);
  bool f64 = p.d->scale == TIDE_LT_R_64F, tf32 = p.d->compute == TIDE_LT_COMPUTE_32F_FAST_TF32;
  const uint32_t epi = p.d->epilogue;
  const int32_t td = L[3]->type;
  double al_v = f64 ? *(const double *)alpha : *(const float *)alpha;
  double be_v = f64 ? *(const double *)beta : *(const float *)beta;
  if (be_v != 0 && !c) return refuse(TIDE_LT_INVALID_VALUE, "beta != 0 and no C");
  for (int32_t e = 0; e < L[0]->count; e++)
    for (uint64_t j = 0; j < p.n; j++)
      for (uint64_t i = 0; i < p.m; i++) {
        double r;
        if (f64) {
          double s = 0;
          for (uint64_t q = 0; q < p.k; q++) {
            double x = load((const char *)a, L[0]->type, p.d->transa == TIDE_LT_OP_T ? offset(L[0], q, i, e) : offset(L[0], i, q, e));
            double y = load((const char *)b, L[1]->type, p.d->transb == TIDE_LT_OP_T ? offset(L[1], j, q, e) : offset(L[1], q, j, e));
            s += x * y;
          }
          r = al_v * s;
          if (be_v != 0) r += be_v * load((const char *)c, L[2]->type, offset(L[2], i, j, e));
          if (has_bias(epi)) r += load((const char *)p.d->bias, td, (int64_t)i);
          if (has_aux(epi)) store((char *)p.d->aux, td, (int64_t)i + (int64_t)j * p.d->aux_ld, r);
          if (has_gelu(epi)) r = 0.5 * r * (1 + tanh(0.7978845608028654 * (r + 0.044715 * r * r * r)));
        } else {
          float s = 0;
          for (uint64_t q = 0; q < p.k; q++) {
            float x = (float)load((const char *)a, L[0]->type, p.d->transa == TIDE_LT_OP_T ? offset(L[0], q, i, e) : offset(L[0], i, q, e));
            float y = (float)load((const char *)b, L[1]->type, p.d->transb == TIDE_LT_OP_T ? offset(L[1], j, q, e) : offset(L[1], q, j, e));
            if (tf32) x = to_tf32(x), y = to_tf32(y);
            s += x * y;
          }
          float rf = (float)al_v * s;
          if (be_v != 0) rf += (float)be_v * (float)load((const char *)c, L[2]->type, offset(L[2], i, j, e));
          if (has_bias(epi)) rf += (float)load((const char *)p.d->bias, td, (int64_t)i);
          if (has_aux(epi)) store((char *)p.d->aux, td, (int64_t)i + (int64_t)j * p.d->aux_ld, rf);
          if (has_gelu(epi)) rf = 0.5f * rf * (1.0f + tanhf(0.7978845608f * (rf + 0.044715f * rf * rf * rf)));
          r = rf;
        }
        store((char *)d, L[3]->type, offset(L[3], i, j, e), r);
      }
  if (is_bgrad(epi)) {  // the sums over k of op(A)'s rows (m of them) or op(B)'s columns (n), in the product's precision
    bool rows = epi == TIDE_LT_EPILOGUE_BGRADA;
    uint64_t len = rows ? p.m : p.n;
    for (uint64_t i = 0; i < len; i++) {
      double sd = 0;
      float sf = 0;
      for (uint64_t q = 0; q < p.k; q++) {
        int64_t off = rows ? (p.d->transa == TIDE_LT_OP_T ? offset(L[0], q, i, 0) : offset(L[0], i, q, 0))
                           : (p.d->transb == TIDE_LT_OP_T ? offset(L[1], i, q, 0) : offset(L[1], q, i, 0));
        double v = load((const char *)(rows ? a : b), L[rows ? 0 : 1]->type, off);
        if (f64) sd += v;
        else sf += tf32 ? to_tf32((float)v) : (float)v;
      }
      store((char *)p.d->bias, td, (int64_t)i, f64 ? sd : (double)sf);
    }
  }
  return TIDE_LT_SUCCESS;
}

// The emulator's streams are synchronous: the product runs now, unless the
// stream is being captured into a graph (cudaemu.h); then the call is
// recorded with copies of the descriptors and scalars it reads (the caller
// destroys them after the call, as cuBLASLt allows) and runs at each replay.
tide_lt_status Matmul(tide_lt_handle h, tide_lt_desc desc, const void *alpha, const void *a, tide_lt_layout adesc, const void *b,
                      tide_lt_layout bdesc, const void *beta, const void *c, tide_lt_layout cdesc, void *d, tide_lt_layout ddesc,
                      const tide_lt_algo *algo, void *workspace, size_t workspace_size, void *stream) {
  if (!cudaemu::capturing()) {
    cudaemu::device_timer timer;  // device work, for telling host time from emulated kernel time
    return MatmulNow(h, desc, alpha, a, adesc, b, bdesc, beta, c, cdesc, d, ddesc, algo, workspace, workspace_size);
  }
  Problem p;
  tide_lt_status st = check(&p, h, desc, adesc, bdesc, cdesc, ddesc);
  if (st != TIDE_LT_SUCCESS) return st;
  if (!alpha || !beta || !algo) return refuse(TIDE_LT_INVALID_VALUE, "a NULL alpha, beta or algo");
  struct Saved {
    Desc desc;
    Layout l[4];
    double alpha[2], beta[2];  // room for a double or a float
    tide_lt_algo algo;
  };
  auto sv = std::make_shared<Saved>();
  sv->desc = *(const Desc *)desc;
  const tide_lt_layout ls[4] = {adesc, bdesc, cdesc, ddesc};
  for (int i = 0; i < 4; i++) sv->l[i] = *(const Layout *)ls[i];
  size_t ss = p.d->scale == TIDE_LT_R_64F ? sizeof(double) : sizeof(float);
  memcpy(sv->alpha, alpha, ss);
  memcpy(sv->beta, beta, ss);
  sv->algo = *algo;
  cudaError_t e = cudaemu::enqueue(
      (cudaStream_t)stream,
      [=]() {
        tide_lt_status r = MatmulNow(h, (tide_lt_desc)&sv->desc, sv->alpha, a, (tide_lt_layout)&sv->l[0], b,
                                     (tide_lt_layout)&sv->l[1], sv->beta, c, (tide_lt_layout)&sv->l[2], d,
                                     (tide_lt_layout)&sv->l[3], &sv->algo, workspace, workspace_size);
        if (r != TIDE_LT_SUCCESS) fprintf(stderr, "cudaemu: a replayed cublasLtMatmul failed: %s\n", reason.c_str());
      },
      "cublasLtMatmul");
  if (e != cudaSuccess) return refuse(TIDE_LT_INVALID_VALUE, "%s", cudaemu::last_message());
  return TIDE_LT_SUCCESS;
}

std::string status_text;

const char *GetStatusString(tide_lt_status st) {
  const char *name = st == TIDE_LT_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
                     : st == TIDE_LT_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                     : st == TIDE_LT_NOT_SUPPORTED ? "CUBLAS_STATUS_NOT_SUPPORTED"
                                                   : "CUBLAS_STATUS_(other)";
  status_text = name;
  if (st != TIDE_LT_SUCCESS && !reason.empty()) status_text += " (emulated cuBLASLt: " + reason + ")";
  return status_text.c_str();
}

const tide_cublaslt_api emulated = {
  Create, Destroy, MatmulDescCreate, MatmulDescSetAttribute, MatmulDescDestroy, MatrixLayoutCreate, MatrixLayoutSetAttribute,
  MatrixLayoutDestroy, MatmulPreferenceCreate, MatmulPreferenceSetAttribute, MatmulPreferenceDestroy, MatmulAlgoGetHeuristic,
  Matmul, GetStatusString,
};

}  // namespace

extern "C" const struct tide_cublaslt_api *tide_cublaslt(void) { return &emulated; }

// How many heuristic queries were made (tests/cudaemu/kernels/test_matmul.cc checks the backend's cache).
extern "C" uint64_t tide_cublaslt_emu_heuristic_calls(void) { return heuristic_calls; }

// The emulated build has no cuBLAS: 0, as in a build without CUDA.
extern "C" int tide_cuda_blas_version(void) { return 0; }
