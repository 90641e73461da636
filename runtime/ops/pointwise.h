/* The op layer's elementwise plumbing (unary, binary and the pointwise nn
   ops): which dtype an op computes in, result types, operand conversion, the
   in-place target check, and the setup around a backend's elementwise kernel
   (tide_pw_prepare/tide_pw_finish: a temporary when the target's dtype is not
   the kernel's, copies of inputs that overlap the target). */
#ifndef TIDE_OPS_POINTWISE_H
#define TIDE_OPS_POINTWISE_H
#include "dispatch.h"
#include "tensor.h"
#include "iter.h" /* TIDE_ITER_MAX_OPS: the operands one kernel call walks */
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

/* tide_pw_backend's way out: the error for a NULL operand or operands on two devices. */
const tide_backend *tide_pw_backend_fail(const char *op, int32_t n, const tide_tensor *const *ts, int32_t *device);

/* The backend for an elementwise op's operands ts[0..n) (n >= 1), their device written to *device; NULL
   with the error set. Makes tide_op_device's checks in its order (a NULL operand fails as "OP: expected
   a tensor, got nil" where it stands), inline: a small op called from Lua pays no extra call for it. */
static inline const tide_backend *tide_pw_backend(const char *op, int32_t n, const tide_tensor *const *ts,
                                                  int32_t *device) {
  for (int32_t i = 0; i < n; i++) {
    if (!ts[i] || ts[i]->device != ts[0]->device) return tide_pw_backend_fail(op, n, ts, device);
    if (tide_check_handle(ts[i], op) != 0) return NULL;
  }
  *device = ts[0]->device;
  return tide_backend_for(*device, op);
}

#define TIDE_PW_MAX_IN (TIDE_ITER_MAX_OPS - 1)

/* One elementwise kernel call over a shape: the tensor the kernel writes and those it reads, each
   with its strides in elements broadcast to the shape (0 where broadcast). */
typedef struct tide_pw_args {
  tide_tensor *dst;                       /* the op's result or in-place target */
  tide_tensor *target;                    /* what the kernel writes: dst, or a temporary of the loop dtype */
  const tide_tensor *in[TIDE_PW_MAX_IN];  /* the inputs, or copies of those that overlap dst */
  tide_tensor *own[TIDE_PW_MAX_IN];       /* those copies (NULL where none) */
  int32_t nin, owns;                      /* owns: some own[k] is set */
  int64_t stride[1 + TIDE_PW_MAX_IN][TIDE_MAX_DIMS]; /* [0]: target's, [1 + k]: in[k]'s */
} tide_pw_args;

/* Sets up a kernel writing elements of loop_dt over shape into dst from ins[0..nin): when dst has
   another dtype the kernel writes a temporary that tide_pw_finish converts into dst; inputs that
   share storage with dst in a different layout are copied first, so in-place ops read as if before
   any write. On failure nothing is left to finish. */
int tide_pw_prepare(tide_pw_args *pa, int32_t loop_dt, tide_tensor *dst, int32_t ndim, const int64_t *shape,
                    int32_t nin, const tide_tensor *const *ins);
/* tide_pw_finish's work when tide_pw_prepare made a temporary or copies. */
int tide_pw_finish_made(tide_pw_args *pa, int rc);
/* Completes the call whose kernel returned rc: converts the temporary into dst when rc is 0, releases
   what tide_pw_prepare made, and returns rc (or -1 when the conversion fails). */
static inline int tide_pw_finish(tide_pw_args *pa, int rc) {
  return pa->target == pa->dst && !pa->owns ? rc : tide_pw_finish_made(pa, rc);
}

#endif
