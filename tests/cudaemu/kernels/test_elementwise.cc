// The elementwise families on CUDA against the CPU kernels: every unary op
// and clamp (kernels/unary.h), every binary op, find_zero_or_negative and
// where (kernels/binary.h), and gelu_backward (kernels/nn_gelu.h), in every
// compute dtype the contracts allow, over strided, transposed and broadcast
// (stride 0) layouts, sizes 0 and 1, in place, with NaN, infinities, -0 and
// integer extremes among the inputs. Outputs start poisoned (0xFF) and are
// compared whole, gaps included, so an unwritten or stray element fails.
#include "harness.h"

#include <algorithm>

namespace {

const int32_t kCompute[] = {TIDE_F32, TIDE_F64, TIDE_I32, TIDE_I64, TIDE_U8};

bool is_float(int32_t cd) { return cd == TIDE_F32 || cd == TIDE_F64; }
int esize(int32_t cd) { return tide_dtype_size(cd); }

// A layout: a shape and the strides (elements, >= 0) of each operand over it.
struct Layout {
  const char *name;
  std::vector<int64_t> shape;
  std::vector<std::vector<int64_t>> st;  // [operand][dim]
};

// Elements a buffer must hold for strides st over shape.
size_t span(const std::vector<int64_t> &shape, const std::vector<int64_t> &st) {
  int64_t last = 0;
  for (size_t d = 0; d < shape.size(); d++) {
    if (shape[d] == 0) return 1;
    last += (shape[d] - 1) * st[d];
  }
  return (size_t)last + 1;
}

// Layouts for nops operands (operand 0 is the output; it is never broadcast).
std::vector<Layout> layouts(int nops) {
  std::vector<Layout> v;
  auto all = [&](std::vector<int64_t> s) { return std::vector<std::vector<int64_t>>(nops, s); };
  v.push_back({"contiguous", {5, 7}, all({7, 1})});
  {  // output with gaps (row stride 9), inputs transposed views of [7, 5] buffers
    Layout l{"strided/transposed", {5, 7}, all({1, 5})};
    l.st[0] = {9, 1};
    v.push_back(l);
  }
  {  // the last input broadcast along dim 0 (a row), the one before along dim 1 (a column)
    Layout l{"broadcast", {4, 6}, all({6, 1})};
    if (nops >= 2) l.st[nops - 1] = {0, 1};
    if (nops >= 3) l.st[nops - 2] = {1, 0};
    v.push_back(l);
  }
  {  // every input a scalar (stride 0 everywhere)
    Layout l{"scalar inputs", {3, 5}, all({0, 0})};
    l.st[0] = {5, 1};
    v.push_back(l);
  }
  {  // 4-d with a size-1 dim and a permuted input: dims merge for some operands only
    Layout l{"4d permuted", {3, 1, 4, 5}, all({20, 20, 5, 1})};
    if (nops >= 2) l.st[1] = {1, 3, 15, 3};
    v.push_back(l);
  }
  v.push_back({"one element", {1}, all({1})});
  v.push_back({"0-d", {}, all({})});
  v.push_back({"odd 1-d", {300}, all({1})});
  {
    Layout l{"empty", {0, 3}, all({3, 1})};
    v.push_back(l);
  }
  return v;
}

// n values of compute dtype cd as bytes: random ones with the edge cases first.
std::vector<unsigned char> values(Rng &r, int32_t cd, size_t n, bool positive = false, bool nonzero = false) {
  std::vector<double> sp;
  if (is_float(cd)) sp = {NAN, INFINITY, -INFINITY, -0.0, 0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e30, -1e-30, 88.5, -100};
  else if (cd == TIDE_I32) sp = {-2147483648.0, 2147483647.0, 0, -1, 1, 7, -7, 65536};
  else if (cd == TIDE_I64) sp = {-9223372036854775808.0, 9223372036854775807.0, 0, -1, 1, 7, -7, 4294967296.0};
  else sp = {0, 255, 1, 128, 3};
  std::vector<unsigned char> b(n * esize(cd));
  for (size_t i = 0; i < n; i++) {
    double v;
    if (i < sp.size() && r.uniform() < 0.8) v = sp[i];
    else if (is_float(cd)) v = r.normal() * 3;
    else if (cd == TIDE_U8) v = (double)r.randint(0, 256);
    else v = (double)r.randint(-1000, 1000);
    if (positive) {
      v = fabs(v);
      if (!is_float(cd)) v = fmod(v, 9);  // small exponents: integer powers wrap anyway
    }
    if (nonzero && v == 0) v = 3;
    tide_store_f64((char *)b.data() + i * esize(cd), cd, v);
  }
  return b;
}

// got against want, both buffers of n elements of dt: exact, or within rtol/atol as doubles (NaN matches NaN)
void compare(const std::vector<unsigned char> &got, const std::vector<unsigned char> &want, int32_t dt, bool exact,
             double rtol, double atol, const char *what) {
  if (exact || !is_float(dt)) {
    expect_bits(got, want, what);
    return;
  }
  size_t n = got.size() / esize(dt);
  std::vector<double> g(n), w(n);
  for (size_t i = 0; i < n; i++) {
    g[i] = tide_load_f64((const char *)got.data() + i * esize(dt), dt);
    w[i] = tide_load_f64((const char *)want.data() + i * esize(dt), dt);
  }
  expect_close(g.data(), w.data(), n, rtol, atol, what);
}

// Ops with no integer form (integer inputs compute in f32 in the op layer).
bool float_only(int op) {
  return op == TIDE_EXP || op == TIDE_LOG || op == TIDE_SQRT || op == TIDE_RSQRT || op == TIDE_TANH ||
         op == TIDE_SIGMOID || op == TIDE_GELU || op == TIDE_SIN || op == TIDE_COS || op == TIDE_LOG1P ||
         op == TIDE_EXPM1 || op == TIDE_RECIPROCAL;
}
// Ops whose IEEE result is correctly rounded (or exact): the same bits on the GPU.
bool un_exact(int op) {
  return op == TIDE_NEG || op == TIDE_ABS || op == TIDE_SQRT || op == TIDE_RSQRT || op == TIDE_RELU ||
         op == TIDE_NOT || op == TIDE_FLOOR || op == TIDE_CEIL || op == TIDE_ROUND || op == TIDE_SIGN ||
         op == TIDE_SQUARE || op == TIDE_RECIPROCAL || op == TIDE_ISNAN || op == TIDE_ISINF;
}
bool un_predicate(int op) { return op == TIDE_NOT || op == TIDE_ISNAN || op == TIDE_ISINF; }

// f32 agrees to a few ulp (libm or vmath.h on the CPU, CUDA's math on the GPU), f64 likewise
double rtol_of(int32_t cd) { return cd == TIDE_F32 ? 1e-5 : 1e-12; }
double atol_of(int32_t cd) { return cd == TIDE_F32 ? 1e-6 : 1e-12; }

// one unary op over layout l (operand 0: out, 1: x); in place when inplace (out is x)
void run_unary(int op, int32_t cd, const Layout &l, bool inplace, Rng &r) {
  int32_t od = un_predicate(op) ? TIDE_BOOL : cd;
  size_t nx = span(l.shape, l.st[1]), no = span(l.shape, l.st[0]);
  if (inplace) nx = no = std::max(nx, no);
  auto x = values(r, cd, nx);
  int nd = (int)l.shape.size();
  char what[160];
  snprintf(what, sizeof what, "unary op %d %s %s%s", op, tide_dtype_name(cd), l.name, inplace ? " in place" : "");
  if (inplace) {
    Dev dx = upload(x);
    std::vector<unsigned char> want = x;
    CHECK_OK(cuda().unary->unary(op, cd, nd, l.shape.data(), dx.p, l.st[0].data(), dx.p, l.st[0].data()));
    CHECK_OK(cpu().unary->unary(op, cd, nd, l.shape.data(), want.data(), l.st[0].data(), want.data(), l.st[0].data()));
    compare(download<unsigned char>(dx, want.size()), want, od, un_exact(op), rtol_of(cd), atol_of(cd), what);
    return;
  }
  Dev dx = upload(x), dout(no * esize(od));
  std::vector<unsigned char> want(no * esize(od), 0xFF);
  CHECK_OK(cuda().unary->unary(op, cd, nd, l.shape.data(), dout.p, l.st[0].data(), dx.p, l.st[1].data()));
  CHECK_OK(cpu().unary->unary(op, cd, nd, l.shape.data(), want.data(), l.st[0].data(), x.data(), l.st[1].data()));
  compare(download<unsigned char>(dout, want.size()), want, od, un_exact(op), rtol_of(cd), atol_of(cd), what);
}

// Ops whose result is exact in IEEE arithmetic (pow goes through libraries that differ by an ulp).
bool bin_exact(int op) { return op != TIDE_POW; }
bool bin_predicate(int op) { return op >= TIDE_EQ && op <= TIDE_XOR; }

void run_binary(int op, int32_t cd, const Layout &l, int inplace, Rng &r) {
  int32_t od = bin_predicate(op) ? TIDE_BOOL : cd;
  bool int_rhs_checked = !is_float(cd) && (op == TIDE_POW || op == TIDE_FMOD);
  size_t no = span(l.shape, l.st[0]), na = span(l.shape, l.st[1]), nb = span(l.shape, l.st[2]);
  int nd = (int)l.shape.size();
  char what[160];
  snprintf(what, sizeof what, "binary op %d %s %s%s", op, tide_dtype_name(cd), l.name,
           inplace == 1 ? " out=a" : inplace == 2 ? " out=b" : "");
  if (inplace) {  // out is a (or b) itself, same strides; the other operand as laid out
    if (bin_predicate(op)) return;  // bool output over compute-dtype input: no in-place form
    size_t ns = std::max(no, na);
    auto self = values(r, cd, ns, inplace == 2 && int_rhs_checked, inplace == 2 && int_rhs_checked);
    auto other = values(r, cd, nb, inplace == 1 && int_rhs_checked, inplace == 1 && int_rhs_checked);
    Dev ds = upload(self), dother = upload(other);
    std::vector<unsigned char> want = self;
    const int64_t *so = l.st[0].data(), *sb = l.st[2].data();
    if (inplace == 1) {
      CHECK_OK(cuda().binary->binary(op, cd, nd, l.shape.data(), ds.p, so, ds.p, so, dother.p, sb));
      CHECK_OK(cpu().binary->binary(op, cd, nd, l.shape.data(), want.data(), so, want.data(), so, other.data(), sb));
    } else {
      CHECK_OK(cuda().binary->binary(op, cd, nd, l.shape.data(), ds.p, so, dother.p, sb, ds.p, so));
      CHECK_OK(cpu().binary->binary(op, cd, nd, l.shape.data(), want.data(), so, other.data(), sb, want.data(), so));
    }
    compare(download<unsigned char>(ds, want.size()), want, od, bin_exact(op), rtol_of(cd), atol_of(cd), what);
    return;
  }
  auto a = values(r, cd, na), b = values(r, cd, nb, int_rhs_checked, int_rhs_checked);
  Dev da = upload(a), db = upload(b), dout(no * esize(od));
  std::vector<unsigned char> want(no * esize(od), 0xFF);
  CHECK_OK(cuda().binary->binary(op, cd, nd, l.shape.data(), dout.p, l.st[0].data(), da.p, l.st[1].data(), db.p,
                                 l.st[2].data()));
  CHECK_OK(cpu().binary->binary(op, cd, nd, l.shape.data(), want.data(), l.st[0].data(), a.data(), l.st[1].data(),
                                b.data(), l.st[2].data()));
  compare(download<unsigned char>(dout, want.size()), want, od, bin_exact(op), rtol_of(cd), atol_of(cd), what);
}

}  // namespace

