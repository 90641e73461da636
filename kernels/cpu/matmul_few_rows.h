/* f32 products whose left side has a few rows (decoding: one token per
   sequence), which OpenBLAS's gemm handles by packing the whole right operand
   first and gemv by its own thread pool: here the right operand is streamed
   once, by the OpenMP threads. */
#ifndef TIDE_KERNELS_CPU_MATMUL_FEW_ROWS_H
#define TIDE_KERNELS_CPU_MATMUL_FEW_ROWS_H
#include <stdint.h>

/* The most left-side rows tide_gemm_few_rows_f32 takes. */
#define TIDE_FEW_ROWS 16

/* C (m x n, row-major, contiguous) = A B, A m x k row-major (row stride lda),
   B k x n row-major (b_trans = 0, row stride ldb) or B^T stored n x k
   (b_trans = 1, row stride ldb); 1 <= m <= TIDE_FEW_ROWS, n, k >= 1. Each
   result is summed in an order fixed by k alone (not the thread count). */
void tide_gemm_few_rows_f32(float *c, const float *a, int64_t lda, const float *b, int b_trans, int64_t ldb,
                            int64_t m, int64_t n, int64_t k);

#endif
