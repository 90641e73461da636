/* Scaled dot-product attention, forward and backward (FlashAttention-2's
   recurrence, never holding a T x S probability matrix per head):

     out = softmax(q k^T * scale + mask) v,  lse = logsumexp(q k^T * scale + mask)

   per (batch, head), q [B, H, T, D], k and v [B, H, S, D], any strides.

   Masking. causal = 1 lets query t see key s when s <= t: the top-left
   triangle, as PyTorch's is_causal, also when T != S (for T > S the rows
   t >= S see every key; for T < S the keys s > t are never seen and get zero
   gradient). With S == 0 there is nothing to attend to: out is zeros and lse
   -inf (PyTorch gives NaN there).

   A key mask (optional, [B, S] bool or u8, nonzero = may be attended) hides
   padding keys from every query of its batch row, on top of the causal mask:
   Hugging Face's attention_mask. A query that is left no key at all (a
   left-padding position under the causal mask) gets zeros and lse -inf, as
   S == 0 does, and passes no gradient; transformers gives such rows values
   that differ between its eager and SDPA paths and that nothing should use.
   Masked rows take their own loops (masked_row below) so the unmasked path
   is the same code as without the mask.

   Layout. out, dq, dk and dv are [B, H, R, D] views of [B, R, H, D] memory,
   as PyTorch's CPU flash attention returns them: GPT-2 merges heads with
   out:transpose(2, 3), which is then contiguous, so the view to [B, T, C]
   costs no copy. lse is a contiguous [B, H, T] tensor. Inputs are read in
   place when their last dimension is contiguous (the transposed split of
   GPT-2's c_attn output is); other layouts are copied first.

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

#include "tensor.h"
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
  double scale;
  const unsigned char *kmask; /* [B, S] contiguous, nonzero = visible; NULL: none */
  opnd q, k, v, o, dout, dq, dk, dv;
  char *lse;     /* [B, H, T] contiguous, compute type */
  char *rowdot;  /* [B, H, T]: rowsum(dout * out), backward only */
} attn_ctx;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Keys [0, kend) that some query of the rows [0, i1) may see. */
static int64_t key_end(const attn_ctx *c, int64_t i1) { return c->causal ? min64(c->S, i1) : c->S; }

