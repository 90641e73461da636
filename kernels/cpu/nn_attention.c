/* Scaled dot-product attention, forward and backward (FlashAttention-2's
   recurrence, never holding a T x S probability matrix per head):

     out = softmax(q k^T * scale + mask) v,  lse = logsumexp(q k^T * scale + mask)

   per (batch, head), q [B, H, T, D], k and v [B, H, S, D], any strides.

   Masking. causal = 1 lets query t see key s when s <= t + q_offset: with
   q_offset = 0 the top-left triangle, as PyTorch's is_causal, also when
   T != S (for T > S the rows t >= S see every key; for T < S the keys s > t
   are never seen and get zero gradient); with q_offset = S - T the
   bottom-right one, the queries being the last T of S positions (decoding
   over a KV cache). q_offset >= 0, so every query sees key 0. With S == 0
   there is nothing to attend to: out is zeros and lse -inf (PyTorch gives NaN there).

   A key mask (optional, [B, S] bool or u8, nonzero = may be attended) hides
   padding keys from every query of its batch row, on top of the causal mask:
   Hugging Face's attention_mask. A query that is left no key at all (a
   left-padding position under the causal mask) gets zeros and lse -inf, as
   S == 0 does, and passes no gradient; transformers gives such rows values
   that differ between its eager and SDPA paths and that nothing should use.
   Masked rows take their own loops (masked_row below) so the unmasked path
   is the same code as without the mask.

   Layout. Operands are strided [B, H, R, D] with unit stride along D (see
   kernels/nn_attention.h); the op layer (runtime/ops/attention.c) chooses
   the layouts and makes any copies.

   Compute. f32 and f64 natively (lse in the same type), bf16/f16 through f32
   (lse f32). A block of BLK queries gets its full row of scores against the
   keys it may see (BLK x S scratch per thread, causal blocks stop at the
   diagonal), so the softmax needs no online rescaling. The products go to
   OpenBLAS in pieces small enough that it runs each on the calling thread
   (see SINGLE_MNK) while OpenMP spreads the blocks.

   Determinism. The work is cut by shape alone, never by thread count, and
   every output element is summed in one fixed order, so 1 and N threads give
   the same bits. The backward gives each head one task that walks its query
   blocks in order, computing dq and adding into dk, dv (five products per
   tile, P recomputed from q, k and lse). With fewer heads than GROUP_TASKS
   a head's query blocks are dealt round-robin to G groups (G from the shape)
   that sum dk, dv into partial buffers of S x D each, added in group order
   afterwards, so one head still spreads over threads. */
#ifndef ATTN_REAL

#include "nn_attention.h"
#include "error.h"
#include "dtype.h"
#include "alloc.h"
#include "vmath.h"
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* queries per block */
#define BLK 64
/* OpenBLAS runs a GEMM on the calling thread when m*n*k is at most its
   SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD (65536 * 4); products are
   cut to stay under it, since we call from inside our own OpenMP loop. */
#define SINGLE_MNK (65536.0 * 4.0)
/* the backward aims for this many tasks when there are fewer heads */
#define GROUP_TASKS 16

/* A [B, H, R, D] operand with unit stride along D: element (b, h, r, d) is
   at p + b*sb + h*sh + r*ld + d elements of the compute type. */
typedef struct {
  char *p;
  int64_t sb, sh, ld;
} opnd;

typedef struct {
  int64_t B, H, T, S, D;
  int causal;
  int64_t qoff;  /* absolute position of query row 0 under the causal mask */
  double scale;
  const unsigned char *kmask; /* [B, S] contiguous, nonzero = visible; NULL: none */
  opnd q, k, v, o, dout, dq, dk, dv;
  char *lse;     /* [B, H, T] contiguous, compute type */
  char *rowdot;  /* [B, H, T]: rowsum(dout * out), backward only */
} attn_ctx;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Keys [0, kend) that some query of the rows [0, i1) may see. */
static int64_t key_end(const attn_ctx *c, int64_t i1) { return c->causal ? min64(c->S, i1 + c->qoff) : c->S; }

