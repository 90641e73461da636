// The nn families on CUDA against the CPU kernels: softmax / log_softmax
// (kernels/nn_softmax.h) and layer norm (kernels/nn_norm.h) (cross-entropy:
// test_loss.cc), forward and backward, f32 and f64: rows and columns
// (a non-last dim), odd sizes, size 0 and 1, special values, a GPT-2-wide
// classifier row, poisoned outputs, bad input, and the same bits under two
// emulator schedules.
#include "harness.h"
#include <functional>

namespace {

// tolerances: f32 kernels whose sums run in double agree to about 1e-6; f64 to rounding
double rtol_of(int32_t dt) { return dt == TIDE_F32 ? 2e-6 : 1e-12; }

template <class T> int32_t dtype_of();
template <> int32_t dtype_of<float>() { return TIDE_F32; }
template <> int32_t dtype_of<double>() { return TIDE_F64; }

// Runs fn under emulator schedules 1 and 2 and requires the same bytes of out (n bytes).
void same_bits_two_seeds(const std::function<void()> &fn, const Dev &out, size_t n, const char *what) {
  kt::schedule_seed(1);
  fn();
  auto a = download<unsigned char>(out, n);
  kt::schedule_seed(2);
  fn();
  auto b = download<unsigned char>(out, n);
  kt::schedule_seed(1);
  expect_bits(b, a, what);
}

// softmax ---------------------------------------------------------------------------------------------------------

template <class T> void softmax_case(int64_t outer, int64_t L, int64_t inner, int lg, uint64_t seed) {
  const int32_t dt = dtype_of<T>();
  const size_t n = (size_t)(outer * L * inner);
  Rng r(seed);
  auto x = r.normal_vec<T>(n, 3), dy = r.normal_vec<T>(n);
  Dev dx_ = upload(x), ddy = upload(dy), dout(n * sizeof(T)), dgrad(n * sizeof(T));
  std::vector<T> want(n), gwant(n);
  char what[96];
  snprintf(what, sizeof what, "%s f%d [%lld, %lld, %lld]", lg ? "log_softmax" : "softmax", (int)sizeof(T) * 8,
           (long long)outer, (long long)L, (long long)inner);
  CHECK_OK(cuda().softmax->softmax_forward(dout.p, dx_.p, outer, L, inner, lg, dt));
  CHECK_OK(cpu().softmax->softmax_forward(want.data(), x.data(), outer, L, inner, lg, dt));
  auto got = download<T>(dout, n);
  // atol: log_softmax near 0 carries the f32 exps' error in lse (the GPU's expf is within 2 ulp, the CPU's 1.2)
  expect_close(got, want, rtol_of(dt), dt == TIDE_F32 ? 5e-7 : 1e-14, what);
  // the backward from the CPU's forward output, so both see the same y
  Dev dy_out = upload(want);
  CHECK_OK(cuda().softmax->softmax_backward(dgrad.p, ddy.p, dy_out.p, outer, L, inner, lg, dt));
  CHECK_OK(cpu().softmax->softmax_backward(gwant.data(), dy.data(), want.data(), outer, L, inner, lg, dt));
  expect_close(download<T>(dgrad, n), gwant, rtol_of(dt), dt == TIDE_F32 ? 1e-6 : 1e-13, what);
}

}  // namespace

KTEST(softmax_rows_and_columns) {
  uint64_t seed = 10;
  for (int lg = 0; lg <= 1; lg++) {
    // the last dim (one block per row): lengths below, at and above a warp and a block
    for (int64_t L : {1, 5, 32, 33, 300, 1000}) {
      softmax_case<float>(7, L, 1, lg, seed++);
      softmax_case<double>(3, L, 1, lg, seed++);
    }
    // a non-last dim (one thread per column)
    softmax_case<float>(3, 17, 5, lg, seed++);
    softmax_case<double>(2, 9, 33, lg, seed++);
    softmax_case<float>(1, 1, 7, lg, seed++);
    softmax_case<float>(4, 300, 2, lg, seed++);
  }
}