KTEST(unary_every_op_and_dtype) {
  Rng r(11);
  auto ls = layouts(2);
  for (int op = 0; op < TIDE_NUM_UNARY; op++)
    for (int32_t cd : kCompute) {
      if (float_only(op) && !is_float(cd)) continue;
      for (const Layout &l : ls) run_unary(op, cd, l, false, r);
      if (!un_predicate(op)) {
        run_unary(op, cd, ls[0], true, r);
        run_unary(op, cd, ls[1], true, r);  // in place through a strided view with gaps
      }
    }
}

KTEST(unary_float_only_ops_reject_integers) {
  std::vector<int64_t> shape = {3}, st = {1};
  Dev d(64);
  CHECK_FAILS(cuda().unary->unary(TIDE_EXP, TIDE_I32, 1, shape.data(), d.p, st.data(), d.p, st.data()), "no loop");
  CHECK_FAILS(cuda().unary->unary(TIDE_NUM_UNARY, TIDE_F32, 1, shape.data(), d.p, st.data(), d.p, st.data()),
              "no loop");
  CHECK_FAILS(cuda().binary->binary(TIDE_DIV, TIDE_I64, 1, shape.data(), d.p, st.data(), d.p, st.data(), d.p,
                                    st.data()), "no loop");
  CHECK_FAILS(cuda().gelu->gelu_backward(TIDE_I32, 1, shape.data(), d.p, st.data(), d.p, st.data(), d.p, st.data()),
              "no loop");
}