/* How many of the keys [j0, j1) query t sees (they are always a prefix). */
static int64_t n_visible(const attn_ctx *c, int64_t t, int64_t j0, int64_t j1) {
  if (!c->causal) return j1 - j0;
  return max64(0, min64(j1, t + 1) - j0);
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

/* argument checks -------------------------------------------------------------- */

/* t is a 4-d float tensor; `rows` names its third dimension in the message. */
static int check4(const tide_tensor *t, const char *op, const char *name, const char *rows) {
  TIDE_TRY(tide_check_tensor(t, op));
  char s[160];
  if (t->ndim != 4)
    return tide_fail("%s: %s must be 4-d [B, H, %s, D], got shape %s", op, name, rows, tide_shape_str(s, sizeof s, t->ndim, t->shape));
  if (!tide_is_float(t->dtype))
    return tide_fail("%s: %s must be a floating-point tensor (f32, f64, bf16, f16), got %s", op, name, tide_dtype_name(t->dtype));
  return 0;
}

/* q, k, v agree in B, H, D and dtype, k and v in S; sets the sizes in c. */
static int check_qkv(const tide_tensor *q, const tide_tensor *k, const tide_tensor *v, const char *op, attn_ctx *c) {
  TIDE_TRY(check4(q, op, "q", "T"));
  TIDE_TRY(check4(k, op, "k", "S"));
  TIDE_TRY(check4(v, op, "v", "S"));
  char sq[160], sk[160], sv[160];
  tide_shape_str(sq, sizeof sq, 4, q->shape);
  tide_shape_str(sk, sizeof sk, 4, k->shape);
  tide_shape_str(sv, sizeof sv, 4, v->shape);
  if (q->dtype != k->dtype || q->dtype != v->dtype)
    return tide_fail("%s: q, k and v must have the same dtype, got %s, %s and %s", op, tide_dtype_name(q->dtype),
                     tide_dtype_name(k->dtype), tide_dtype_name(v->dtype));
  for (int d = 0; d < 4; d++) {
    if (d == 2) continue;
    if (k->shape[d] != q->shape[d] || v->shape[d] != q->shape[d])
      return tide_fail("%s: q %s, k %s and v %s must agree in B, H and D (shapes [B, H, T, D], [B, H, S, D], [B, H, S, D])",
                       op, sq, sk, sv);
  }
  if (k->shape[2] != v->shape[2])
    return tide_fail("%s: k %s and v %s must have the same number of keys S (dimension 3); q is %s", op, sk, sv, sq);
  c->B = q->shape[0], c->H = q->shape[1], c->T = q->shape[2], c->S = k->shape[2], c->D = q->shape[3];
  if (c->T > INT_MAX || c->S > INT_MAX || c->D > INT_MAX)
    return tide_fail("%s: q %s, k %s: T, S and D must be at most %d (BLAS sizes)", op, sq, sk, INT_MAX);
  return 0;
}

/* operands --------------------------------------------------------------------- */

/* True when t (4-d) can be read in place as compute type ct: unit stride along
   D and a row stride BLAS accepts. */
static int readable_in_place(const tide_tensor *t, int32_t ct) {
  if (t->dtype != ct) return 0;
  int64_t D = t->shape[3], R = t->shape[2];
  if (D > 1 && t->stride[3] != 1) return 0;
  if (R > 1 && (t->stride[2] < max64(D, 1) || t->stride[2] > INT_MAX)) return 0;
  return 1;
}

/* Describes t for the kernels, through a contiguous ct copy (kept in *hold)
   when it cannot be read in place. */
static int read_opnd(const tide_tensor *t, int32_t ct, opnd *o, tide_tensor **hold) {
  *hold = NULL;
  if (!readable_in_place(t, ct)) {
    *hold = tide_contiguous_as(t, ct);
    if (!*hold) return -1;
    t = *hold;
  }
  o->p = t->data;
  o->sb = t->stride[0], o->sh = t->stride[1];
  o->ld = t->shape[2] > 1 ? t->stride[2] : max64(t->shape[3], 1);
  return 0;
}

/* A new [B, H, R, D] tensor of dtype whose memory is [B, R, H, D]. */
static tide_tensor *new_bthd(int32_t dtype, int64_t B, int64_t H, int64_t R, int64_t D) {
  int64_t mshape[4] = {B, R, H, D};
  tide_tensor *base = tide_new(dtype, 4, mshape);
  if (!base) return NULL;
  int64_t shape[4] = {B, H, R, D}, stride[4] = {R * H * D, D, H * D, 1};
  tide_tensor *v = tide_new_view(base, 4, shape, stride, base->offset);
  tide_tensor_release(base);
  return v;
}

/* An output slot for the kernels: `res` is what the caller gets (dtype dt),
   `work` what the kernels write (res itself for f32/f64, an f32 twin for
   bf16/f16, copied into res at the end). */
typedef struct {
  tide_tensor *res, *work;
} outslot;

static int new_out(outslot *s, int32_t dt, int32_t ct, int64_t B, int64_t H, int64_t R, int64_t D, opnd *o) {
  s->work = NULL;
  s->res = new_bthd(dt, B, H, R, D);
  if (!s->res) return -1;
  if (dt == ct) {
    s->work = s->res;
    tide_tensor_retain(s->work);
  } else {
    s->work = new_bthd(ct, B, H, R, D);
    if (!s->work) return -1;
  }
  o->p = s->work->data;
  o->sb = R * H * D, o->sh = D, o->ld = max64(H * D, 1);
  return 0;
}

/* Stores the work tensor into the result when they differ. */
static int finish_out(outslot *s) {
  if (s->work == s->res) return 0;
  return tide_copy_into(s->res, s->work);
}

static void drop_out(outslot *s) {
  tide_tensor_release(s->work);
  tide_tensor_release(s->res);
  s->work = s->res = NULL;
}

static int32_t compute_type(int32_t dt) { return dt == TIDE_F64 ? TIDE_F64 : TIDE_F32; }

/* Checks the key mask against c's B and S and points c->kmask at a
   contiguous u8 copy kept in *hold (NULL mask: none). */
static int read_mask(const tide_tensor *m, const char *op, attn_ctx *c, tide_tensor **hold) {
  *hold = NULL;
  if (!m) return 0;
  TIDE_TRY(tide_check_tensor(m, op));
  char s[160];
  if (m->ndim != 2 || m->shape[0] != c->B || m->shape[1] != c->S)
    return tide_fail("%s: key_mask must be [B, S] = [%lld, %lld], got shape %s", op, (long long)c->B, (long long)c->S,
                     tide_shape_str(s, sizeof s, m->ndim, m->shape));
  if (m->dtype != TIDE_BOOL && m->dtype != TIDE_U8)
    return tide_fail("%s: key_mask must be bool or u8 (nonzero = attend), got %s", op, tide_dtype_name(m->dtype));
  if (!(*hold = tide_contiguous_as(m, TIDE_U8))) return -1;
  c->kmask = (const unsigned char *)(*hold)->data;
  return 0;
}

/* forward ---------------------------------------------------------------------- */

int tide_attention(const tide_tensor *q, const tide_tensor *k, const tide_tensor *v, const tide_tensor *key_mask,
                   int32_t causal, double scale, tide_tensor **out, tide_tensor **lse) {
  const char *op = "attention";
  if (!out || !lse) return tide_fail("%s: no output slot given", op);
  attn_ctx c;
  memset(&c, 0, sizeof c);
  TIDE_TRY(check_qkv(q, k, v, op, &c));
  if (causal != 0 && causal != 1) return tide_fail("%s: causal must be 0 or 1, got %d", op, causal);
  c.causal = causal, c.scale = scale;
  int32_t dt = q->dtype, ct = compute_type(dt);

  outslot so = {0};
  tide_tensor *hq = NULL, *hk = NULL, *hv = NULL, *l = NULL, *hm = NULL;
  int rc = -1;
  TIDE_TRY(read_mask(key_mask, op, &c, &hm));
  int64_t lshape[3] = {c.B, c.H, c.T};
  if (new_out(&so, dt, ct, c.B, c.H, c.T, c.D, &c.o)) goto done;
  if (!(l = tide_new(ct, 3, lshape))) goto done;
  c.lse = l->data;
  if (read_opnd(q, ct, &c.q, &hq) || read_opnd(k, ct, &c.k, &hk) || read_opnd(v, ct, &c.v, &hv)) goto done;
  rc = ct == TIDE_F64 ? forward_f64(&c) : forward_f32(&c);
  if (!rc) rc = finish_out(&so);
done:
  tide_tensor_release(hm);
  tide_tensor_release(hq);
  tide_tensor_release(hk);
  tide_tensor_release(hv);
  if (rc) {
    drop_out(&so);
    tide_tensor_release(l);
    return -1;
  }
  tide_tensor_release(so.work);
  *out = so.res;
  *lse = l;
  return 0;
}

/* backward --------------------------------------------------------------------- */

int tide_attention_backward(const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k, const tide_tensor *v,
                            const tide_tensor *key_mask, const tide_tensor *out, const tide_tensor *lse, int32_t causal,
                            double scale, tide_tensor **dq, tide_tensor **dk, tide_tensor **dv) {
  const char *op = "attention_backward";
  if (!dq || !dk || !dv) return tide_fail("%s: no output slot given", op);
  attn_ctx c;
  memset(&c, 0, sizeof c);
  TIDE_TRY(check_qkv(q, k, v, op, &c));
  TIDE_TRY(check4(dout, op, "dout", "T"));
  TIDE_TRY(check4(out, op, "out", "T"));
  TIDE_TRY(tide_check_tensor(lse, op));
  if (causal != 0 && causal != 1) return tide_fail("%s: causal must be 0 or 1, got %d", op, causal);
  c.causal = causal, c.scale = scale;
  char s1[160], s2[160];
  tide_shape_str(s1, sizeof s1, 4, q->shape);
  if (memcmp(dout->shape, q->shape, 4 * sizeof(int64_t)) != 0)
    return tide_fail("%s: dout has shape %s, expected q's shape %s", op, tide_shape_str(s2, sizeof s2, 4, dout->shape), s1);
  if (memcmp(out->shape, q->shape, 4 * sizeof(int64_t)) != 0)
    return tide_fail("%s: out has shape %s, expected q's shape %s", op, tide_shape_str(s2, sizeof s2, 4, out->shape), s1);
  if (dout->dtype != q->dtype || out->dtype != q->dtype)
    return tide_fail("%s: dout and out must have q's dtype %s, got %s and %s", op, tide_dtype_name(q->dtype),
                     tide_dtype_name(dout->dtype), tide_dtype_name(out->dtype));
  if (lse->ndim != 3 || lse->shape[0] != c.B || lse->shape[1] != c.H || lse->shape[2] != c.T)
    return tide_fail("%s: lse has shape %s, expected [B, H, T] = [%lld, %lld, %lld] for q %s", op,
                     tide_shape_str(s2, sizeof s2, lse->ndim, lse->shape), (long long)c.B, (long long)c.H, (long long)c.T, s1);
  if (!tide_is_float(lse->dtype))
    return tide_fail("%s: lse must be a floating-point tensor, got %s", op, tide_dtype_name(lse->dtype));
  int32_t dt = q->dtype, ct = compute_type(dt);

  outslot sq = {0}, sk = {0}, sv = {0};
  tide_tensor *hq = NULL, *hk = NULL, *hv = NULL, *ho = NULL, *hd = NULL, *hl = NULL, *rd = NULL, *hm = NULL;
  int rc = -1;
  TIDE_TRY(read_mask(key_mask, op, &c, &hm));
  int64_t lshape[3] = {c.B, c.H, c.T};
  if (new_out(&sq, dt, ct, c.B, c.H, c.T, c.D, &c.dq) || new_out(&sk, dt, ct, c.B, c.H, c.S, c.D, &c.dk) ||
      new_out(&sv, dt, ct, c.B, c.H, c.S, c.D, &c.dv))
    goto done;
  if (read_opnd(q, ct, &c.q, &hq) || read_opnd(k, ct, &c.k, &hk) || read_opnd(v, ct, &c.v, &hv) ||
      read_opnd(out, ct, &c.o, &ho) || read_opnd(dout, ct, &c.dout, &hd))
    goto done;
  if (!(hl = tide_contiguous_as(lse, ct))) goto done;
  c.lse = hl->data;
  if (!(rd = tide_new(ct, 3, lshape))) goto done;
  c.rowdot = rd->data;
  rc = ct == TIDE_F64 ? backward_f64(&c) : backward_f32(&c);
  if (!rc) rc = finish_out(&sq);
  if (!rc) rc = finish_out(&sk);
  if (!rc) rc = finish_out(&sv);
done:
  tide_tensor_release(hm);
  tide_tensor_release(hq);
  tide_tensor_release(hk);
  tide_tensor_release(hv);
  tide_tensor_release(ho);
  tide_tensor_release(hd);
  tide_tensor_release(hl);
  tide_tensor_release(rd);
  if (rc) {
    drop_out(&sq);
    drop_out(&sk);
    drop_out(&sv);
    return -1;
  }
  tide_tensor_release(sq.work);
  tide_tensor_release(sk.work);
  tide_tensor_release(sv.work);
  *dq = sq.res, *dk = sk.res, *dv = sv.res;
  return 0;
}

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
  FN(prod_rk)(&g, D, Q, c->q.ld, K, c->k.ld, sc, kend);
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
  FN(prod_rd)(&g, D, (R)1, sc, kend, V, c->v.ld, (R)0, O, c->o.ld);
  for (int64_t r = 0; r < m; r++) FN(scale_row)(O + r * c->o.ld, inv[r], D);
}

static int FN(forward)(const attn_ctx *c) {
  int64_t nqb = (c->T + BLK - 1) / BLK, ntask = c->B * c->H * nqb;
  if (ntask == 0) return 0;
  size_t bytes = (size_t)BLK * (size_t)max64(c->S, 1) * sizeof(R);
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
