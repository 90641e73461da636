/* The elementwise kernels through the CPU backend's table, with plain
   pointers and element strides as the op layer hands them (and as a device
   backend's kernels will be checked against): broadcast (stride 0) and
   strided operands, predicates writing bool bytes, the integer operand scan,
   where by element size, and gelu_backward against the op that wraps it. */
#include "tensor.h"
#include "backend.h"
#include "unary.h"
#include "binary.h"
#include "nn_gelu.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

static const tide_backend *be = &tide_cpu_backend;

static void test_table(void) {
  CHECK(be->unary && be->unary->unary && be->unary->clamp);
  CHECK(be->binary && be->binary->binary && be->binary->find_zero_or_negative && be->binary->where);
  CHECK(be->gelu && be->gelu->gelu_backward);
}

static void test_unary(void) {
  /* neg over a [2, 3] view of a transposed [3, 2] buffer, into a contiguous output */
  float x[6] = {1, 2, 3, 4, 5, 6}, out[6] = {0};
  int64_t shape[2] = {2, 3}, xs[2] = {1, 2}, os[2] = {3, 1};
  CHECK(be->unary->unary(TIDE_NEG, TIDE_F32, 2, shape, out, os, x, xs) == 0);
  const float want[6] = {-1, -3, -5, -2, -4, -6};
  CHECK(!memcmp(out, want, sizeof want));
  /* a predicate writes bool bytes from f64 */
  double d[3] = {NAN, 1, INFINITY};
  uint8_t b[3] = {9, 9, 9};
  int64_t n3[1] = {3}, one[1] = {1};
  CHECK(be->unary->unary(TIDE_ISNAN, TIDE_F64, 1, n3, b, one, d, one) == 0);
  CHECK(b[0] == 1 && b[1] == 0 && b[2] == 0);
  /* integer wrap, in place */
  int32_t i[2] = {INT32_MIN, 5};
  int64_t n2[1] = {2};
  CHECK(be->unary->unary(TIDE_ABS, TIDE_I32, 1, n2, i, one, i, one) == 0);
  CHECK(i[0] == INT32_MIN && i[1] == 5);
  /* a float-only op has no integer loop: an error, not a crash */
  CHECK(be->unary->unary(TIDE_EXP, TIDE_I64, 1, n2, i, one, i, one) == -1);
  /* clamp saturates integer bounds and ignores a NaN bound */
  uint8_t u[3] = {0, 100, 255}, uo[3];
  CHECK(be->unary->clamp(TIDE_U8, 1, n3, uo, one, u, one, -5, NAN) == 0);
  CHECK(uo[0] == 0 && uo[1] == 100 && uo[2] == 255);
  CHECK(be->unary->clamp(TIDE_U8, 1, n3, uo, one, u, one, 10, 200) == 0);
  CHECK(uo[0] == 10 && uo[1] == 100 && uo[2] == 200);
}

static void test_binary(void) {
  /* [2, 3] + a row broadcast down (stride 0) */
  float a[6] = {1, 2, 3, 4, 5, 6}, r[3] = {10, 20, 30}, out[6];
  int64_t shape[2] = {2, 3}, as[2] = {3, 1}, rs[2] = {0, 1};
  CHECK(be->binary->binary(TIDE_ADD, TIDE_F32, 2, shape, out, as, a, as, r, rs) == 0);
  const float want[6] = {11, 22, 33, 14, 25, 36};
  CHECK(!memcmp(out, want, sizeof want));
  /* a scalar on the left (0-d: every stride 0), comparison into bools */
  int64_t s = 3, zs[2] = {0, 0};
  uint8_t lt[6];
  CHECK(be->binary->binary(TIDE_LT, TIDE_I64, 2, shape, lt, as, &s, zs, (int64_t[]){1, 2, 3, 4, 5, 6}, as) == 0);
  CHECK(lt[0] == 0 && lt[2] == 0 && lt[3] == 1 && lt[5] == 1);
  /* integer arithmetic wraps */
  uint8_t u = 250, v = 10, w = 0;
  int64_t one[1] = {1}, n1[1] = {1};
  CHECK(be->binary->binary(TIDE_ADD, TIDE_U8, 1, n1, &w, one, &u, one, &v, one) == 0);
  CHECK(w == 4);
  /* the scan the op layer makes before integer fmod and pow */
  int32_t vals[4] = {3, 0, -2, 7}, found = -1;
  int64_t n4[1] = {4}, two[1] = {2};
  CHECK(be->binary->find_zero_or_negative(TIDE_I32, 0, 1, n4, vals, one, &found) == 0 && found == 1);
  CHECK(be->binary->find_zero_or_negative(TIDE_I32, 1, 1, n4, vals, one, &found) == 0 && found == 1);
  int64_t n2[1] = {2};
  CHECK(be->binary->find_zero_or_negative(TIDE_I32, 0, 1, n2, vals, two, &found) == 0 && found == 0);
  CHECK(be->binary->find_zero_or_negative(TIDE_I32, 1, 1, n2, vals, one, &found) == 0 && found == 0);
  /* where moves 2-byte elements whole (bf16 bit patterns untouched) */
  uint16_t x[3] = {0x3f80, 0x7fc1, 0x0001}, y[3] = {0xbf80, 0xbf80, 0xbf80}, o[3];
  uint8_t c[3] = {1, 7, 0};
  int64_t n3[1] = {3};
  CHECK(be->binary->where(TIDE_BF16, 1, n3, o, one, c, one, x, one, y, one) == 0);
  CHECK(o[0] == 0x3f80 && o[1] == 0x7fc1 && o[2] == 0xbf80);
}

static void test_gelu(void) {
  /* the kernel and tide_gelu_backward agree bit for bit on a strided x */
  int64_t shape[2] = {3, 4};
  tide_tensor *x = NULL, *xt = NULL, *dy = NULL, *dx = NULL;
  CHECK(tide_arange(-3, 0.5, 12, TIDE_F64, TIDE_CPU, &x) == 0);
  int64_t s43[2] = {4, 3};
  tide_tensor *x43 = NULL;
  CHECK(tide_view(x, 2, s43, &x43) == 0);
  CHECK(tide_transpose(x43, 0, 1, &xt) == 0);
  CHECK(tide_full(TIDE_F64, 2, shape, 0.75, TIDE_CPU, &dy) == 0);
  CHECK(tide_gelu_backward(dy, xt, &dx) == 0);
  double out[12];
  int64_t os[2] = {4, 1};
  CHECK(be->gelu->gelu_backward(TIDE_F64, 2, shape, out, os, dy->data, dy->stride, xt->data, xt->stride) == 0);
  CHECK(!memcmp(out, dx->data, sizeof out));
  CHECK(be->gelu->gelu_backward(TIDE_I32, 2, shape, out, os, dy->data, dy->stride, xt->data, xt->stride) == -1);
  tide_tensor_release(x);
  tide_tensor_release(x43);
  tide_tensor_release(xt);
  tide_tensor_release(dy);
  tide_tensor_release(dx);
}

int main(void) {
  test_table();
  test_unary();
  test_binary();
  test_gelu();
  if (failures) return 1;
  printf("ok\n");
  return 0;
}
