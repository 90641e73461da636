/* The op layer's elementwise plumbing (unary, binary and the pointwise nn
   ops): which dtype an op computes in, result types, operand conversion, the
   in-place target check, and the driver that runs a CPU loop into a fresh or
   in-place target (the loop itself is a kernel's). */
#ifndef TIDE_OPS_POINTWISE_H
#define TIDE_OPS_POINTWISE_H
#include "iter.h"
#include <math.h>

/* The dtype elements of dt are computed in (f32, f64, i32, i64 or u8). */
static inline int32_t pw_compute_dtype(int32_t dt) {
  switch (dt) {
    case TIDE_F32: case TIDE_BF16: case TIDE_F16: return TIDE_F32;
    case TIDE_F64: return TIDE_F64;
    case TIDE_I32: return TIDE_I32;
    case TIDE_U8: case TIDE_BOOL: return TIDE_U8;
    default: return TIDE_I64;
  }
}

/* bool < integers < floats, the categories PyTorch's promotion compares. */
static inline int pw_category(int32_t dt) { return dt == TIDE_BOOL ? 0 : tide_is_float(dt) ? 2 : 1; }

/* True when a Lua number used as an operand counts as an integer (inf/NaN do not). */
static inline int pw_integral(double s) { return isfinite(s) && s == floor(s); }

/* Result dtype of a tensor with a number, as PyTorch: the tensor's dtype,
   except an integer tensor with a fractional number gives f32 and a bool
   tensor with a number gives i64 (integral) or f32. */
static inline int32_t pw_scalar_result(int32_t dt, double s) {
  if (dt == TIDE_BOOL) return pw_integral(s) ? TIDE_I64 : TIDE_F32;
  if (!tide_is_float(dt) && !pw_integral(s)) return TIDE_F32;
  return dt;
}

/* Result dtype of two tensors: tide_promote_types, except that a 0-d tensor
   beside a dimensioned one only decides the dtype when its category is higher
   (PyTorch's rule, so x_f32 * tensor_0d_f64 stays f32). */
int32_t tide_pw_result_type(const tide_tensor *a, const tide_tensor *b);

/* t itself (retained) when its elements already are of compute dtype cd (any
   strides; bool counts as u8), else a contiguous converted copy. */
tide_tensor *tide_pw_operand(const tide_tensor *t, int32_t cd);

/* Fails naming `what` when t has elements that share memory (a stride 0 over
   a dim longer than 1, as expand makes), which an in-place write would race on. */
int tide_pw_check_writable(const tide_tensor *t, const char *what);

/* Runs fn over shape with operands {target, ins...}: the loop writes elements
   of loop_dt; when dst has another dtype the loop writes a temporary that is
   then converted into dst. Inputs that share storage with dst in a different
   layout are copied first, so in-place ops read as if before any write. */
int tide_pw_run(tide_loop_fn fn, void *ctx, int32_t loop_dt, tide_tensor *dst, int32_t ndim, const int64_t *shape,
                int32_t nin, const tide_tensor *const *ins);

#endif
