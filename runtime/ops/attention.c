/* Attention's op layer: checks, operand layouts, results on the operands'
   device, then the backend's kernel (kernels/nn_attention.h).

   Layout. out, dq, dk and dv are [B, H, R, D] views of [B, R, H, D] memory,
   as PyTorch's CPU flash attention returns them: GPT-2 merges heads with
   out:transpose(2, 3), which is then contiguous, so the view to [B, T, C]
   costs no copy. tide_attention_backward_qkv writes dq, dk and dv as the
   three heads of one [B, T, 3, H, D] buffer, which is the gradient of
   GPT-2's packed c_attn output [B, T, 3C] as it is: no concatenation.
   lse is a contiguous [B, H, T] tensor. Inputs are read in
   place when their last dimension is contiguous (the transposed split of
   GPT-2's c_attn output is); other layouts are copied first. f32 and f64
   compute natively (lse in the same type), bf16/f16 through f32 copies of
   the inputs and f32 twins of the results (lse f32).

   Flash attention. Where the backend has flash kernels (CUDA: bf16 tensor
   cores, f32 accumulation) they run instead for bf16 inputs with a head
   size D that is a multiple of 16 from 16 to 128; bf16 operands are then
   read and written as bf16, with no f32 copies (lse stays f32). f32 and
   f16 inputs keep the plain kernels, whose products are as precise as their
   type (as PyTorch, whose flash kernel takes only half types), and so do
   other head sizes and f64. The environment variable TIDE_ATTENTION, read
   at each call, overrides the choice: `plain` always takes the plain
   kernels (to compare), `flash` takes flash attention for f32, bf16 and f16
   inputs (rounded to bf16 for the products) and fails with a clear error
   where it cannot (f64, a head size it lacks); `auto` or unset is the rule
   above; any other value fails. A backend without flash kernels (the CPU)
   takes its one kernel for plain and flash alike. */
#include "dispatch.h"
#include "nn_attention.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct {
  int64_t B, H, T, S, D;
} attn_dims;

/* argument checks -------------------------------------------------------------- */

/* The message tide_check_handle gives a NULL operand; the others were checked by tide_op_device. */
static int need_tensor(const tide_tensor *t, const char *op) {
  return t ? 0 : tide_fail("%s: expected a tensor, got nil", op);
}

/* t is a 4-d float tensor; `rows` names its third dimension in the message. */
static int check4(const tide_tensor *t, const char *op, const char *name, const char *rows) {
  TIDE_TRY(need_tensor(t, op));
  char s[160];
  if (t->ndim != 4)
    return tide_fail("%s: %s must be 4-d [B, H, %s, D], got shape %s", op, name, rows, tide_shape_str(s, sizeof s, t->ndim, t->shape));
  if (!tide_is_float(t->dtype))
    return tide_fail("%s: %s must be a floating-point tensor (f32, f64, bf16, f16), got %s", op, name, tide_dtype_name(t->dtype));
  return 0;
}

