#include "dtype.h"

static const int32_t sizes[TIDE_NUM_DTYPES] = {4, 8, 2, 2, 4, 8, 1, 1, 2};
static const char *const names[TIDE_NUM_DTYPES] = {"f32", "f64", "bf16", "f16", "i32", "i64", "u8", "bool", "u16"};

int32_t tide_dtype_size(int32_t dt) { return tide_dtype_valid(dt) ? sizes[dt] : 0; }
const char *tide_dtype_name(int32_t dt) { return tide_dtype_valid(dt) ? names[dt] : "invalid"; }

/* PyTorch's lattice: bool < integers < floats; among floats f64 wins and
   bf16 with f16 meets at f32; among integers the wider type wins, u8/u16
   with a signed type goes to the signed type wide enough. */
int32_t tide_promote_types(int32_t a, int32_t b) {
  if (!tide_dtype_valid(a) || !tide_dtype_valid(b)) return -1;
  if (a == b) return a;
  if (a == TIDE_BOOL) return b;
  if (b == TIDE_BOOL) return a;
  int fa = tide_is_float(a), fb = tide_is_float(b);
  if (fa && !fb) return a;
  if (fb && !fa) return b;
  if (fa && fb) {
    if (a == TIDE_F64 || b == TIDE_F64) return TIDE_F64;
    return TIDE_F32;  /* f32 with anything, or bf16 with f16 */
  }
  static const int rank[TIDE_NUM_DTYPES] = {0, 0, 0, 0, 3, 4, 1, 0, 2};
  if (a == TIDE_I64 || b == TIDE_I64) return TIDE_I64;
  if (a == TIDE_I32 || b == TIDE_I32) return TIDE_I32;
  /* u8 with u16 */
  return rank[a] > rank[b] ? a : b;
}