/* How many of the keys [j0, j1) query t sees (they are always a prefix). */
static int64_t n_visible(const attn_ctx *c, int64_t t, int64_t j0, int64_t j1) {
  if (!c->causal) return j1 - j0;
  return max64(0, min64(j1, t + c->qoff + 1) - j0);
}

/* The leading dimension handed to BLAS, which checks ld >= max(1, width)
   even for a single row, whose stride never matters. */
static int64_t blas_ld(int64_t ld, int64_t width) { return max64(ld, max64(width, 1)); }

/* A tile of the score matrix: queries [i0, i1) x keys [j0, j1). Under the
   causal mask a tile on the diagonal is cut in two halves of rows: the upper
   rows [i0, i0 + mh) see no key at or past jm, so that corner is never
   computed (jm = j1 and mh = i1 - i0 when nothing is cut). This takes the
   wasted work of a 64 x 64 diagonal tile from half to a quarter while most
   products keep 64 rows. */
typedef struct {
  int64_t i0, i1, j0, j1, mh, jm;
} tile_geo;

static tile_geo tile_at(const attn_ctx *c, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  tile_geo g = {i0, i1, j0, j1, i1 - i0, j1};
  if (c->causal) {
    int64_t h = (i1 - i0) / 2, jm = max64(j0, min64(j1, key_end(c, i0 + h)));
    if (h > 0 && jm < j1) g.mh = h, g.jm = jm;
  }
  return g;
}

/* How far row r of a tile's scores was computed, and how far its loops run:
   n rounded up to 16 with selects for the masked keys, because causal rows
   have every length and a scalar tail of up to 15 exps per row costs more
   than the masked lanes. */
static inline int64_t row_width(const tile_geo *g, int64_t r, int64_t n) {
  int64_t lim = (r < g->mh ? g->jm : g->j1) - g->j0;
  return min64(lim, (n + 15) & ~(int64_t)15);
}

/* Query-block groups per head in the backward: one when there are enough
   heads to go round, else up to GROUP_TASKS tasks in all. A function of
   the shape alone, so the summation order of dk, dv never depends on the
   thread count. */
static int64_t backward_groups(int64_t nh, int64_t nqb) {
  if (nh >= GROUP_TASKS || nqb <= 1) return 1;
  return min64(nqb, (GROUP_TASKS + nh - 1) / nh);
}

/* The kernels are written once, after the #else below, in terms of R
   (ATTN_REAL) and FN(name) (name_f32, name_f64): this file includes itself
   once per compute type. */
#define ATTN_CAT_(a, b) a##_##b
#define ATTN_CAT(a, b) ATTN_CAT_(a, b)
#define FN(name) ATTN_CAT(name, ATTN_SFX)

#define ATTN_REAL float
#define ATTN_SFX f32
#define ATTN_GEMM cblas_sgemm
#define ATTN_EXP tide_expf
#define ATTN_LOG logf
#include "nn_attention.c"
#undef ATTN_REAL
#undef ATTN_SFX
#undef ATTN_GEMM
#undef ATTN_EXP
#undef ATTN_LOG

#define ATTN_REAL double
#define ATTN_SFX f64
#define ATTN_GEMM cblas_dgemm
#define ATTN_EXP exp
#define ATTN_LOG log
#include "nn_attention.c"
#undef ATTN_REAL
#undef ATTN_SFX
#undef ATTN_GEMM
#undef ATTN_EXP
#undef ATTN_LOG

/* table entries ---------------------------------------------------------------- */

/* Operand p with strides s = {batch, head, row} in elements. */
static opnd view(const void *p, const int64_t s[3]) {
  opnd o = {(char *)p, s[0], s[1], s[2]};
  return o;
}

static int attention_forward(void *out, void *lse, const void *q, const void *k, const void *v, const uint8_t *key_mask,
                             int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset,
                             double scale, const tide_attn_strides *st, int32_t dtype) {
  if (q_offset < 0) return tide_fail("attention: q_offset must be >= 0, got %lld", (long long)q_offset);
  attn_ctx c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.T = T, c.S = S, c.D = D, c.causal = causal, c.scale = scale, c.kmask = key_mask;
  c.qoff = causal ? min64(q_offset, S) : 0;  /* past S every key is seen: no overflow in t + qoff */
  c.q = view(q, st->q), c.k = view(k, st->k), c.v = view(v, st->v), c.o = view(out, st->out);
  c.lse = lse;
  if (dtype == TIDE_F64) return forward_f64(&c);
  if (dtype == TIDE_F32) return forward_f32(&c);
  return tide_fail("attention: no kernel for dtype %s", tide_dtype_name(dtype));
}