KTEST(softmax_wide_row) {
  // a GPT-2 classifier row: 50257 entries per block
  softmax_case<float>(2, 50257, 1, 0, 3);
  softmax_case<float>(2, 50257, 1, 1, 4);
}

KTEST(softmax_special_values) {
  // rows: a NaN, +inf, only -inf, some -inf, huge values (NaN, NaN, NaN, finite, finite)
  const int64_t L = 40;
  std::vector<float> x(5 * L);
  Rng r(5);
  for (auto &v : x) v = (float)r.normal();
  x[0 * L + 3] = NAN;
  x[1 * L + 39] = INFINITY;
  for (int64_t i = 0; i < L; i++) x[2 * L + i] = -INFINITY;
  x[3 * L + 0] = -INFINITY, x[3 * L + 7] = -INFINITY;
  for (int64_t i = 0; i < L; i++) x[4 * L + i] = 1e30f * (float)(i % 3);
  for (int lg = 0; lg <= 1; lg++) {
    Dev dx = upload(x), dy(x.size() * 4);
    std::vector<float> want(x.size());
    CHECK_OK(cuda().softmax->softmax_forward(dy.p, dx.p, 5, L, 1, lg, TIDE_F32));
    CHECK_OK(cpu().softmax->softmax_forward(want.data(), x.data(), 5, L, 1, lg, TIDE_F32));
    expect_close(download<float>(dy, x.size()), want, 2e-6, 5e-7, lg ? "log_softmax special" : "softmax special");
    // the same values down a non-last dim: [L, 5] transposed
    std::vector<float> xt(x.size()), wt(x.size());
    for (int64_t i = 0; i < 5; i++)
      for (int64_t l = 0; l < L; l++) xt[l * 5 + i] = x[i * L + l];
    Dev dxt = upload(xt), dyt(x.size() * 4);
    CHECK_OK(cuda().softmax->softmax_forward(dyt.p, dxt.p, 1, L, 5, lg, TIDE_F32));
    CHECK_OK(cpu().softmax->softmax_forward(wt.data(), xt.data(), 1, L, 5, lg, TIDE_F32));
    expect_close(download<float>(dyt, x.size()), wt, 2e-6, 5e-7, "softmax special, columns");
  }
}

KTEST(softmax_empty_and_errors) {
  Dev d(64);
  CHECK_OK(cuda().softmax->softmax_forward(d.p, d.p, 0, 5, 1, 0, TIDE_F32));
  CHECK_OK(cuda().softmax->softmax_backward(d.p, d.p, d.p, 3, 0, 4, 1, TIDE_F32));
  expect_bits(download<unsigned char>(d, 64), std::vector<unsigned char>(64, 0xFF), "empty softmax writes nothing");
  CHECK_FAILS(cuda().softmax->softmax_forward(d.p, d.p, 1, 4, 1, 0, TIDE_BF16), "no kernel for dtype");
  CHECK_FAILS(cuda().softmax->softmax_backward(d.p, d.p, d.p, 1, 4, 1, 1, TIDE_F16), "log_softmax_backward");
}

KTEST(softmax_deterministic) {
  Rng r(6);
  const int64_t rows = 3, L = 700;
  auto x = r.normal_vec<float>(rows * L, 4), dy = r.normal_vec<float>(rows * L);
  Dev dx = upload(x), ddy = upload(dy), y(rows * L * 4), g(rows * L * 4);
  for (int lg = 0; lg <= 1; lg++) {
    same_bits_two_seeds([&] { CHECK_OK(cuda().softmax->softmax_forward(y.p, dx.p, rows, L, 1, lg, TIDE_F32)); }, y,
                        rows * L * 4, "softmax forward bits");
    same_bits_two_seeds(
        [&] { CHECK_OK(cuda().softmax->softmax_backward(g.p, ddy.p, y.p, rows, L, 1, lg, TIDE_F32)); }, g,
        rows * L * 4, "softmax backward bits");
  }
}

// layer norm ------------------------------------------------------------------------------------------------------