KTEST(clamp_every_dtype_and_bound) {
  Rng r(12);
  auto ls = layouts(2);
  const double bounds[][2] = {{-1, 2},   {NAN, 0.5},   {-0.5, NAN}, {3, -3},     {NAN, NAN},
                              {-1e30, 1e30}, {100, 300}, {-5e9, 5e9}, {2.7, 2.7}, {-INFINITY, INFINITY}};
  for (int32_t cd : kCompute)
    for (auto &b : bounds)
      for (size_t li = 0; li < ls.size(); li++) {
        if (li > 2 && &b != &bounds[0]) continue;  // every layout for one pair of bounds
        const Layout &l = ls[li];
        size_t nx = span(l.shape, l.st[1]), no = span(l.shape, l.st[0]);
        auto x = values(r, cd, nx);
        Dev dx = upload(x), dout(no * esize(cd));
        std::vector<unsigned char> want(no * esize(cd), 0xFF);
        int nd = (int)l.shape.size();
        CHECK_OK(cuda().unary->clamp(cd, nd, l.shape.data(), dout.p, l.st[0].data(), dx.p, l.st[1].data(), b[0], b[1]));
        CHECK_OK(cpu().unary->clamp(cd, nd, l.shape.data(), want.data(), l.st[0].data(), x.data(), l.st[1].data(), b[0],
                                    b[1]));
        char what[160];
        snprintf(what, sizeof what, "clamp %s [%g, %g] %s", tide_dtype_name(cd), b[0], b[1], l.name);
        compare(download<unsigned char>(dout, want.size()), want, cd, true, 0, 0, what);
      }
}