static int attention_backward(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q, const void *k,
                              const void *v, const void *out, const void *lse, const uint8_t *key_mask, int64_t B,
                              int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                              const tide_attn_strides *st, int32_t dtype) {
  if (q_offset < 0) return tide_fail("attention_backward: q_offset must be >= 0, got %lld", (long long)q_offset);
  attn_ctx c;
  memset(&c, 0, sizeof c);
  c.B = B, c.H = H, c.T = T, c.S = S, c.D = D, c.causal = causal, c.scale = scale, c.kmask = key_mask;
  c.qoff = causal ? min64(q_offset, S) : 0;  /* past S every key is seen: no overflow in t + qoff */
  c.q = view(q, st->q), c.k = view(k, st->k), c.v = view(v, st->v), c.o = view(out, st->out);
  c.dout = view(dout, st->dout), c.dq = view(dq, st->dq), c.dk = view(dk, st->dk), c.dv = view(dv, st->dv);
  c.lse = (char *)lse, c.rowdot = rowdot;
  if (dtype == TIDE_F64) return backward_f64(&c);
  if (dtype == TIDE_F32) return backward_f32(&c);
  return tide_fail("attention_backward: no kernel for dtype %s", tide_dtype_name(dtype));
}

const struct tide_attention_kernels tide_cpu_attention = {
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
};

#else /* ATTN_REAL: the kernels for one compute type, included twice above */

#define R ATTN_REAL

/* C = alpha op(A) op(B) + beta C (row-major; A is m x k after op, B k x n),
   cut into products OpenBLAS runs on this thread. The cut depends on the
   sizes only, so the summation order does too. */
static void FN(gemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, R alpha, const R *A, int64_t lda, const R *Bm,
                     int64_t ldb, R beta, R *Cm, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  /* an empty sum: BLAS would want lda >= 1 and still only scale C */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) Cm[i * ldc + j] = beta == 0 ? (R)0 : beta * Cm[i * ldc + j];
    return;
  }
  double mnk = (double)m * (double)n * (double)k;
  if (mnk <= SINGLE_MNK) {
    ATTN_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n,
              (blasint)k, alpha, A, (blasint)blas_ld(lda, ta ? m : k), Bm, (blasint)blas_ld(ldb, tb ? k : n), beta, Cm,
              (blasint)blas_ld(ldc, n));
    return;
  }
  /* split the largest dimension into pieces that fit, in multiples of 16 */
  int64_t big = m >= n && m >= k ? m : n >= k ? n : k;
  int64_t c = (int64_t)(SINGLE_MNK * (double)big / mnk);
  if (c >= 16) c -= c % 16;
  if (c < 1) c = 1;
  for (int64_t x0 = 0; x0 < big; x0 += c) {
    int64_t xc = min64(c, big - x0);
    if (big == m) {
      FN(gemm)(ta, tb, xc, n, k, alpha, A + (ta ? x0 : x0 * lda), lda, Bm, ldb, beta, Cm + x0 * ldc, ldc);
    } else if (big == n) {
      FN(gemm)(ta, tb, m, xc, k, alpha, A, lda, Bm + (tb ? x0 * ldb : x0), ldb, beta, Cm + x0, ldc);
    } else {
      FN(gemm)(ta, tb, m, n, xc, alpha, A + (ta ? x0 * lda : x0), lda, Bm + (tb ? x0 : x0 * ldb), ldb,
               x0 == 0 ? beta : (R)1, Cm, ldc);
    }
  }
}

/* The three product shapes of a tile (see tile_geo): S = A B^T over rows x
   keys, O = alpha P X + beta O over rows x D, and G += alpha P^T Y over
   keys x D. Each is one product for the rows [0, mh) and keys [j0, jm) part
   plus one for the lower rows' corner [mh, m) x [jm, j1); pointers are at
   the tile's first row / key. */