namespace {

template <class T> void layernorm_case(int64_t rows, int64_t C, bool has_w, bool has_b, double offset, uint64_t seed) {
  const int32_t dt = dtype_of<T>();
  const size_t n = (size_t)(rows * C);
  Rng r(seed);
  auto x = r.normal_vec<T>(n, 2);
  for (auto &v : x) v = (T)(v + offset);
  auto w = r.normal_vec<T>(C), b = r.normal_vec<T>(C), dy = r.normal_vec<T>(n);
  Dev dx_ = upload(x), dw = upload(w), db = upload(b), ddy = upload(dy);
  Dev y(n * sizeof(T)), mean(rows * 8), rstd(rows * 8);
  std::vector<T> ywant(n);
  std::vector<double> mwant(rows), rwant(rows);
  const void *wp = has_w ? dw.p : nullptr, *bp = has_b ? db.p : nullptr;
  char what[128];
  snprintf(what, sizeof what, "layer_norm f%d [%lld, %lld] w%d b%d +%g", (int)sizeof(T) * 8, (long long)rows,
           (long long)C, has_w, has_b, offset);
  CHECK_OK(cuda().norm->layernorm_forward(y.p, mean.as<double>(), rstd.as<double>(), dx_.p, wp, bp, rows, C, 1e-5, dt));
  CHECK_OK(cpu().norm->layernorm_forward(ywant.data(), mwant.data(), rwant.data(), x.data(), has_w ? w.data() : nullptr,
                                         has_b ? b.data() : nullptr, rows, C, 1e-5, dt));
  expect_close(download<T>(y, n), ywant, rtol_of(dt) * 2, dt == TIDE_F32 ? 2e-6 : 1e-12, what);
  expect_close(download<double>(mean, rows), mwant, 1e-13, 0, what);
  // the CPU adds f32 squares in f32 runs of 128 before double, this kernel each in double: f32 differs by ~1e-7
  expect_close(download<double>(rstd, rows), rwant, dt == TIDE_F32 ? 1e-6 : 1e-12, 0, what);
  // backward, from the CPU's statistics; dweight and dbias each present or not
  for (int parts = 0; parts < 4; parts++) {
    bool gw = parts & 1, gb = parts & 2;
    Dev dxg(n * sizeof(T)), dwg(C * 8), dbg(C * 8), dm = upload(mwant), dr = upload(rwant);
    std::vector<T> dxw(n);
    std::vector<double> dww(C), dbw(C);
    CHECK_OK(cuda().norm->layernorm_backward(dxg.p, gw ? dwg.as<double>() : nullptr, gb ? dbg.as<double>() : nullptr,
                                             ddy.p, dx_.p, wp, dm.as<double>(), dr.as<double>(), rows, C, dt));
    CHECK_OK(cpu().norm->layernorm_backward(dxw.data(), gw ? dww.data() : nullptr, gb ? dbw.data() : nullptr, dy.data(),
                                            x.data(), has_w ? w.data() : nullptr, mwant.data(), rwant.data(), rows, C,
                                            dt));
    expect_close(download<T>(dxg, n), dxw, dt == TIDE_F32 ? 1e-5 : 1e-11, dt == TIDE_F32 ? 1e-5 : 1e-12, what);
    if (gw) expect_close(download<double>(dwg, C), dww, 1e-12, 1e-12, "dweight");
    else expect_bits(download<unsigned char>(dwg, C * 8), std::vector<unsigned char>(C * 8, 0xFF), "no dweight");
    if (gb) expect_close(download<double>(dbg, C), dbw, 1e-12, 1e-12, "dbias");
    else expect_bits(download<unsigned char>(dbg, C * 8), std::vector<unsigned char>(C * 8, 0xFF), "no dbias");
  }
}

}  // namespace

