/* Matrix-product kernels: a batched GEMM in the terms cuBLAS(Lt) and BLAS use
   (row-major operands, transpose flags, leading dimensions, batch strides),
   and an integer product over any strides. The op layer (runtime/ops/matmul.c)
   applies torch.matmul's rules (1-d operands, broadcast batch dims, dtypes)
   and hands over operands already in a layout these describe. */
#ifndef TIDE_KERNELS_MATMUL_H
#define TIDE_KERNELS_MATMUL_H
#include "tide.h"

/* op(X) = X (TIDE_GEMM_N) or X^T (TIDE_GEMM_T), X stored row-major. */
enum { TIDE_GEMM_N = 0, TIDE_GEMM_T = 1 };

/* gemm_epilogue's epilogue, flags: a bias added to every row, then the tanh GELU (GPT-2's gelu_new), whose
   input (the product plus the bias) is written to aux for the backward. 0 is the plain product. */
enum { TIDE_EPI_BIAS = 1, TIDE_EPI_GELU = 2 };
/* gemm_bgrad's bias gradient: none, the row sums of op(A) over k (m of them), or the column sums of op(B)
   over k (n of them). */
enum { TIDE_BGRAD_NONE = 0, TIDE_BGRAD_A = 1, TIDE_BGRAD_B = 2 };

struct tide_matmul_kernels {
  /* C_e = op(A_e) op(B_e) for every entry e of a batch of shape bshape[0..nb) (row-major; nb may be 0),
     in dtype f32 or f64 (A, B and C all of it), or bf16 where bf16_operands is set (CUDA: A, B and C bf16,
     products summed in f32 and each result rounded once to bf16, as the CPU's f32 product stored to bf16 would
     be): op(A) is m x k, op(B) k x n, C_e is m x n row-major, contiguous, at c + e*m*n.
     A is stored row-major with leading dim lda (transposed when transa), entry e at a + sum_d i_d *
     a_bstride[d] elements (0 where broadcast); likewise B. m, n, k, lda, ldb <= INT_MAX; m*n*batch > 0;
     k == 0 writes zeros. */
  int (*gemm_batched)(void *c, const void *a, const void *b, int32_t dtype, int64_t m, int64_t n, int64_t k,
                      int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t nb, const int64_t *bshape,
                      const int64_t *a_bstride, const int64_t *b_bstride);
  /* The same product in i64 with element strides rows/columns a_sr/a_sc, b_sr/b_sc (any values), summed
     in 64 bits with wrap-around on overflow. */
  int (*gemm_batched_i64)(int64_t *c, const int64_t *a, const int64_t *b, int64_t m, int64_t n, int64_t k,
                          int64_t a_sr, int64_t a_sc, int64_t b_sr, int64_t b_sc, int32_t nb, const int64_t *bshape,
                          const int64_t *a_bstride, const int64_t *b_bstride);
  /* CUDA only (NULL on the CPU): on != 0 lets f32 products run on TF32 tensor cores (inputs rounded to
     10 mantissa bits; off by default); returns the previous setting. */
  int (*set_allow_tf32)(int32_t on);
  /* One product with an epilogue (a Linear/Conv1D layer's forward): C = gelu?(op(A) op(B) + bias?), m, n, k in
     [1, INT_MAX], A, B as in gemm_batched (no batch), C m x n row-major contiguous, all of dtype f32 or f64, or
     bf16 where bf16_operands. epilogue: 0 or TIDE_EPI_* flags; with TIDE_EPI_BIAS, bias holds n elements of
     dtype (contiguous), added to every row; with TIDE_EPI_GELU, aux (m x n contiguous, dtype) receives the GELU's
     input, the product plus the bias. The CPU computes exactly what the unfused ops compute: gemm_batched's
     product rounded to dtype, plus the bias in dtype, then unary.c's gelu in dtype. CUDA (cuBLASLt's BIAS,
     GELU_AUX and GELU_AUX_BIAS epilogues) adds the bias to the f32 sum and takes the GELU of it before one
     rounding to dtype (aux rounded once too): for bf16 within an ulp of the unfused ops. */
  int (*gemm_epilogue)(void *c, void *aux, const void *a, const void *b, const void *bias, int32_t dtype, int64_t m,
                       int64_t n, int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t epilogue);
  /* CUDA only (NULL on the CPU, where the op layer runs the product and a sum op, as the unfused ops do): one
     product C = op(A) op(B) as gemm_epilogue's with no epilogue, and with bgrad TIDE_BGRAD_A dbias[i] =
     sum_p op(A)(i, p) (m elements), with TIDE_BGRAD_B dbias[j] = sum_p op(B)(p, j) (n elements), in dtype,
     summed in f32 (f64 for f64) in a fixed order (the same bits every run): a weight gradient and its bias
     gradient from one read of the output gradient (cuBLASLt's BGRADB / BGRADA epilogues). */
  int (*gemm_bgrad)(void *c, void *dbias, const void *a, const void *b, int32_t dtype, int64_t m, int64_t n,
                    int64_t k, int32_t transa, int64_t lda, int32_t transb, int64_t ldb, int32_t bgrad);
  /* 1 where gemm_batched takes bf16 operands (CUDA); 0 on the CPU, where the op layer converts them to f32. */
  int32_t bf16_operands;
};

/* The CPU's (kernels/cpu/matmul.c: OpenBLAS). */
extern const struct tide_matmul_kernels tide_cpu_matmul;

#endif