static void FN(prod_rk)(const tile_geo *g, int64_t D, const R *A, int64_t lda, const R *Bk, int64_t ldb, R *S, int64_t lds) {
  int64_t m = g->i1 - g->i0, km = g->jm - g->j0, kn = g->j1 - g->jm;
  FN(gemm)(0, 1, m, km, D, (R)1, A, lda, Bk, ldb, (R)0, S, lds);
  FN(gemm)(0, 1, m - g->mh, kn, D, (R)1, A + g->mh * lda, lda, Bk + km * ldb, ldb, (R)0, S + g->mh * lds + km, lds);
}

static void FN(prod_rd)(const tile_geo *g, int64_t D, R alpha, const R *P, int64_t ldp, const R *X, int64_t ldx, R beta,
                        R *O, int64_t ldo) {
  int64_t m = g->i1 - g->i0, km = g->jm - g->j0, kn = g->j1 - g->jm;
  FN(gemm)(0, 0, m, D, km, alpha, P, ldp, X, ldx, beta, O, ldo);  /* applies beta to every row, even when km = 0 */
  FN(gemm)(0, 0, m - g->mh, D, kn, alpha, P + g->mh * ldp + km, ldp, X + km * ldx, ldx, (R)1, O + g->mh * ldo, ldo);
}

static void FN(prod_kd)(const tile_geo *g, int64_t D, R alpha, const R *P, int64_t ldp, const R *Y, int64_t ldy, R *G,
                        int64_t ldg) {
  int64_t m = g->i1 - g->i0, km = g->jm - g->j0, kn = g->j1 - g->jm;
  FN(gemm)(1, 0, km, D, m, alpha, P, ldp, Y, ldy, (R)1, G, ldg);
  FN(gemm)(1, 0, kn, D, m - g->mh, alpha, P + g->mh * ldp + km, ldp, Y + g->mh * ldy, ldy, (R)1, G + km * ldg, ldg);
}

/* First row of head (b, h) of an operand. */
static inline R *FN(at)(const opnd *o, int64_t b, int64_t h) { return (R *)o->p + b * o->sb + h * o->sh; }

/* x[i] *= a, and the dot product below: functions of their own so GCC
   vectorises these loops and not the callers' loops over rows (which it
   did with gathers). */
static void FN(scale_row)(R *x, R a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) x[i] *= a;
}

