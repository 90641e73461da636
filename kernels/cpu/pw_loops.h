/* The CPU's elementwise loops: the compute types every op has loops for, the
   hint that makes unit-stride loops vectorise, and the driver that runs a
   loop over raw strided operands. Internal to kernels/cpu. */
#ifndef TIDE_CPU_PW_LOOPS_H
#define TIDE_CPU_PW_LOOPS_H
#include "dtype.h"
#include "error.h"
#include "iter.h"

/* Compute types: every op has loops for these five only. bf16/f16 are storage
   types on the CPU and go through f32; u16 goes through i64; bool shares u8's
   loops (its bytes are 0/1). */
enum { PW_F32 = 0, PW_F64, PW_I32, PW_I64, PW_U8, PW_NUM_CT };

/* Hints the compiler that a unit-stride loop has no loop-carried dependence
   (outputs alias inputs only at the same index). */
#define PW_SIMD _Pragma("omp simd")
#ifdef __clang__
/* clang reports each simd loop it leaves scalar (those calling libm); GCC
   quietly does the same, which is what is wanted */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* Index of a compute dtype in the loop tables. */
static inline int pw_ct(int32_t cd) {
  switch (cd) {
    case TIDE_F32: return PW_F32;
    case TIDE_F64: return PW_F64;
    case TIDE_I32: return PW_I32;
    case TIDE_I64: return PW_I64;
    default: return PW_U8;
  }
}

/* Bytes per element of a compute dtype. */
static inline int64_t pw_size(int32_t cd) {
  switch (cd) {
    case TIDE_F32: case TIDE_I32: return 4;
    case TIDE_F64: case TIDE_I64: return 8;
    default: return 1;
  }
}

/* Runs fn over shape for nops operands: data[k] is operand k's first element, st[k] its strides in
   elements (0 where broadcast) and es[k] its element size in bytes. */
static inline __attribute__((always_inline)) void pw_run(tide_loop_fn fn, void *ctx, int32_t ndim, const int64_t *shape, int32_t nops,
                          char *const *data, const int64_t *const *st, const int64_t *es) {
  int64_t bytes[TIDE_ITER_MAX_OPS][TIDE_MAX_DIMS];
  for (int32_t k = 0; k < nops; k++)
    for (int32_t i = 0; i < ndim; i++) bytes[k][i] = st[k][i] * es[k];
  tide_iter it;
  tide_iter_init_raw(&it, ndim, shape, nops, data, (const int64_t(*)[TIDE_MAX_DIMS])bytes);
  tide_iter_run(&it, fn, ctx, TIDE_GRAIN);
}

#endif