KTEST(binary_every_op_and_dtype) {
  Rng r(13);
  auto ls = layouts(3);
  for (int op = 0; op < TIDE_NUM_BINARY; op++)
    for (int32_t cd : kCompute) {
      if (op == TIDE_DIV && !is_float(cd)) continue;
      for (const Layout &l : ls) run_binary(op, cd, l, 0, r);
      for (int inplace = 1; inplace <= 2; inplace++) {
        run_binary(op, cd, ls[0], inplace, r);
        run_binary(op, cd, ls[2], inplace, r);  // the other operand broadcast
      }
    }
}

// pow and fmod over every pair of edge values: C99's special cases (pow(x, 0) = 1 even for NaN,
// pow(1, y) = 1, pow(-1, +-inf) = 1, signed zeros and infinities, NaN for a negative base to a
// fractional power; fmod by 0 or of inf is NaN, fmod(x, inf) = x)
KTEST(pow_fmod_edge_cases) {
  const double sp[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 1.0 / 3, 1e300, -1e-300, 1e-45};
  const size_t k = sizeof sp / sizeof sp[0];
  std::vector<int64_t> shape = {(int64_t)k, (int64_t)k}, sa = {1, 0}, sb = {0, 1}, so = {(int64_t)k, 1};
  for (int32_t cd : {TIDE_F32, TIDE_F64}) {
    std::vector<unsigned char> v(k * esize(cd));
    for (size_t i = 0; i < k; i++) tide_store_f64((char *)v.data() + i * esize(cd), cd, sp[i]);
    Dev dv = upload(v);
    for (int op : {TIDE_POW, TIDE_FMOD, TIDE_MAXIMUM, TIDE_MINIMUM, TIDE_DIV}) {
      Dev dout(k * k * esize(cd));
      std::vector<unsigned char> want(k * k * esize(cd), 0xFF);
      CHECK_OK(cuda().binary->binary(op, cd, 2, shape.data(), dout.p, so.data(), dv.p, sa.data(), dv.p, sb.data()));
      CHECK_OK(cpu().binary->binary(op, cd, 2, shape.data(), want.data(), so.data(), v.data(), sa.data(), v.data(),
                                    sb.data()));
      char what[64];
      snprintf(what, sizeof what, "edge values op %d %s", op, tide_dtype_name(cd));
      compare(download<unsigned char>(dout, want.size()), want, cd, op != TIDE_POW, rtol_of(cd), atol_of(cd), what);
    }
  }
}