static void FN(axpy)(R *y, R a, const R *x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static R FN(dot)(const R *a, const R *b, int64_t n) {
  R s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* The softmax of one score row under the key mask km (the row's keys from
   0): keys j < n with km[j] set count. Writes the probabilities (unnormalised)
   to row[0, w) and zeros to row[w, lim), the row's lse to *lse, and returns
   1 / sum, or 0 when no key is visible (the row's output is then zero). */
static R FN(masked_row)(R *row, const unsigned char *km, int64_t n, int64_t w, int64_t lim, R scale, R *lse) {
  R mx = (R)-INFINITY;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < w; j++) {
    R x = j < n && km[j] ? row[j] * scale : (R)-INFINITY;
    row[j] = x;
    mx = x > mx ? x : mx;
  }
  if (mx == (R)-INFINITY) {
    memset(row, 0, (size_t)lim * sizeof(R));
    *lse = (R)-INFINITY;
    return 0;
  }
  R sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < w; j++) {
    R p = ATTN_EXP(row[j] - mx);  /* the fast exp clamps -inf: select */
    p = j < n && km[j] ? p : (R)0;
    row[j] = p;
    sum += p;
  }
  memset(row + w, 0, (size_t)(lim - w) * sizeof(R));
  *lse = mx + ATTN_LOG(sum);
  return (R)1 / sum;
}

/* Forward for queries [i0, i1) of head (b, h); sc holds BLK x S scores. */
static void FN(fwd_block)(const attn_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t i1, R *sc) {
  int64_t m = i1 - i0, D = c->D;
  tile_geo g = tile_at(c, i0, i1, 0, key_end(c, i1));
  int64_t kend = g.j1;
  const R *Q = FN(at)(&c->q, b, h) + i0 * c->q.ld, *K = FN(at)(&c->k, b, h), *V = FN(at)(&c->v, b, h);
  R *O = FN(at)(&c->o, b, h) + i0 * c->o.ld;
  R *L = (R *)c->lse + (b * c->H + h) * c->T;
  R scale = (R)c->scale;
  if (kend == 0) {  /* S == 0: nothing to attend to */
    for (int64_t r = 0; r < m; r++) {
      for (int64_t d = 0; d < D; d++) O[r * c->o.ld + d] = 0;
      L[i0 + r] = (R)-INFINITY;
    }
    return;
  }
  /* one query row (a decoding step): dot products and a weighted sum of
     rows, with none of the GEMM calls' setup, which costs more than the
     arithmetic at this size */
  if (m == 1) {
    for (int64_t j = 0; j < kend; j++) sc[j] = FN(dot)(Q, K + j * c->k.ld, D);
  } else {
    FN(prod_rk)(&g, D, Q, c->q.ld, K, c->k.ld, sc, kend);
  }
  R inv[BLK];
  const unsigned char *km = c->kmask ? c->kmask + b * c->S : NULL;
  for (int64_t r = 0; r < m; r++) {
    int64_t t = i0 + r, n = n_visible(c, t, 0, kend), w = row_width(&g, r, n);
    R *row = sc + r * kend;
    if (km) {
      inv[r] = FN(masked_row)(row, km, n, w, (r < g.mh ? g.jm : kend), scale, L + t);
      continue;
    }
    R mx = (R)-INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < w; j++) {
      R x = j < n ? row[j] * scale : (R)-INFINITY;
      row[j] = x;
      mx = x > mx ? x : mx;
    }
    R sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < w; j++) {
      R p = ATTN_EXP(row[j] - mx);
      p = j < n ? p : (R)0;
      row[j] = p;
      sum += p;
    }
    /* zeros up to where the products read this row */
    memset(row + w, 0, (size_t)((r < g.mh ? g.jm : kend) - w) * sizeof(R));
    inv[r] = (R)1 / sum;
    L[t] = mx + ATTN_LOG(sum);
  }
  /* normalise the D outputs of a row rather than its kend probabilities */
  if (m == 1) {
    memset(O, 0, (size_t)D * sizeof(R));
    for (int64_t j = 0; j < kend; j++) FN(axpy)(O, sc[j], V + j * c->v.ld, D);
  } else {
    FN(prod_rd)(&g, D, (R)1, sc, kend, V, c->v.ld, (R)0, O, c->o.ld);
  }
  for (int64_t r = 0; r < m; r++) FN(scale_row)(O + r * c->o.ld, inv[r], D);
}

static int FN(forward)(const attn_ctx *c) {
  int64_t nqb = (c->T + BLK - 1) / BLK, ntask = c->B * c->H * nqb;
  if (ntask == 0) return 0;
  size_t bytes = (size_t)min64(BLK, max64(c->T, 1)) * (size_t)max64(c->S, 1) * sizeof(R);
  int failed = 0;
#pragma omp parallel if (ntask > 1)
  {
    R *sc = tide_alloc(bytes);
    if (!sc) {
#pragma omp atomic write
      failed = 1;
    }
    /* causal blocks further down cost more: hand them out one at a time */
#pragma omp for schedule(dynamic, 1)
    for (int64_t e = 0; e < ntask; e++) {
      if (!sc) continue;
      int64_t bh = e / nqb, i = e % nqb;
      FN(fwd_block)(c, bh / c->H, bh % c->H, i * BLK, min64(c->T, (i + 1) * BLK), sc);
    }
    if (sc) tide_free(sc, bytes);
  }
  if (failed) return tide_fail("attention: out of memory for %zu bytes of per-thread scores (S = %lld)", bytes, (long long)c->S);
  return 0;
}

/* backward --------------------------------------------------------------------- */

/* P and dS of tile g of head (b, h), rows of width j1 - j0 at ld:
   P = exp(q k^T scale - lse), dS = P (dout v^T - rowdot), both zero where
   masked (the corner that tile_geo skips is left unwritten). */
