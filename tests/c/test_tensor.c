/* C-level checks of the tensor core: geometry of views, broadcasting, the
   half-precision conversions (exhaustively), casts, and that bad input comes
   back as an error status with a message rather than a crash. */
#include "tensor.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
#define CHECK_ERR(call, text) do { int rc_ = (call); CHECK(rc_ == -1); \
  if (!strstr(tide_last_error(), text)) { printf("FAIL %s:%d: error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, tide_last_error(), text); failures++; } } while (0)

static tide_tensor *arange_f32(int64_t n) {
  tide_tensor *t = NULL;
  if (tide_arange(0, 1, n, TIDE_F32, TIDE_CPU, &t)) return NULL;
  return t;
}

static float at(const tide_tensor *t, int64_t i, int64_t j) {
  return *(const float *)(t->data + (i * t->stride[0] + j * t->stride[1]) * 4);
}

static void test_views(void) {
  tide_tensor *a = arange_f32(24), *v = NULL, *tt = NULL, *n = NULL, *s = NULL, *e = NULL, *r = NULL;
  int64_t shape[3] = {2, 3, 4};
  CHECK(tide_view(a, 3, shape, &v) == 0);
  CHECK(v->ndim == 3 && v->stride[0] == 12 && v->stride[1] == 4 && v->stride[2] == 1);
  CHECK(v->storage == a->storage && a->storage->refcount == 2);
  CHECK(tide_transpose(v, 0, 2, &tt) == 0);
  CHECK(tt->shape[0] == 4 && tt->shape[2] == 2 && tt->stride[0] == 1 && tt->stride[2] == 12);
  CHECK(!tide_is_contiguous(tt));
  /* a transposed tensor cannot be viewed flat, but can be reshaped (copy) */
  int64_t flat[1] = {24};
  CHECK_ERR(tide_view(tt, 1, flat, &r), "cannot view");
  CHECK(tide_reshape(tt, 1, flat, &r) == 0);
  CHECK(r->storage != a->storage);
  /* element [1] of the flattened transpose is v[1][0][0] = 12 */
  CHECK(((float *)r->data)[1] == 12.0f);
  CHECK(tide_narrow(v, 2, 1, 2, &n) == 0);
  CHECK(n->shape[2] == 2 && n->offset == 1);
  /* viewing a narrowed tensor: the last two dims [3, 2] are not mergeable */
  int64_t six[2] = {2, 6};
  tide_tensor *bad = NULL;
  CHECK_ERR(tide_view(n, 2, six, &bad), "cannot view");
  /* but splitting a dim is fine */
  int64_t split[4] = {2, 3, 2, 1};
  tide_tensor *ok = NULL;
  CHECK(tide_view(n, 4, split, &ok) == 0);
  tide_tensor_release(ok);
  CHECK(tide_select(v, 1, 2, &s) == 0);
  CHECK(s->ndim == 2 && s->offset == 8 && at(s, 1, 3) == 23.0f);
  int64_t eshape[2] = {5, 24};
  CHECK(tide_expand(a, 2, eshape, &e) == 0);
  CHECK(e->stride[0] == 0 && e->stride[1] == 1);
  /* -1 inference */
  int64_t infer[2] = {-1, 6};
  tide_tensor *iv = NULL;
  CHECK(tide_view(a, 2, infer, &iv) == 0 && iv->shape[0] == 4);
  tide_tensor_release(iv);
  int64_t two_infer[2] = {-1, -1};
  CHECK_ERR(tide_view(a, 2, two_infer, &iv), "only one dimension");
  int64_t wrong[2] = {5, 5};
  CHECK_ERR(tide_view(a, 2, wrong, &iv), "[5, 5] is invalid for a tensor of shape [24]");
  tide_tensor *u = NULL, *q = NULL;
  CHECK(tide_unsqueeze(v, 3, &u) == 0 && u->ndim == 4 && u->shape[3] == 1);
  CHECK(tide_squeeze(u, -1, &q) == 0 && q->ndim == 3);
  tide_tensor_release(u);
  tide_tensor_release(q);
  tide_tensor *rel[] = {a, v, tt, n, s, e, r};
  for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) tide_tensor_release(rel[i]);
}

static void test_bad_input(void) {
  tide_tensor *t = NULL;
  int64_t neg[2] = {2, -3};
  CHECK_ERR(tide_empty(TIDE_F32, 2, neg, TIDE_CPU, &t), "negative size -3");
  CHECK_ERR(tide_empty(99, 0, neg, TIDE_CPU, &t), "invalid dtype");
  CHECK_ERR(tide_empty(TIDE_F32, 9, neg, TIDE_CPU, &t), "dimensions");
  int64_t huge[3] = {1LL << 40, 1LL << 40, 1LL << 40};
  CHECK_ERR(tide_empty(TIDE_F32, 3, huge, TIDE_CPU, &t), "too large");
  CHECK_ERR(tide_view(NULL, 0, neg, &t), "expected a tensor");
  tide_tensor *a = arange_f32(6);
  CHECK_ERR(tide_narrow(a, 0, 4, 3, &t), "outside dimension 1 of size 6");
  CHECK_ERR(tide_select(a, 0, 6, &t), "index 7 out of range");
  CHECK_ERR(tide_select(a, 1, 0, &t), "dimension 2 out of range");
  int32_t dup[1] = {0};
  int32_t badp[1] = {3};
  CHECK(tide_permute(a, dup, &t) == 0);
  tide_tensor_release(t);
  CHECK_ERR(tide_permute(a, badp, &t), "out of range");
  int64_t st[1] = {1}, sh[1] = {7};
  CHECK_ERR(tide_as_strided(a, 1, sh, st, 0, &t), "outside a storage of 6");
  int64_t es[1] = {7};
  CHECK_ERR(tide_expand(a, 1, es, &t), "cannot expand");
  CHECK_ERR(tide_cast(a, -1, &t), "invalid dtype");
  CHECK_ERR(tide_arange(0, 0, 3, TIDE_F32, TIDE_CPU, &t), "step");
  tide_tensor *b = arange_f32(4);
  CHECK_ERR(tide_copy_(a, b), "cannot be broadcast");
  tide_tensor_release(a);
  tide_tensor_release(b);
}

static void test_broadcast(void) {
  int64_t a[3] = {4, 1, 3}, b[2] = {5, 1}, out[8];
  int32_t nd;
  CHECK(tide_broadcast_shapes(3, a, 2, b, &nd, out, "t") == 0);
  CHECK(nd == 3 && out[0] == 4 && out[1] == 5 && out[2] == 3);
  int64_t c[2] = {2, 3}, d[2] = {4, 5};
  CHECK_ERR(tide_broadcast_shapes(2, c, 2, d, &nd, out, "add"), "add: shapes [2, 3] and [4, 5] cannot be broadcast");
}

/* Every f16 bit pattern survives f16 -> f32 -> f16; every bf16 pattern too
   (NaNs stay NaN). Rounding is to nearest even at the halfway points. */
static void test_half_conversions(void) {
  int bad16 = 0, badbf = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = tide_f16_to_f32((uint16_t)h);
    uint16_t back = tide_f32_to_f16(f);
    if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h) bad16++;
    float g = tide_bf16_to_f32((uint16_t)h);
    uint16_t gb = tide_f32_to_bf16(g);
    if (isnan(g) ? !isnan(tide_bf16_to_f32(gb)) : gb != h) badbf++;
  }
  CHECK(bad16 == 0);
  CHECK(badbf == 0);
  CHECK(tide_f16_to_f32(0x3c00) == 1.0f);
  CHECK(tide_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
  CHECK(tide_f32_to_f16(65504.0f) == 0x7bff);
  CHECK(tide_f32_to_f16(65520.0f) == 0x7c00);         /* rounds to infinity */
  CHECK(tide_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00);  /* tie to even */
  CHECK(tide_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02);
  CHECK(tide_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);  /* tie to even */
  CHECK(tide_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3f82);
}