// integer wrap: INT_MIN / MAX arithmetic, abs and neg of MIN, MIN % -1, u8 overflow, big powers
KTEST(integer_wraparound) {
  struct Case { int32_t cd; std::vector<double> a, b; };
  const Case cases[] = {
    {TIDE_I32, {-2147483648.0, 2147483647.0, -2147483648.0, 3, -3, 65536}, {-1, 1, 2147483647.0, 31, 40, 65536}},
    {TIDE_I64, {-9223372036854775808.0, 9223372036854775807.0, -9223372036854775808.0, 3, -3, 4294967296.0},
     {-1, 1, 9223372036854775807.0, 63, 41, 4294967296.0}},
    {TIDE_U8, {255, 0, 200, 2, 17, 255}, {1, 1, 100, 8, 5, 255}},
  };
  for (const Case &c : cases) {
    size_t n = c.a.size();
    std::vector<int64_t> shape = {(int64_t)n}, st = {1};
    std::vector<unsigned char> a(n * esize(c.cd)), b(n * esize(c.cd));
    for (size_t i = 0; i < n; i++) {
      tide_store_f64((char *)a.data() + i * esize(c.cd), c.cd, c.a[i]);
      tide_store_f64((char *)b.data() + i * esize(c.cd), c.cd, c.b[i]);
    }
    Dev da = upload(a), db = upload(b);
    for (int op : {TIDE_ADD, TIDE_SUB, TIDE_MUL, TIDE_POW, TIDE_FMOD, TIDE_MAXIMUM, TIDE_MINIMUM}) {
      Dev dout(n * esize(c.cd));
      std::vector<unsigned char> want(n * esize(c.cd));
      CHECK_OK(cuda().binary->binary(op, c.cd, 1, shape.data(), dout.p, st.data(), da.p, st.data(), db.p, st.data()));
      CHECK_OK(cpu().binary->binary(op, c.cd, 1, shape.data(), want.data(), st.data(), a.data(), st.data(), b.data(),
                                    st.data()));
      char what[64];
      snprintf(what, sizeof what, "wrap op %d %s", op, tide_dtype_name(c.cd));
      expect_bits(download<unsigned char>(dout, want.size()), want, what);
    }
    for (int op : {TIDE_NEG, TIDE_ABS, TIDE_SQUARE, TIDE_SIGN}) {
      Dev dout(n * esize(c.cd));
      std::vector<unsigned char> want(n * esize(c.cd));
      CHECK_OK(cuda().unary->unary(op, c.cd, 1, shape.data(), dout.p, st.data(), da.p, st.data()));
      CHECK_OK(cpu().unary->unary(op, c.cd, 1, shape.data(), want.data(), st.data(), a.data(), st.data()));
      char what[64];
      snprintf(what, sizeof what, "wrap unary op %d %s", op, tide_dtype_name(c.cd));
      expect_bits(download<unsigned char>(dout, want.size()), want, what);
    }
  }
}