static void FN(tile)(const attn_ctx *c, int64_t b, int64_t h, const tile_geo *g, R *P, R *dS, int64_t ld) {
  int64_t m = g->i1 - g->i0, D = c->D;
  const R *Q = FN(at)(&c->q, b, h) + g->i0 * c->q.ld, *dO = FN(at)(&c->dout, b, h) + g->i0 * c->dout.ld;
  const R *K = FN(at)(&c->k, b, h) + g->j0 * c->k.ld, *V = FN(at)(&c->v, b, h) + g->j0 * c->v.ld;
  const R *L = (const R *)c->lse + (b * c->H + h) * c->T, *RD = (const R *)c->rowdot + (b * c->H + h) * c->T;
  R scale = (R)c->scale;
  const unsigned char *km = c->kmask ? c->kmask + b * c->S + g->j0 : NULL;
  FN(prod_rk)(g, D, Q, c->q.ld, K, c->k.ld, P, ld);
  FN(prod_rk)(g, D, dO, c->dout.ld, V, c->v.ld, dS, ld);
  for (int64_t r = 0; r < m; r++) {
    int64_t t = g->i0 + r, n = n_visible(c, t, g->j0, g->j1), w = row_width(g, r, n);
    int64_t lim = (r < g->mh ? g->jm : g->j1) - g->j0;
    R *pr = P + r * ld, *dr = dS + r * ld, lt = L[t], rt = RD[t];
    if (km) {
      /* a row with no visible key has lse -inf: every p is selected away */
#pragma omp simd
      for (int64_t j = 0; j < w; j++) {
        R p = ATTN_EXP(pr[j] * scale - lt);
        p = j < n && km[j] ? p : (R)0;
        pr[j] = p;
        dr[j] = p * (dr[j] - rt);
      }
      memset(pr + w, 0, (size_t)(lim - w) * sizeof(R));
      memset(dr + w, 0, (size_t)(lim - w) * sizeof(R));
      continue;
    }
#pragma omp simd
    for (int64_t j = 0; j < w; j++) {
      R p = ATTN_EXP(pr[j] * scale - lt);
      p = j < n ? p : (R)0;
      pr[j] = p;
      dr[j] = p * (dr[j] - rt);
    }
    memset(pr + w, 0, (size_t)(lim - w) * sizeof(R));
    memset(dr + w, 0, (size_t)(lim - w) * sizeof(R));
  }
}

/* rowdot = rowsum(dout * out) for every query row (FlashAttention-2's D). */
static void FN(rowdots)(const attn_ctx *c) {
  int64_t nh = c->B * c->H, T = c->T, D = c->D;
#pragma omp parallel for schedule(static) if (nh * T * D >= 32768)
  for (int64_t bh = 0; bh < nh; bh++) {
    const R *o = FN(at)(&c->o, bh / c->H, bh % c->H), *g = FN(at)(&c->dout, bh / c->H, bh % c->H);
    R *out = (R *)c->rowdot + bh * T;
    for (int64_t t = 0; t < T; t++) out[t] = FN(dot)(o + t * c->o.ld, g + t * c->dout.ld, D);
  }
}

/* Zeroes n rows of D elements at row stride ld. */
static void FN(zero_rows)(R *p, int64_t ld, int64_t n, int64_t D) {
  for (int64_t r = 0; r < n; r++) memset(p + r * ld, 0, (size_t)D * sizeof(R));
}

/* dst[d] = sum over g in order of src[g * gstride + d], d < D. */
static void FN(sum_groups)(R *dst, const R *src, int64_t G, int64_t gstride, int64_t D) {
  memcpy(dst, src, (size_t)D * sizeof(R));
  for (int64_t g = 1; g < G; g++) {
    const R *x = src + g * gstride;
#pragma omp simd
    for (int64_t d = 0; d < D; d++) dst[d] += x[d];
  }
}

/* dq for queries [i0, i1) of head (b, h), and their share of dk and dv
   added into dK and dV (that head's rows 0..S at row stride ldk / ldv). */