static void test_casts(void) {
  tide_tensor *a = NULL, *b = NULL, *c = NULL;
  int64_t n = 5;
  CHECK(tide_arange(-2.5, 1.5, n, TIDE_F64, TIDE_CPU, &a) == 0);  /* -2.5 -1 0.5 2 3.5 */
  CHECK(tide_cast(a, TIDE_I32, &b) == 0);
  int32_t *bi = (int32_t *)b->data;
  CHECK(bi[0] == -2 && bi[1] == -1 && bi[2] == 0 && bi[3] == 2 && bi[4] == 3);  /* truncation */
  CHECK(tide_cast(a, TIDE_BOOL, &c) == 0);
  CHECK(c->data[2] == 1 && c->data[0] == 1);
  tide_tensor_release(b);
  tide_tensor_release(c);
  /* saturation instead of UB for out-of-range float -> int */
  tide_tensor *big = NULL;
  int64_t one = 1;
  CHECK(tide_full(TIDE_F32, 1, &one, 1e30, TIDE_CPU, &big) == 0);
  CHECK(tide_cast(big, TIDE_I32, &b) == 0 && ((int32_t *)b->data)[0] == INT32_MAX);
  tide_tensor_release(b);
  CHECK(tide_fill_(big, NAN) == 0 && tide_cast(big, TIDE_I64, &b) == 0 && ((int64_t *)b->data)[0] == 0);
  tide_tensor_release(b);
  /* integer narrowing wraps like a C cast */
  tide_tensor *w = NULL;
  CHECK(tide_full(TIDE_I64, 1, &one, 300, TIDE_CPU, &w) == 0 && tide_cast(w, TIDE_U8, &b) == 0 && ((uint8_t *)b->data)[0] == 44);
  tide_tensor_release(b);
  tide_tensor_release(w);
  tide_tensor_release(big);
  tide_tensor_release(a);
}