KTEST(find_zero_or_negative_scans) {
  Rng r(14);
  // a transposed [6, 5] view of a [5, 6] buffer with one planted value, or none
  std::vector<int64_t> shape = {6, 5}, st = {1, 6};
  for (int32_t cd : {TIDE_I32, TIDE_I64, TIDE_U8})
    for (int negative = 0; negative <= 1; negative++)
      for (int plant = -1; plant < 30; plant += 7) {
        std::vector<unsigned char> x(30 * esize(cd));
        for (int i = 0; i < 30; i++) tide_store_f64((char *)x.data() + i * esize(cd), cd, (double)r.randint(1, 100));
        if (plant >= 0) tide_store_f64((char *)x.data() + plant * esize(cd), cd, negative ? -4 : 0);
        Dev dx = upload(x);
        int32_t got = -1, want = -1;
        CHECK_OK(cuda().binary->find_zero_or_negative(cd, negative, 2, shape.data(), dx.p, st.data(), &got));
        CHECK_OK(cpu().binary->find_zero_or_negative(cd, negative, 2, shape.data(), x.data(), st.data(), &want));
        CHECK(got == want, "find_zero_or_negative %s negative=%d plant=%d: %d, expected %d", tide_dtype_name(cd),
              negative, plant, got, want);
      }
  // a broadcast scalar, size 0 and size 1
  std::vector<int32_t> z = {0};
  Dev dz = upload(z);
  std::vector<int64_t> bshape = {4, 3}, bst = {0, 0}, eshape = {0}, est = {1}, one = {1};
  int32_t got = -1;
  CHECK_OK(cuda().binary->find_zero_or_negative(TIDE_I32, 0, 2, bshape.data(), dz.p, bst.data(), &got));
  CHECK(got == 1, "broadcast zero found: %d", got);
  CHECK_OK(cuda().binary->find_zero_or_negative(TIDE_I32, 1, 2, bshape.data(), dz.p, bst.data(), &got));
  CHECK(got == 0, "zero is not negative: %d", got);
  CHECK_OK(cuda().binary->find_zero_or_negative(TIDE_I32, 0, 1, eshape.data(), dz.p, est.data(), &got));
  CHECK(got == 0, "empty: %d", got);
  CHECK_OK(cuda().binary->find_zero_or_negative(TIDE_I32, 0, 1, one.data(), dz.p, est.data(), &got));
  CHECK(got == 1, "one zero: %d", got);
}

KTEST(where_every_element_size) {
  Rng r(15);
  auto ls = layouts(4);
  for (int32_t dt : {TIDE_U8, TIDE_BF16, TIDE_F32, TIDE_F64, TIDE_I64})
    for (const Layout &l : ls) {
      size_t no = span(l.shape, l.st[0]), nc = span(l.shape, l.st[1]), na = span(l.shape, l.st[2]),
             nb = span(l.shape, l.st[3]);
      std::vector<unsigned char> c(nc);
      for (auto &v : c) v = (unsigned char)(r.uniform() < 0.5 ? 0 : r.randint(1, 256));  // any nonzero byte is true
      std::vector<unsigned char> a(na * esize(dt)), b(nb * esize(dt));
      for (auto &v : a) v = (unsigned char)r.randint(0, 256);
      for (auto &v : b) v = (unsigned char)r.randint(0, 256);
      Dev dc = upload(c), da = upload(a), db = upload(b), dout(no * esize(dt));
      std::vector<unsigned char> want(no * esize(dt), 0xFF);
      int nd = (int)l.shape.size();
      CHECK_OK(cuda().binary->where(dt, nd, l.shape.data(), dout.p, l.st[0].data(), dc.p, l.st[1].data(), da.p,
                                    l.st[2].data(), db.p, l.st[3].data()));
      CHECK_OK(cpu().binary->where(dt, nd, l.shape.data(), want.data(), l.st[0].data(), c.data(), l.st[1].data(),
                                   a.data(), l.st[2].data(), b.data(), l.st[3].data()));
      char what[96];
      snprintf(what, sizeof what, "where %s %s", tide_dtype_name(dt), l.name);
      expect_bits(download<unsigned char>(dout, want.size()), want, what);
    }
}

