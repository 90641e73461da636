// The residual layer norm kernels on CUDA (kernels/nn_norm.h,
// residual_layernorm_forward / _backward) against the CPU kernels, in the
// storage dtypes f32, bf16 and f64: s = x + r bit for bit (the add rounds the
// same on both), y, mean, rstd, dx (with and without ds), dweight and dbias
// within each dtype's rounding; without r (the plain layer norm of the f32
// family on a device); odd C (the scalar path), misaligned operands, 0 and 1
// rows, C = 1, GPT-2's C = 768 and 1600 (fewer warps per block), a C whose
// accumulators leave shared memory; poisoned outputs (absent gradients stay
// unwritten); bad dtypes; the same bits under two emulator schedules.
#include "harness.h"
#include <algorithm>
#include <cmath>
#include <functional>
extern "C" {
#include "dtype.h"
}

namespace {

// Storage of a dtype and its conversions, for the host side of the test.
template <int DT> struct st;
template <> struct st<TIDE_F32> {
  typedef float T;
  static T from(double v) { return (T)v; }
  static double to(T v) { return v; }
  static size_t stat() { return 4; }
};
template <> struct st<TIDE_F64> {
  typedef double T;
  static T from(double v) { return v; }
  static double to(T v) { return v; }
  static size_t stat() { return 8; }
};
template <> struct st<TIDE_BF16> {
  typedef uint16_t T;
  static T from(double v) { return tide_f32_to_bf16((float)v); }
  static double to(T v) { return tide_bf16_to_f32(v); }
  static size_t stat() { return 4; }
};

template <int DT> std::vector<typename st<DT>::T> rand_vec(Rng &r, size_t n, double scale = 1, double offset = 0) {
  std::vector<typename st<DT>::T> v(n);
  for (auto &x : v) x = st<DT>::from(r.normal() * scale + offset);
  return v;
}

template <int DT> std::vector<double> as_f64(const std::vector<typename st<DT>::T> &v) {
  std::vector<double> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = st<DT>::to(v[i]);
  return o;
}

std::vector<double> stat_f64(const Dev &d, size_t n, size_t sz) {
  std::vector<double> o(n);
  if (sz == 4) {
    auto f = download<float>(d, n);
    std::copy(f.begin(), f.end(), o.begin());
  } else {
    o = download<double>(d, n);
  }
  return o;
}

double max_abs(const std::vector<double> &v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Tolerance of a result against the CPU's, relative to its largest element: f32 and f64 to a few ulp of the
// statistics' different summation order; bf16 to one rounding of bf16 (the CPU rounds the layer norm's dx
// to bf16 before adding ds, the kernel rounds once).
template <int DT> double tol() { return DT == TIDE_F64 ? 1e-12 : DT == TIDE_F32 ? 4e-6 : 1.2e-2; }

template <int DT> void close_to(const std::vector<double> &got, const std::vector<double> &want, const char *what) {
  double a = tol<DT>() * std::max(1.0, max_abs(want));
  expect_close(got, want, tol<DT>(), a, what);
}

// A device buffer of n elements of T at an element offset `skew` (0: 16-byte aligned; 1: misaligned, which
// takes the kernels' scalar path), poisoned.
struct Buf {
  Dev d;
  size_t off;
  Buf(size_t n, size_t elem, size_t skew) : d((n + skew) * elem + 16), off(skew * elem) {}
  void *p() const { return (char *)d.p + off; }
};

template <class T> Buf up(const std::vector<T> &h, size_t skew) {
  Buf b(h.size(), sizeof(T), skew);
  if (!h.empty()) cudaMemcpy(b.p(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return b;
}
template <class T> std::vector<T> down(const Buf &b, size_t n) {
  std::vector<T> h(n);
  if (n) cudaMemcpy(h.data(), b.p(), n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

template <int DT>
void rln_case(int64_t rows, int64_t C, bool has_r, bool has_w, bool has_b, size_t skew, uint64_t seed,
              double offset = 0) {
  typedef typename st<DT>::T T;
  const size_t n = (size_t)(rows * C), ss = st<DT>::stat();
  Rng rg(seed);
  auto x = rand_vec<DT>(rg, n, 2, offset), r = rand_vec<DT>(rg, n), w = rand_vec<DT>(rg, C, 0.5, 1),
       b = rand_vec<DT>(rg, C), dy = rand_vec<DT>(rg, n), ds = rand_vec<DT>(rg, n);
  char what[160];
  snprintf(what, sizeof what, "residual layer norm dt%d [%lld, %lld] r%d w%d b%d skew%zu", DT, (long long)rows,
           (long long)C, has_r, has_w, has_b, skew);
  Buf dx_ = up(x, skew), dr = up(r, skew), dw = up(w, skew), db = up(b, skew), ddy = up(dy, skew), dds = up(ds, skew);
  Buf s(n, sizeof(T), skew), y(n, sizeof(T), skew);
  Dev mean(rows * ss + 1), rstd(rows * ss + 1);
  const void *rp = has_r ? dr.p() : nullptr, *wp = has_w ? dw.p() : nullptr, *bp = has_b ? db.p() : nullptr;
  CHECK_OK(cuda().norm->residual_layernorm_forward(has_r ? s.p() : nullptr, y.p(), mean.p, rstd.p, dx_.p(), rp, wp, bp,
                                                   rows, C, 1e-5, DT));
  std::vector<T> swant(n), ywant(n);
  std::vector<unsigned char> mw(rows * ss + 1), rw(rows * ss + 1);
  CHECK_OK(cpu().norm->residual_layernorm_forward(has_r ? swant.data() : nullptr, ywant.data(), mw.data(), rw.data(),
                                                  x.data(), has_r ? r.data() : nullptr, has_w ? w.data() : nullptr,
                                                  has_b ? b.data() : nullptr, rows, C, 1e-5, DT));
  if (has_r) expect_bits(down<T>(s, n), swant, "s = x + r");
  else expect_bits(down<unsigned char>(s, n * sizeof(T)), std::vector<unsigned char>(n * sizeof(T), 0xFF), "no s");
  close_to<DT>(as_f64<DT>(down<T>(y, n)), as_f64<DT>(ywant), what);
  Dev mwd = upload(mw), rwd = upload(rw);
  close_to<DT>(stat_f64(mean, rows, ss), stat_f64(mwd, rows, ss), "mean");
  expect_close(stat_f64(rstd, rows, ss), stat_f64(rwd, rows, ss), DT == TIDE_F64 ? 1e-12 : 2e-6, 0, "rstd");
  // backward from the CPU's s and statistics; ds, dweight and dbias each present or not
  const std::vector<T> &src = has_r ? swant : x;
  Buf dsrc = up(src, skew);
  for (int parts = 0; parts < 8; parts++) {
    bool gw = (parts & 1) && has_w, gb = parts & 2, gs = parts & 4;
    Buf dxg(n, sizeof(T), skew), dwg(C, sizeof(T), skew), dbg(C, sizeof(T), skew);
    CHECK_OK(cuda().norm->residual_layernorm_backward(dxg.p(), gw ? dwg.p() : nullptr, gb ? dbg.p() : nullptr,
                                                      gs ? dds.p() : nullptr, ddy.p(), dsrc.p(), wp, mwd.p, rwd.p,
                                                      rows, C, DT));
    std::vector<T> dxw(n), dww(C), dbw(C);
    CHECK_OK(cpu().norm->residual_layernorm_backward(dxw.data(), gw ? dww.data() : nullptr, gb ? dbw.data() : nullptr,
                                                     gs ? ds.data() : nullptr, dy.data(), src.data(),
                                                     has_w ? w.data() : nullptr, mw.data(), rw.data(), rows, C, DT));
    close_to<DT>(as_f64<DT>(down<T>(dxg, n)), as_f64<DT>(dxw), gs ? "dx = ds + ..." : "dx");
    if (gw) close_to<DT>(as_f64<DT>(down<T>(dwg, C)), as_f64<DT>(dww), "dweight");
    else expect_bits(down<unsigned char>(dwg, C * sizeof(T)), std::vector<unsigned char>(C * sizeof(T), 0xFF), "no dweight");
    if (gb) close_to<DT>(as_f64<DT>(down<T>(dbg, C)), as_f64<DT>(dbw), "dbias");
    else expect_bits(down<unsigned char>(dbg, C * sizeof(T)), std::vector<unsigned char>(C * sizeof(T), 0xFF), "no dbias");
  }
}

template <int DT> void rln_cases(uint64_t seed) {
  for (int64_t C : {1, 37, 64, 768}) {
    rln_case<DT>(5, C, true, true, true, 0, seed++);
  }
  rln_case<DT>(4, 40, false, true, true, 0, seed++);   // no residual: the plain layer norm
  rln_case<DT>(3, 48, true, false, true, 0, seed++);   // no weight
  rln_case<DT>(3, 48, true, true, false, 0, seed++);   // no bias
  rln_case<DT>(3, 48, true, false, false, 0, seed++);  // neither
  rln_case<DT>(3, 64, true, true, true, 1, seed++);    // misaligned by one element: the scalar path
  rln_case<DT>(1, 96, true, true, true, 0, seed++);    // one row
  rln_case<DT>(0, 32, true, true, true, 0, seed++);    // no rows: dweight and dbias are zeros
  rln_case<DT>(70, 24, true, true, true, 0, seed++);   // several row blocks added in order
}

}  // namespace

KTEST(residual_layernorm_f32) { rln_cases<TIDE_F32>(100); }
KTEST(residual_layernorm_bf16) { rln_cases<TIDE_BF16>(200); }
KTEST(residual_layernorm_f64) {
  rln_case<TIDE_F64>(5, 37, true, true, true, 0, 300);
  rln_case<TIDE_F64>(6, 64, true, true, true, 0, 301);
  rln_case<TIDE_F64>(40, 10, false, true, true, 0, 302);
}

KTEST(residual_layernorm_wide_rows) {
  // GPT-2 XL's C = 1600: three warps' accumulators fit in shared memory; a mean far from 0 against the spread
  rln_case<TIDE_F32>(7, 1600, true, true, true, 0, 400, 1000);
  rln_case<TIDE_BF16>(7, 1600, true, true, true, 0, 401);
  // C = 6200 f32: one warp's accumulators do not fit in 48 KiB, so they live in global scratch
  rln_case<TIDE_F32>(3, 6200, true, true, true, 0, 402);
}

KTEST(residual_layernorm_empty_rows_and_bad_dtype) {
  // C == 0: mean and rstd NaN, no element written
  Dev y(16), mean(3 * 4), rstd(3 * 4);
  CHECK_OK(cuda().norm->residual_layernorm_forward(nullptr, y.p, mean.p, rstd.p, y.p, nullptr, nullptr, nullptr, 3, 0,
                                                   1e-5, TIDE_BF16));
  for (float v : download<float>(mean, 3)) CHECK(std::isnan(v), "mean of an empty row: %g", v);
  for (float v : download<float>(rstd, 3)) CHECK(std::isnan(v), "rstd of an empty row: %g", v);
  CHECK_FAILS(cuda().norm->residual_layernorm_forward(y.p, y.p, mean.p, rstd.p, y.p, y.p, nullptr, nullptr, 1, 2, 1e-5,
                                                      TIDE_I32),
              "no kernel for dtype i32");
  CHECK_FAILS(cuda().norm->residual_layernorm_backward(y.p, nullptr, nullptr, nullptr, y.p, y.p, nullptr, mean.p,
                                                       rstd.p, 1, 2, TIDE_I64),
              "no kernel for dtype i64");
  CHECK_FAILS(cpu().norm->residual_layernorm_forward(y.p, y.p, mean.p, rstd.p, y.p, y.p, nullptr, nullptr, 1, 2, 1e-5,
                                                     TIDE_I32),
              "no kernel for dtype i32");
}

namespace {

// Runs fn under emulator schedules 1 and 2 and requires the same bytes of each output.
void same_bits_two_seeds(const std::function<void()> &fn, const std::vector<const Dev *> &outs, const char *what) {
  std::vector<std::vector<unsigned char>> a, b;
  kt::schedule_seed(1);
  fn();
  for (auto *o : outs) a.push_back(download<unsigned char>(*o, o->bytes));
  kt::schedule_seed(2);
  fn();
  for (auto *o : outs) b.push_back(download<unsigned char>(*o, o->bytes));
  kt::schedule_seed(1);
  for (size_t i = 0; i < outs.size(); i++) expect_bits(b[i], a[i], what);
}

template <int DT> void two_seeds(uint64_t seed) {
  typedef typename st<DT>::T T;
  const int64_t rows = 90, C = 72;
  const size_t n = rows * C;
  Rng rg(seed);
  Dev x = upload(rand_vec<DT>(rg, n)), r = upload(rand_vec<DT>(rg, n)), w = upload(rand_vec<DT>(rg, C)),
      b = upload(rand_vec<DT>(rg, C)), dy = upload(rand_vec<DT>(rg, n)), ds = upload(rand_vec<DT>(rg, n));
  Dev s(n * sizeof(T)), y(n * sizeof(T)), mean(rows * 4), rstd(rows * 4), dx(n * sizeof(T)), dw(C * sizeof(T)),
      db(C * sizeof(T));
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->residual_layernorm_forward(s.p, y.p, mean.p, rstd.p, x.p, r.p, w.p, b.p, rows, C, 1e-5, DT));
  }, {&s, &y, &mean, &rstd}, "residual layer norm forward bits");
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->residual_layernorm_backward(dx.p, dw.p, db.p, ds.p, dy.p, s.p, w.p, mean.p, rstd.p, rows, C,
                                                      DT));
  }, {&dx, &dw, &db}, "residual layer norm backward bits");
}

}  // namespace

KTEST(residual_layernorm_same_bits_two_seeds) {
  two_seeds<TIDE_F32>(500);
  two_seeds<TIDE_BF16>(501);
}