/* copy_ between overlapping views of one storage behaves as if it read
   everything first */
static void test_overlapping_copy(void) {
  tide_tensor *a = arange_f32(6), *dst = NULL, *src = NULL;
  CHECK(tide_narrow(a, 0, 1, 5, &dst) == 0);
  CHECK(tide_narrow(a, 0, 0, 5, &src) == 0);
  CHECK(tide_copy_(dst, src) == 0);
  const float *p = (const float *)a->data;
  CHECK(p[0] == 0 && p[1] == 0 && p[2] == 1 && p[5] == 4);
  tide_tensor_release(dst);
  tide_tensor_release(src);
  tide_tensor_release(a);
}

static void test_memory_accounting(void) {
  int64_t before = tide_mem_live_bytes();
  int64_t shape[1] = {1000};
  tide_tensor *t = NULL, *v = NULL;
  CHECK(tide_empty(TIDE_F64, 1, shape, TIDE_CPU, &t) == 0);
  CHECK(tide_mem_live_bytes() - before == 8000);
  CHECK(tide_narrow(t, 0, 10, 10, &v) == 0);
  tide_tensor_release(t);
  CHECK(tide_mem_live_bytes() - before == 8000);  /* the view keeps the storage */
  tide_tensor_release(v);
  CHECK(tide_mem_live_bytes() == before);
  tide_tensor *al = NULL;
  CHECK(tide_empty(TIDE_U8, 1, shape, TIDE_CPU, &al) == 0 && ((uintptr_t)al->data % 64) == 0);
  tide_tensor_release(al);
}

/* Sizes whose product overflows int64 though a zero makes the tensor empty
   ([0, 2^62, 7904]: its contiguous strides overflow) are errors, in creation
   and in every view; offsets and strides are computed with overflow checks. */
