/* Fused scaled dot-product attention kernels, forward and backward, one table
   per backend:

     out = softmax(q k^T * scale + mask) v,  lse = logsumexp(q k^T * scale + mask)

   per (batch, head), q and out [B, H, T, D], k and v [B, H, S, D]. Every
   [B, H, R, D] operand has unit stride along D and its own strides for
   B, H and R, in elements (tide_attn_strides); lse (and the backward's
   rowdot scratch) are contiguous [B, H, T]. dtype is the compute dtype of
   every operand and of lse: TIDE_F32 or TIDE_F64 (the op layer converts
   bf16/f16). causal = 1 lets query t see key s when s <= t + q_offset:
   q_offset (>= 0, the absolute position of query row 0) = 0 is the top-left
   triangle (as PyTorch's is_causal, also when T != S), q_offset = S - T the
   bottom-right one (the queries are the last T of S positions: decoding over
   a KV cache). q_offset < 0 fails; causal = 0 ignores it. key_mask, when not
   NULL, is [B, S] contiguous u8 (nonzero: may be attended) applied on top;
   a query left no key gets zeros, lse -inf and no gradient. Results are the
   same bits for any thread count. */
#ifndef TIDE_KERNELS_NN_ATTENTION_H
#define TIDE_KERNELS_NN_ATTENTION_H
#include "tide.h"

/* Strides {batch, head, row} in elements of each [B, H, R, D] operand; the
   forward reads q, k, v, out, the backward all of them. */
typedef struct tide_attn_strides {
  int64_t q[3], k[3], v[3], out[3], dout[3], dq[3], dk[3], dv[3];
} tide_attn_strides;

struct tide_attention_kernels {
  /* out and lse from q, k, v (and key_mask). */
  int (*attention_forward)(void *out, void *lse, const void *q, const void *k, const void *v,
                           const uint8_t *key_mask, int64_t B, int64_t H, int64_t T, int64_t S, int64_t D,
                           int causal, int64_t q_offset, double scale, const tide_attn_strides *st,
                           int32_t dtype);
  /* dq, dk, dv from dout and the forward's q, k, v, out, lse (and key_mask); rowdot is
     [B, H, T] scratch of dtype. */
  int (*attention_backward)(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q,
                            const void *k, const void *v, const void *out, const void *lse,
                            const uint8_t *key_mask, int64_t B, int64_t H, int64_t T, int64_t S, int64_t D,
                            int causal, int64_t q_offset, double scale, const tide_attn_strides *st,
                            int32_t dtype);
  /* Flash attention on tensor cores (the CUDA backend has it; NULL where a
     backend has none): the same results as the two entries above with q, k,
     v (and in the backward dout, P and dS) rounded to bf16 for the products,
     f32 accumulation and softmax. dtype is that of q, k, v, out, dout and the
     gradients: TIDE_F32 or TIDE_BF16; lse and rowdot are f32 whatever it is.
     D must be a multiple of 16 from 16 to 128 (else the call fails and the
     op layer takes the entries above). */
  int (*flash_forward)(void *out, void *lse, const void *q, const void *k, const void *v, const uint8_t *key_mask,
                       int64_t B, int64_t H, int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                       const tide_attn_strides *st, int32_t dtype);
  int (*flash_backward)(void *dq, void *dk, void *dv, void *rowdot, const void *dout, const void *q, const void *k,
                        const void *v, const void *out, const void *lse, const uint8_t *key_mask, int64_t B, int64_t H,
                        int64_t T, int64_t S, int64_t D, int causal, int64_t q_offset, double scale,
                        const tide_attn_strides *st, int32_t dtype);
};

/* The CPU backend's attention kernels (kernels/cpu/nn_attention.c). */
extern const struct tide_attention_kernels tide_cpu_attention;

#endif
