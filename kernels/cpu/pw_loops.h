/* The CPU's elementwise loops: the compute types every op has loops for and
   the hint that makes unit-stride loops vectorise. Internal to kernels/cpu. */
#ifndef TIDE_CPU_PW_LOOPS_H
#define TIDE_CPU_PW_LOOPS_H
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

#endif