static void FN(bwd_qblock)(const attn_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t i1, R *P, R *dS, R *dK,
                           int64_t ldk, R *dV, int64_t ldv) {
  int64_t D = c->D;
  tile_geo g = tile_at(c, i0, i1, 0, key_end(c, i1));
  int64_t kend = g.j1;
  R *dQ = FN(at)(&c->dq, b, h) + i0 * c->dq.ld;
  if (kend == 0) {
    FN(zero_rows)(dQ, c->dq.ld, i1 - i0, D);
    return;
  }
  FN(tile)(c, b, h, &g, P, dS, kend);
  R scale = (R)c->scale;
  const R *Q = FN(at)(&c->q, b, h) + i0 * c->q.ld, *dO = FN(at)(&c->dout, b, h) + i0 * c->dout.ld;
  FN(prod_rd)(&g, D, scale, dS, kend, FN(at)(&c->k, b, h), c->k.ld, (R)0, dQ, c->dq.ld);
  FN(prod_kd)(&g, D, (R)1, P, kend, dO, c->dout.ld, dV, ldv);
  FN(prod_kd)(&g, D, scale, dS, kend, Q, c->q.ld, dK, ldk);
}

static int FN(backward)(const attn_ctx *c) {
  int64_t B = c->B, H = c->H, T = c->T, S = c->S, D = c->D, nh = B * H;
  if (nh == 0) return 0;
  FN(rowdots)(c);
  int64_t nqb = (T + BLK - 1) / BLK, G = S * D > 0 ? backward_groups(nh, nqb) : 1;
  /* with several groups per head, each sums its dk, dv into its own slice
     of `part` ([nh][G][S][D] twice), added up in group order at the end */
  size_t pbytes = G > 1 ? (size_t)(nh * G) * (size_t)S * (size_t)D * sizeof(R) : 0;
  R *part = NULL;
  if (pbytes && !(part = tide_alloc(2 * pbytes)))
    return tide_fail("attention_backward: out of memory for %zu bytes of partial key gradients", 2 * pbytes);
  int64_t ntask = nh * G;
  size_t bytes = (size_t)BLK * (size_t)max64(S, 1) * sizeof(R);
  int failed = 0;
#pragma omp parallel if (ntask > 1)
  {
    R *P = tide_alloc(2 * bytes), *dS = P ? P + bytes / sizeof(R) : NULL;
    if (!P) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t e = 0; e < ntask; e++) {
      if (!P) continue;
      int64_t bh = e / G, grp = e % G, b = bh / H, h = bh % H;
      R *dK, *dV;
      int64_t ldk, ldv;
      if (G == 1) {
        dK = FN(at)(&c->dk, b, h), dV = FN(at)(&c->dv, b, h), ldk = c->dk.ld, ldv = c->dv.ld;
      } else {
        dK = part + e * S * D, dV = part + pbytes / sizeof(R) + e * S * D, ldk = ldv = max64(D, 1);
      }
      FN(zero_rows)(dK, ldk, S, D);
      FN(zero_rows)(dV, ldv, S, D);
      /* blocks dealt round-robin: causal blocks further down cost more */
      for (int64_t i = grp; i < nqb; i += G)
        FN(bwd_qblock)(c, b, h, i * BLK, min64(T, (i + 1) * BLK), P, dS, dK, ldk, dV, ldv);
    }
    if (P) tide_free(P, 2 * bytes);
  }
  if (part && !failed) {
    int64_t rows = nh * S;
#pragma omp parallel for schedule(static) if (rows * D * G >= 32768)
    for (int64_t e = 0; e < rows; e++) {
      int64_t bh = e / S, s0 = e % S;
      for (int which = 0; which < 2; which++) {
        const R *src = part + (which ? pbytes / sizeof(R) : 0) + (bh * G * S + s0) * D;
        const opnd *o = which ? &c->dv : &c->dk;
        R *dst = FN(at)(o, bh / H, bh % H) + s0 * o->ld;
        FN(sum_groups)(dst, src, G, S * D, D);
      }
    }
  }
  if (part) tide_free(part, 2 * pbytes);
  if (failed)
    return tide_fail("attention_backward: out of memory for %zu bytes of per-thread scores (S = %lld)", 2 * bytes, (long long)S);
  return 0;
}

#undef R

#endif /* ATTN_REAL */