KTEST(layernorm_forward_backward) {
  uint64_t seed = 20;
  for (int64_t C : {1, 5, 33, 768}) {
    layernorm_case<float>(7, C, true, true, 0, seed++);
    layernorm_case<double>(5, C, true, true, 0, seed++);
  }
  layernorm_case<float>(3, 100, true, false, 0, seed++);
  layernorm_case<float>(3, 100, false, true, 0, seed++);
  layernorm_case<float>(3, 100, false, false, 0, seed++);
  layernorm_case<double>(3, 100, false, false, 0, seed++);
  layernorm_case<float>(1, 1000, true, true, 0, seed++);
  // a mean far from 0 against the spread: the two-part mean keeps the digits
  layernorm_case<float>(4, 300, true, true, 1000, seed++);
  // more rows than one partial block (32 rows): several row blocks added in order
  layernorm_case<float>(100, 40, true, true, 0, seed++);
  layernorm_case<double>(70, 24, false, true, 0, seed++);
}

KTEST(layernorm_empty) {
  // C == 0: mean and rstd NaN, no output element
  Dev y(16), mean(3 * 8), rstd(3 * 8);
  CHECK_OK(cuda().norm->layernorm_forward(y.p, mean.as<double>(), rstd.as<double>(), y.p, nullptr, nullptr, 3, 0, 1e-5,
                                          TIDE_F32));
  for (double v : download<double>(mean, 3)) CHECK(isnan(v), "mean of an empty row: %g", v);
  for (double v : download<double>(rstd, 3)) CHECK(isnan(v), "rstd of an empty row: %g", v);
  expect_bits(download<unsigned char>(y, 16), std::vector<unsigned char>(16, 0xFF), "empty layer norm output");
  // no rows: dweight and dbias are zeros
  Dev dw(5 * 8), db(5 * 8);
  CHECK_OK(cuda().norm->layernorm_backward(y.p, dw.as<double>(), db.as<double>(), y.p, y.p, y.p, mean.as<double>(),
                                           rstd.as<double>(), 0, 5, TIDE_F32));
  expect_close(download<double>(dw, 5), std::vector<double>(5, 0.0), 0, 0, "dweight of no rows");
  expect_close(download<double>(db, 5), std::vector<double>(5, 0.0), 0, 0, "dbias of no rows");
  CHECK_FAILS(cuda().norm->layernorm_forward(y.p, mean.as<double>(), rstd.as<double>(), y.p, nullptr, nullptr, 1, 2,
                                             1e-5, TIDE_BF16),
              "no kernel for dtype");
  CHECK_FAILS(cuda().norm->layernorm_backward(y.p, nullptr, nullptr, y.p, y.p, nullptr, mean.as<double>(),
                                              rstd.as<double>(), 1, 2, TIDE_I32),
              "layer_norm_backward");
}

KTEST(layernorm_deterministic) {
  Rng r(7);
  const int64_t rows = 80, C = 300;  // three partial blocks of dweight / dbias
  auto x = r.normal_vec<float>(rows * C), w = r.normal_vec<float>(C), b = r.normal_vec<float>(C);
  auto dy = r.normal_vec<float>(rows * C);
  Dev dx = upload(x), dw = upload(w), db = upload(b), ddy = upload(dy);
  Dev y(rows * C * 4), mean(rows * 8), rstd(rows * 8), g(rows * C * 4), gw(C * 8), gb(C * 8);
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->layernorm_forward(y.p, mean.as<double>(), rstd.as<double>(), dx.p, dw.p, db.p, rows, C, 1e-5,
                                            TIDE_F32));
  }, y, rows * C * 4, "layer norm forward bits");
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->layernorm_backward(g.p, gw.as<double>(), gb.as<double>(), ddy.p, dx.p, dw.p, mean.as<double>(),
                                             rstd.as<double>(), rows, C, TIDE_F32));
  }, gw, C * 8, "dweight bits");
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->layernorm_backward(g.p, gw.as<double>(), gb.as<double>(), ddy.p, dx.p, dw.p, mean.as<double>(),
                                             rstd.as<double>(), rows, C, TIDE_F32));
  }, gb, C * 8, "dbias bits");
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().norm->layernorm_forward(y.p, mean.as<double>(), rstd.as<double>(), dx.p, dw.p, db.p, rows, C, 1e-5,
                                            TIDE_F32));
  }, rstd, rows * 8, "rstd bits");
}