static void test_shape_overflow(void) {
  tide_tensor *t = NULL, *v = NULL, *a = arange_f32(6), *z = NULL;
  int64_t big[3] = {0, (int64_t)1 << 62, 7904};
  CHECK_ERR(tide_empty(TIDE_F32, 3, big, TIDE_CPU, &t), "shape [0, 4611686018427387904, 7904] is too large");
  CHECK(t == NULL);
  CHECK_ERR(tide_full(TIDE_F32, 3, big, 0, TIDE_CPU, &t), "is too large");
  int64_t sq[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  CHECK_ERR(tide_empty(TIDE_U8, 2, sq, TIDE_CPU, &t), "is too large");
  CHECK(tide_shape_numel(3, big, "x") == -1);
  int64_t ok[3] = {0, (int64_t)1 << 20, 7};
  CHECK(tide_shape_numel(3, ok, "x") == 0);
  CHECK(tide_empty(TIDE_F32, 3, ok, TIDE_CPU, &z) == 0 && z->numel == 0 && z->stride[0] == 7 << 20);
  /* views of an empty tensor: view/reshape to a huge shape, expand */
  int64_t vbig[3] = {0, (int64_t)1 << 61, 4};
  CHECK_ERR(tide_view(z, 3, vbig, &v), "is too large");
  CHECK_ERR(tide_reshape(z, 3, vbig, &v), "is too large");
  int64_t one[2] = {1, 1};
  tide_tensor *o = NULL;
  CHECK(tide_full(TIDE_F32, 2, one, 1, TIDE_CPU, &o) == 0);
  CHECK_ERR(tide_expand(o, 2, sq, &v), "is too large");
  /* narrow/select far past the end, and at 2^62 */
  CHECK_ERR(tide_narrow(a, 0, (int64_t)1 << 62, (int64_t)1 << 62, &v), "narrow: 4611686018427387904 elements from 0-based position");
  CHECK_ERR(tide_narrow(a, 0, INT64_MAX, INT64_MAX, &v), "narrow: 9223372036854775807 elements");
  CHECK_ERR(tide_narrow(a, 0, 5, 2, &v), "narrow: elements 6..7 are outside dimension 1 of size 6");
  CHECK_ERR(tide_select(a, 0, INT64_MAX, &v), "select: index 9223372036854775807 (0-based) out of range");
  /* as_strided: offsets past the storage, strides whose reach overflows */
  int64_t s1[1] = {3}, st_big[1] = {(int64_t)1 << 62}, s0[1] = {0};
  CHECK_ERR(tide_as_strided(a, 1, s1, st_big, 0, &v), "as_strided");
  CHECK_ERR(tide_as_strided(a, 1, s0, s1, (int64_t)1 << 62, &v), "offset 4611686018427387904 is outside a storage of 6 elements");
  /* an empty view with a huge stride: select/narrow/unsqueeze on it stay defined */
  int64_t es[2] = {2, 0}, est[2] = {(int64_t)1 << 62, 1};
  tide_tensor *w = NULL;
  CHECK(tide_as_strided(a, 2, es, est, 0, &w) == 0 && w->numel == 0);
  CHECK_ERR(tide_select(w, 0, 1, &v), "view: offset 4611686018427387904 is outside a storage of 6 elements");
  CHECK_ERR(tide_narrow(w, 0, 2, 0, &v), "narrow: the offset of position 3 overflows");
  CHECK(tide_unsqueeze(w, 0, &v) == 0);
  tide_tensor_release(v);
  tide_tensor_release(w);
  tide_tensor_release(o);
  tide_tensor_release(z);
  tide_tensor_release(a);
}

/* Lua can write a handle's fields; ops re-check the geometry on entry. */
static void test_tampered_handle(void) {
  tide_tensor *a = arange_f32(3), *out = NULL;
  a->numel = 100000000;
  CHECK_ERR(tide_reduce(TIDE_SUM, a, 0, 0, &out, NULL), "corrupt tensor handle");
  a->numel = 3;
  a->stride[0] = 2;
  CHECK_ERR(tide_cast(a, TIDE_F64, &out), "corrupt tensor handle");
  a->stride[0] = 1;
  a->offset = 1;
  CHECK_ERR(tide_fill_(a, 0), "corrupt tensor handle");
  a->offset = 0;
  a->data += 4;
  CHECK_ERR(tide_copy_(a, a), "corrupt tensor handle");
  a->data -= 4;
  a->shape[0] = -1;
  CHECK_ERR(tide_unary(TIDE_NEG, a, &out), "corrupt tensor handle");
  a->shape[0] = 3;
  a->ndim = 9;
  CHECK_ERR(tide_contiguous(a, &out), "corrupt tensor handle");
  a->ndim = 1;
  CHECK(tide_cast(a, TIDE_F64, &out) == 0);
  tide_tensor_release(out);
  tide_tensor_release(a);
}

/* Every in-place op counts a write on the storage, seen by all its views. */
static void test_versions(void) {
  tide_tensor *a = arange_f32(4), *v = NULL;
  int64_t s[1] = {2};
  CHECK(tide_tensor_version(a) == 0);
  CHECK(tide_narrow(a, 0, 1, 2, &v) == 0);
  CHECK(tide_fill_(v, 1) == 0);
  CHECK(tide_tensor_version(a) == 1 && tide_tensor_version(v) == 1);
  CHECK(tide_binary_scalar_(TIDE_MUL, a, 2) == 0);
  CHECK(tide_copy_(v, v) == 0);
  CHECK(tide_tensor_version(v) == 3);
  tide_tensor *w = NULL;
  CHECK(tide_as_strided(a, 1, s, s, 0, &w) == 0 && tide_tensor_version(w) == 3);
  tide_tensor_release(w);
  tide_tensor_release(v);
  tide_tensor_release(a);
}

/* An empty tensor is contiguous wherever its zero is (fuzz_safetensors found
   [0, 4615807, 0, 97904] loaded as "not contiguous"). */
static void test_empty_contiguous(void) {
  int64_t shapes[3][4] = {{2, 0, 3, 1}, {0, 4615807, 0, 97904}, {5, 7, 0, 2}};
  for (int i = 0; i < 3; i++) {
    tide_tensor *t = NULL;
    CHECK(tide_empty(TIDE_F32, 4, shapes[i], TIDE_CPU, &t) == 0);
    if (t) CHECK(tide_is_contiguous(t));
    tide_tensor_release(t);
  }
}

int main(void) {
  test_empty_contiguous();
  test_views();
  test_bad_input();
  test_broadcast();
  test_half_conversions();
  test_casts();
  test_overlapping_copy();
  test_memory_accounting();
  test_shape_overflow();
  test_tampered_handle();
  test_versions();
  printf("%s: %d failures\n", __FILE__, failures);
  return failures ? 1 : 0;
}