/* q, k, v agree in B, H, D and dtype, k and v in S; sets the sizes in c. */
static int check_qkv(const tide_tensor *q, const tide_tensor *k, const tide_tensor *v, const char *op, attn_dims *c) {
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

/* causal is 0 or 1; q_offset (the position of query row 0 among the S keys under the causal
   mask) is >= 0, only with causal, and leaves every query a key at its own position. */
static int check_mask_args(const char *op, int32_t causal, int64_t q_offset, const attn_dims *c) {
  if (causal != 0 && causal != 1) return tide_fail("%s: causal must be 0 or 1, got %d", op, causal);
  if (q_offset < 0) return tide_fail("%s: q_offset must be >= 0, got %lld", op, (long long)q_offset);
  if (q_offset > 0 && !causal)
    return tide_fail("%s: q_offset = %lld shifts the causal mask and needs causal = 1", op, (long long)q_offset);
  if (q_offset > 0 && q_offset > c->S - c->T)
    return tide_fail("%s: q_offset = %lld with T = %lld queries needs q_offset + T <= S = %lld keys (the queries are "
                     "positions q_offset .. q_offset + T - 1 of the keys)",
                     op, (long long)q_offset, (long long)c->T, (long long)c->S);
  return 0;
}

/* kernel choice ---------------------------------------------------------------- */

/* Whether this call takes the backend's flash kernels (*flash = 1) or the
   plain ones, by the rule and TIDE_ATTENTION at the top of this file. */
static int choose_flash(const tide_backend *be, const char *op, int32_t dt, int64_t D, int *flash) {
  *flash = 0;
  const char *mode = getenv("TIDE_ATTENTION");
  int forced = 0;
  if (mode && *mode && strcmp(mode, "auto") != 0) {
    if (strcmp(mode, "plain") == 0) return 0;
    if (strcmp(mode, "flash") != 0)
      return tide_fail("%s: TIDE_ATTENTION must be auto, plain or flash, got '%s'", op, mode);
    forced = 1;
  }
  if (!be->attention->flash_forward || !be->attention->flash_backward) return 0;
  int fits_d = D >= 16 && D <= 128 && D % 16 == 0;
  if (forced) {
    if (dt != TIDE_F32 && dt != TIDE_BF16 && dt != TIDE_F16)
      return tide_fail("%s: TIDE_ATTENTION=flash: flash attention takes f32, bf16 or f16 inputs, got %s", op,
                       tide_dtype_name(dt));
    if (!fits_d)
      return tide_fail("%s: TIDE_ATTENTION=flash: flash attention needs a head size D that is a multiple of 16 from "
                       "16 to 128, got D = %lld (unset TIDE_ATTENTION to take the plain kernel)",
                       op, (long long)D);
    *flash = 1;
    return 0;
  }
  *flash = dt == TIDE_BF16 && fits_d;
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

/* The data and {batch, head, row} strides of t for the kernels, through a
   contiguous ct copy (kept in *hold) when it cannot be read in place. */
static int read_opnd(const tide_tensor *t, int32_t ct, const void **p, int64_t st[3], tide_tensor **hold) {
  *hold = NULL;
  if (!readable_in_place(t, ct)) {
    *hold = tide_contiguous_as(t, ct);
    if (!*hold) return -1;
    t = *hold;
  }
  *p = t->data;
  st[0] = t->stride[0], st[1] = t->stride[1];
  st[2] = t->shape[2] > 1 ? t->stride[2] : max64(t->shape[3], 1);
  return 0;
}

/* A new [B, H, R, D] tensor of dtype on dev whose memory is [B, R, H, D]. */
static tide_tensor *new_bthd(int32_t dev, int32_t dtype, int64_t B, int64_t H, int64_t R, int64_t D) {
  int64_t mshape[4] = {B, R, H, D};
  tide_tensor *base = tide_new_on(dev, dtype, 4, mshape);
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

static int new_out(outslot *s, int32_t dev, int32_t dt, int32_t ct, int64_t B, int64_t H, int64_t R, int64_t D,
                   int64_t st[3]) {
  s->work = NULL;
  s->res = new_bthd(dev, dt, B, H, R, D);
  if (!s->res) return -1;
  if (dt == ct) {
    s->work = s->res;
    tide_tensor_retain(s->work);
  } else {
    s->work = new_bthd(dev, ct, B, H, R, D);
    if (!s->work) return -1;
  }
  st[0] = R * H * D, st[1] = D, st[2] = max64(H * D, 1);
  return 0;
}

/* An output slot whose result is the given [B, H, R, D] view (a head of a packed [B, R, 3, H, D]
   buffer, taken over): st are the strides of what the kernels write. */
static int new_out_view(outslot *s, tide_tensor *view, int32_t dev, int32_t dt, int32_t ct, int64_t st[3]) {
  s->res = view;
  s->work = NULL;
  if (!view) return -1;
  int64_t B = view->shape[0], H = view->shape[1], R = view->shape[2], D = view->shape[3];
  if (dt == ct) {
    s->work = view;
    tide_tensor_retain(view);
  } else if (!(s->work = new_bthd(dev, ct, B, H, R, D))) {
    return -1;
  }
  st[0] = s->work->stride[0], st[1] = s->work->stride[1];
  st[2] = R > 1 ? s->work->stride[2] : max64(H * D, 1);
  return 0;
}

/* Head j (0 q, 1 k, 2 v) of the packed [B, R, 3, H, D] gradient `base` as a [B, H, R, D] view. */
static tide_tensor *packed_head(tide_tensor *base, int64_t j) {
  int64_t B = base->shape[0], R = base->shape[1], H = base->shape[3], D = base->shape[4];
  int64_t shape[4] = {B, H, R, D}, stride[4] = {R * 3 * H * D, D, 3 * H * D, 1};
  return tide_new_view(base, 4, shape, stride, base->offset + j * H * D);
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

/* Checks the key mask against B and S and points *km at a contiguous u8
   copy kept in *hold (NULL mask: none). */
static int read_mask(const tide_tensor *m, const char *op, const attn_dims *c, const uint8_t **km, tide_tensor **hold) {
  *hold = NULL;
  *km = NULL;
  if (!m) return 0;
  char s[160];
  if (m->ndim != 2 || m->shape[0] != c->B || m->shape[1] != c->S)
    return tide_fail("%s: key_mask must be [B, S] = [%lld, %lld], got shape %s", op, (long long)c->B, (long long)c->S,
                     tide_shape_str(s, sizeof s, m->ndim, m->shape));
  if (m->dtype != TIDE_BOOL && m->dtype != TIDE_U8)
    return tide_fail("%s: key_mask must be bool or u8 (nonzero = attend), got %s", op, tide_dtype_name(m->dtype));
  if (!(*hold = tide_contiguous_as(m, TIDE_U8))) return -1;
  *km = (const uint8_t *)(*hold)->data;
  return 0;
}

/* forward ---------------------------------------------------------------------- */

int tide_attention(const tide_tensor *q, const tide_tensor *k, const tide_tensor *v, const tide_tensor *key_mask,
                   int32_t causal, int64_t q_offset, double scale, tide_tensor **out, tide_tensor **lse) {
  const char *op = "attention";
  if (!out || !lse) return tide_fail("%s: no output slot given", op);
  const tide_tensor *ts[4] = {q, k, v, key_mask};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, attention, op, 4, ts);
  if (!be->attention->attention_forward) return tide_not_implemented(op, be);
  attn_dims c;
  TIDE_TRY(check_qkv(q, k, v, op, &c));
  TIDE_TRY(check_mask_args(op, causal, q_offset, &c));
  int32_t dt = q->dtype, ct = compute_type(dt);
  int flash;
  TIDE_TRY(choose_flash(be, op, dt, c.D, &flash));
  /* flash reads bf16 as it is, other types as f32; its lse is f32 */
  int32_t lt = ct;
  if (flash) ct = dt == TIDE_BF16 ? TIDE_BF16 : TIDE_F32, lt = TIDE_F32;

  const uint8_t *km;
  tide_attn_strides st;
  memset(&st, 0, sizeof st);
  const void *pq, *pk, *pv;
  outslot so = {0};
  tide_tensor *hq = NULL, *hk = NULL, *hv = NULL, *l = NULL, *hm = NULL;
  int rc = -1;
  TIDE_TRY(read_mask(key_mask, op, &c, &km, &hm));
  int64_t lshape[3] = {c.B, c.H, c.T};
  if (new_out(&so, dev, dt, ct, c.B, c.H, c.T, c.D, st.out)) goto done;
  if (!(l = tide_new_on(dev, lt, 3, lshape))) goto done;
  if (read_opnd(q, ct, &pq, st.q, &hq) || read_opnd(k, ct, &pk, st.k, &hk) || read_opnd(v, ct, &pv, st.v, &hv)) goto done;
  rc = (flash ? be->attention->flash_forward : be->attention->attention_forward)(
      so.work->data, l->data, pq, pk, pv, km, c.B, c.H, c.T, c.S, c.D, causal, q_offset, scale, &st, ct);
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

/* The backward of both entries below: dq, dk, dv as three tensors, or (dqkv not NULL) written
   into one [B, T, 3, H, D] buffer returned as [B, T, 3 * H * D]. */
static int attention_backward(const char *op, const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k,
                              const tide_tensor *v, const tide_tensor *key_mask, const tide_tensor *out,
                              const tide_tensor *lse, int32_t causal, int64_t q_offset, double scale, tide_tensor **dq,
                              tide_tensor **dk, tide_tensor **dv, tide_tensor **dqkv) {
  const tide_tensor *ts[7] = {dout, q, k, v, key_mask, out, lse};
  const tide_backend *be;
  int32_t dev;
  TIDE_OP_BACKEND(be, dev, attention, op, 7, ts);
  if (!be->attention->attention_backward) return tide_not_implemented(op, be);
  attn_dims c;
  TIDE_TRY(check_qkv(q, k, v, op, &c));
  TIDE_TRY(check4(dout, op, "dout", "T"));
  TIDE_TRY(check4(out, op, "out", "T"));
  TIDE_TRY(need_tensor(lse, op));
  TIDE_TRY(check_mask_args(op, causal, q_offset, &c));
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
  int flash;
  TIDE_TRY(choose_flash(be, op, dt, c.D, &flash));
  int32_t lt = ct;
  if (flash) ct = dt == TIDE_BF16 ? TIDE_BF16 : TIDE_F32, lt = TIDE_F32;

  const uint8_t *km;
  tide_attn_strides st;
  memset(&st, 0, sizeof st);
  const void *pq, *pk, *pv, *po, *pd;
  outslot sq = {0}, sk = {0}, sv = {0};
  tide_tensor *hq = NULL, *hk = NULL, *hv = NULL, *ho = NULL, *hd = NULL, *hl = NULL, *rd = NULL, *hm = NULL;
  tide_tensor *packed = NULL;
  int rc = -1;
  TIDE_TRY(read_mask(key_mask, op, &c, &km, &hm));
  int64_t lshape[3] = {c.B, c.H, c.T};
  if (dqkv) {
    if (c.S != c.T) {
      rc = tide_fail("%s: packed q, k, v gradients need as many keys as queries, got T = %lld and S = %lld", op,
                     (long long)c.T, (long long)c.S);
      goto done;
    }
    int64_t pshape[5] = {c.B, c.T, 3, c.H, c.D};
    if (!(packed = tide_new_on(dev, dt, 5, pshape))) goto done;
    if (new_out_view(&sq, packed_head(packed, 0), dev, dt, ct, st.dq) ||
        new_out_view(&sk, packed_head(packed, 1), dev, dt, ct, st.dk) ||
        new_out_view(&sv, packed_head(packed, 2), dev, dt, ct, st.dv))
      goto done;
  } else if (new_out(&sq, dev, dt, ct, c.B, c.H, c.T, c.D, st.dq) ||
             new_out(&sk, dev, dt, ct, c.B, c.H, c.S, c.D, st.dk) ||
             new_out(&sv, dev, dt, ct, c.B, c.H, c.S, c.D, st.dv)) {
    goto done;
  }
  if (read_opnd(q, ct, &pq, st.q, &hq) || read_opnd(k, ct, &pk, st.k, &hk) || read_opnd(v, ct, &pv, st.v, &hv) ||
      read_opnd(out, ct, &po, st.out, &ho) || read_opnd(dout, ct, &pd, st.dout, &hd))
    goto done;
  if (!(hl = tide_contiguous_as(lse, lt))) goto done;
  if (!(rd = tide_new_on(dev, lt, 3, lshape))) goto done;
  rc = (flash ? be->attention->flash_backward : be->attention->attention_backward)(
      sq.work->data, sk.work->data, sv.work->data, rd->data, pd, pq, pk, pv, po, hl->data, km, c.B, c.H, c.T, c.S, c.D,
      causal, q_offset, scale, &st, ct);
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
    tide_tensor_release(packed);
    return -1;
  }
  tide_tensor_release(sq.work);
  tide_tensor_release(sk.work);
  tide_tensor_release(sv.work);
  if (dqkv) {
    tide_tensor_release(sq.res);
    tide_tensor_release(sk.res);
    tide_tensor_release(sv.res);
    int64_t shape[3] = {c.B, c.T, 3 * c.H * c.D}, stride[3] = {packed->stride[0], packed->stride[1], 1};
    *dqkv = tide_new_view(packed, 3, shape, stride, packed->offset);
    tide_tensor_release(packed);
    return *dqkv ? 0 : -1;
  }
  *dq = sq.res, *dk = sk.res, *dv = sv.res;
  return 0;
}

int tide_attention_backward(const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k, const tide_tensor *v,
                            const tide_tensor *key_mask, const tide_tensor *out, const tide_tensor *lse, int32_t causal,
                            int64_t q_offset, double scale, tide_tensor **dq, tide_tensor **dk, tide_tensor **dv) {
  const char *op = "attention_backward";
  if (!dq || !dk || !dv) return tide_fail("%s: no output slot given", op);
  return attention_backward(op, dout, q, k, v, key_mask, out, lse, causal, q_offset, scale, dq, dk, dv, NULL);
}

int tide_attention_backward_qkv(const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k,
                                const tide_tensor *v, const tide_tensor *key_mask, const tide_tensor *out,
                                const tide_tensor *lse, int32_t causal, double scale, tide_tensor **dqkv) {
  const char *op = "attention_backward";
  if (!dqkv) return tide_fail("%s: no output slot given", op);
  return attention_backward(op, dout, q, k, v, key_mask, out, lse, causal, 0, scale, NULL, NULL, NULL, dqkv);
}