KTEST(gelu_backward_layouts) {
  Rng r(16);
  auto ls = layouts(3);
  for (int32_t cd : {TIDE_F32, TIDE_F64})
    for (const Layout &l : ls) {
      size_t no = span(l.shape, l.st[0]), ny = span(l.shape, l.st[1]), nx = span(l.shape, l.st[2]);
      auto dy = values(r, cd, ny), x = values(r, cd, nx);
      Dev ddy = upload(dy), dx = upload(x), dout(no * esize(cd));
      std::vector<unsigned char> want(no * esize(cd), 0xFF);
      int nd = (int)l.shape.size();
      CHECK_OK(cuda().gelu->gelu_backward(cd, nd, l.shape.data(), dout.p, l.st[0].data(), ddy.p, l.st[1].data(), dx.p,
                                          l.st[2].data()));
      CHECK_OK(cpu().gelu->gelu_backward(cd, nd, l.shape.data(), want.data(), l.st[0].data(), dy.data(),
                                         l.st[1].data(), x.data(), l.st[2].data()));
      char what[96];
      snprintf(what, sizeof what, "gelu_backward %s %s", tide_dtype_name(cd), l.name);
      compare(download<unsigned char>(dout, want.size()), want, cd, false, rtol_of(cd), atol_of(cd), what);
    }
  // the gradient over a dense range, where the tails of 1 +- tanh matter
  std::vector<float> x(2001), dy(2001, 1.0f);
  for (int i = 0; i < 2001; i++) x[i] = -20.0f + 0.02f * (float)i;
  std::vector<int64_t> shape = {2001}, st = {1};
  Dev dx = upload(x), ddy = upload(dy), dout(2001 * 4);
  std::vector<float> want(2001);
  CHECK_OK(cuda().gelu->gelu_backward(TIDE_F32, 1, shape.data(), dout.p, st.data(), ddy.p, st.data(), dx.p, st.data()));
  CHECK_OK(cpu().gelu->gelu_backward(TIDE_F32, 1, shape.data(), want.data(), st.data(), dy.data(), st.data(), x.data(),
                                     st.data()));
  expect_close(download<float>(dout, 2001), want, 1e-5, 1e-30, "gelu_backward range");
}

// Elementwise kernels have no cross-thread arithmetic: the same bits under any schedule.
KTEST(elementwise_deterministic_across_seeds) {
  Rng r(17);
  auto x = r.normal_vec<float>(999), y = r.normal_vec<float>(999);
  std::vector<int64_t> shape = {27, 37}, st = {37, 1};
  Dev dx = upload(x), dy = upload(y);
  std::vector<float> runs[2][3];
  for (int s = 0; s < 2; s++) {
    kt::schedule_seed((uint64_t)s + 1);
    Dev o1(999 * 4), o2(999 * 4), o3(999 * 4);
    CHECK_OK(cuda().unary->unary(TIDE_GELU, TIDE_F32, 2, shape.data(), o1.p, st.data(), dx.p, st.data()));
    CHECK_OK(cuda().binary->binary(TIDE_POW, TIDE_F32, 2, shape.data(), o2.p, st.data(), dx.p, st.data(), dy.p,
                                   st.data()));
    CHECK_OK(cuda().gelu->gelu_backward(TIDE_F32, 2, shape.data(), o3.p, st.data(), dy.p, st.data(), dx.p, st.data()));
    runs[s][0] = download<float>(o1, 999);
    runs[s][1] = download<float>(o2, 999);
    runs[s][2] = download<float>(o3, 999);
  }
  kt::schedule_seed(1);
  for (int k = 0; k < 3; k++) expect_bits(runs[1][k], runs[0][k], "same bits under seeds 1 and 2");
}
