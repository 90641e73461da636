/* Embedding kernels: row lookup and its gradient, and GPT-2's token +
   position embedding, over ids already made contiguous i64 and checked in
   range by the op layer (runtime/ops/embedding.c). */
#ifndef TIDE_KERNELS_NN_EMBEDDING_H
#define TIDE_KERNELS_NN_EMBEDDING_H
#include "tide.h"

struct tide_embedding_kernels {
  /* Finds the first of ids[0..n) outside 0..V-1: returns 1 with its value in *bad, 0 when all are in
     range (the ops check before touching memory through any id). */
  int (*embedding_check_ids)(const int64_t *ids, int64_t n, int64_t V, int64_t *bad);
  /* out[i, :] = weight[ids[i], :] for i < n; out is [n, C] contiguous, weight's rows and columns
     step by w_row_stride and w_col_stride elements; dtype is any float dtype (bytes are copied). */
  int (*embedding_forward)(void *out, const void *weight, const int64_t *ids, int64_t n, int64_t C,
                           int64_t w_row_stride, int64_t w_col_stride, int32_t dtype);
  /* dweight [V, C] (contiguous, overwritten) = the rows of dout [n, C] (contiguous) summed by id, in
     dtype f32 or f64, each element's sum in the order of i whatever the thread count. */
  int (*embedding_backward)(void *dweight, const void *dout, const int64_t *ids, int64_t n, int64_t V, int64_t C,
                            int32_t dtype);
  /* GPT-2's input embedding: out [B, T, C] (contiguous) with
       out[b, t, :] = wte[ids[b * T + t], :] + wpe[pos, :],
     pos = past + t when pos_ids is NULL, else pos_ids[b * pos_b_stride + t] (pos_b_stride T for
     positions per row [B, T], 0 for one row [T] shared by the batch). wte's and wpe's rows and
     columns step by their row and column strides (elements). dtype (both tables and out) f32, f64,
     bf16 or f16: f32 and f64 add in their type; bf16 and f16 add in f32 and round once, exactly as the
     unfused embedding + embedding + add. Ids and positions are in range (checked by the op layer). */
  int (*gpt2_embedding_forward)(void *out, const void *wte, const void *wpe, const int64_t *ids,
                                const int64_t *pos_ids, int64_t pos_b_stride, int64_t B, int64_t T, int64_t C,
                                int64_t past, int64_t wte_row_stride, int64_t wte_col_stride, int64_t wpe_row_stride,
                                int64_t wpe_col_stride, int32_t dtype);
};

/* The CPU's (kernels/cpu/nn_embedding.c). */
extern const struct tide_embedding_kernels tide_cpu_embedding;

#endif
