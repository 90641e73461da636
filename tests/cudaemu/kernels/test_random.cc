// The random and dropout families on CUDA against the CPU: the same Philox
// streams, so every result must be the same bits (runtime/philox.h's layout),
// for every dtype, strided and aliasing views, odd sizes, any offset and seed.
#include "harness.h"

#include <functional>

static const int32_t kFloat[] = {TIDE_F32, TIDE_F64, TIDE_BF16, TIDE_F16};
static const int32_t kAll[] = {TIDE_F32, TIDE_F64, TIDE_BF16, TIDE_F16, TIDE_I32, TIDE_I64, TIDE_U8, TIDE_BOOL, TIDE_U16};

// A view into a buffer of `elems` elements: the elements the view skips stay poisoned on both sides.
struct View {
  std::vector<int64_t> shape, stride;
  int64_t elems;
  const char *name;
};

static std::vector<View> views() {
  return {
      {{}, {}, 1, "scalar"},
      {{0}, {1}, 4, "empty"},
      {{1}, {1}, 1, "one"},
      {{7}, {1}, 7, "odd"},
      {{1001}, {1}, 1001, "1001"},
      {{5, 7}, {9, 1}, 45, "row gaps"},
      {{6, 5}, {1, 6}, 30, "transposed"},
      {{3, 4, 5}, {1, 15, 3}, 60, "permuted 3-d"},
      {{4, 6}, {-6, 1}, 24, "negative stride"},   // base pointer at the last row
      {{9}, {-3}, 25, "negative step"},
  };
}

// Pointer to element 0 of the view (negative strides start inside the buffer).
static int64_t base_elem(const View &v) {
  int64_t off = 0;
  for (size_t d = 0; d < v.shape.size(); d++)
    if (v.stride[d] < 0 && v.shape[d] > 0) off += -v.stride[d] * (v.shape[d] - 1);
  return off;
}

using FillFn = std::function<int(const tide_backend &, void *, const View &)>;

// Runs fn on the CUDA and the CPU backends over the same poisoned buffer and compares every byte.
static void fill_parity(const FillFn &fn, int32_t dt, const View &v, const char *what) {
  int es = tide_dtype_size(dt);
  size_t bytes = (size_t)v.elems * es;
  Dev d(bytes ? bytes : 1);
  std::vector<unsigned char> want(bytes ? bytes : 1, 0xFF);
  int64_t b = base_elem(v) * es;
  CHECK_OK(fn(cuda(), (char *)d.p + b, v));
  CHECK_OK(fn(cpu(), want.data() + b, v));
  char msg[160];
  snprintf(msg, sizeof msg, "%s, %s, %s", what, tide_dtype_name(dt), v.name);
  expect_bits(download<unsigned char>(d, want.size()), want, msg);
}

static int32_t nd(const View &v) { return (int32_t)v.shape.size(); }

KTEST(random_uniform_every_float_dtype_and_view) {
  struct { double lo, hi; } ranges[] = {{0, 1}, {-3, 5}, {1, 1.01}, {-1e-3, 1e-3}, {100, 100.5}};
  uint64_t seeds[] = {0, 1234, 0xFFFFFFFF00000001ull};
  uint64_t offsets[] = {0, 7, 0xFFFFFFFFFFFFFFF0ull};  // the last wraps the 64-bit counter mid-call
  for (int32_t dt : kFloat)
    for (const View &v : views())
      for (int k = 0; k < 3; k++) {
        auto r = ranges[(k + dt) % 5];
        uint64_t seed = seeds[k], off = offsets[(k + 1) % 3];
        fill_parity([&](const tide_backend &be, void *p, const View &w) {
          return be.random->uniform(p, nd(w), w.shape.data(), w.stride.data(), dt, seed, off, r.lo, r.hi);
        }, dt, v, "uniform");
      }
}

KTEST(random_uniform_bounds_round_across) {
  // bf16/f16 intervals narrower than a step: rounding crosses high, the replacement values must agree
  std::vector<int64_t> shape = {257}, stride = {1};
  View v = {shape, stride, 257, "257"};
  struct { int32_t dt; double lo, hi; } cases[] = {
      {TIDE_BF16, 1.0, 1.0078125}, {TIDE_BF16, 0.999, 1.0001}, {TIDE_F16, 2047.0, 2048.5}, {TIDE_F32, 1.0, 1.0000002}};
  for (auto c : cases)
    fill_parity([&](const tide_backend &be, void *p, const View &w) {
      return be.random->uniform(p, nd(w), w.shape.data(), w.stride.data(), c.dt, 99, 3, c.lo, c.hi);
    }, c.dt, v, "uniform narrow");
  // no value of the dtype in the interval: the same error on both
  Dev d(64);
  CHECK_FAILS(cuda().random->uniform(d.p, 1, shape.data(), stride.data(), TIDE_BF16, 1, 0, 1.001, 1.002), "no bf16 value");
  CHECK_FAILS(cpu().random->uniform(d.p, 1, shape.data(), stride.data(), TIDE_BF16, 1, 0, 1.001, 1.002), "no bf16 value");
}

KTEST(random_normal_every_float_dtype_and_view) {
  struct { double mean, std; } ps[] = {{0, 1}, {3, 0.5}, {-2, 0}, {1e3, 1e-3}};
  for (int32_t dt : kFloat)
    for (const View &v : views())
      for (int k = 0; k < 2; k++) {
        auto q = ps[(k * 2 + dt) % 4];
        uint64_t seed = k ? 0x8000000000000001ull : 42, off = k ? 0xFFFFFFFFFFFFFFFEull : 5;
        fill_parity([&](const tide_backend &be, void *p, const View &w) {
          return be.random->normal(p, nd(w), w.shape.data(), w.stride.data(), dt, seed, off, q.mean, q.std);
        }, dt, v, "normal");
      }
}

KTEST(random_randint_every_dtype_narrow_and_wide) {
  for (int32_t dt : kAll) {
    // ranges exact in the dtype
    std::vector<std::pair<int64_t, int64_t>> rs;
    switch (dt) {
      case TIDE_BOOL: rs = {{0, 2}, {1, 2}}; break;
      case TIDE_U8: rs = {{0, 256}, {3, 10}}; break;
      case TIDE_U16: rs = {{0, 65536}, {100, 101}}; break;
      case TIDE_BF16: rs = {{-256, 257}, {0, 10}}; break;
      case TIDE_F16: rs = {{-2048, 2049}, {-5, 5}}; break;
      case TIDE_F32: rs = {{-(1 << 24), (1 << 24) + 1}, {0, 3}}; break;
      case TIDE_I32: rs = {{INT32_MIN, INT32_MAX}, {-7, 1000}}; break;
      case TIDE_F64: rs = {{-(INT64_C(1) << 53), (INT64_C(1) << 53) + 1}, {0, 1000}}; break;
      default: rs = {{INT64_MIN, INT64_MAX}, {-5, 5}, {0, (INT64_C(1) << 32) + 1}, {0, INT64_C(1) << 32}}; break;
    }
    for (const View &v : views())
      for (auto r : rs)
        fill_parity([&](const tide_backend &be, void *p, const View &w) {
          return be.random->randint(p, nd(w), w.shape.data(), w.stride.data(), dt, 77, 11, r.first, r.second);
        }, dt, v, "randint");
  }
}

KTEST(random_bernoulli_every_dtype) {
  for (int32_t dt : kAll)
    for (const View &v : views())
      for (double p : {0.0, 0.3, 0.5, 1.0})
        fill_parity([&](const tide_backend &be, void *q, const View &w) {
          return be.random->bernoulli(q, nd(w), w.shape.data(), w.stride.data(), dt, 5, 1000, p);
        }, dt, v, "bernoulli");
}

KTEST(random_fill_aliasing_view_last_write_wins) {
  // a view whose elements overlap ([4, 5] with strides [1, 1]): the last element in logical order wins, as on the CPU
  View v = {{4, 5}, {1, 1}, 8, "overlapping"};
  for (int32_t dt : {TIDE_F32, TIDE_F64})
    fill_parity([&](const tide_backend &be, void *p, const View &w) {
      return be.random->uniform(p, nd(w), w.shape.data(), w.stride.data(), dt, 3, 0, 0, 1);
    }, dt, v, "aliasing uniform");
  fill_parity([&](const tide_backend &be, void *p, const View &w) {
    return be.random->randint(p, nd(w), w.shape.data(), w.stride.data(), TIDE_I64, 3, 0, 0, 1000);
  }, TIDE_I64, v, "aliasing randint");
}

KTEST(random_fill_deterministic_across_schedules) {
  View v = {{37, 29}, {1, 37}, 37 * 29, "transposed"};
  for (int32_t dt : {TIDE_F32, TIDE_BF16, TIDE_F64}) {
    std::vector<unsigned char> runs[2];
    for (int k = 0; k < 2; k++) {
      kt::schedule_seed(k + 1);
      size_t bytes = (size_t)v.elems * tide_dtype_size(dt);
      Dev d(bytes);
      CHECK_OK(cuda().random->normal(d.p, 2, v.shape.data(), v.stride.data(), dt, 9, 1, 0, 1));
      runs[k] = download<unsigned char>(d, bytes);
    }
    expect_bits(runs[1], runs[0], "normal under two schedules");
  }
  kt::schedule_seed(1);
}

KTEST(random_randperm) {
  for (int64_t n : {0, 1, 2, 3, 7, 1000})
    for (uint64_t off : {0ull, 123ull, 0xFFFFFFFFFFFFFF00ull}) {
      Dev d(n ? n * 8 : 8);
      std::vector<int64_t> want(n);
      CHECK_OK(cuda().random->randperm(d.as<int64_t>(), n, 31337, off));
      CHECK_OK(cpu().random->randperm(want.data(), n, 31337, off));
      char msg[64];
      snprintf(msg, sizeof msg, "randperm n=%lld", (long long)n);
      expect_bits(download<int64_t>(d, n), want, msg);
    }
}

// Calls multinomial on both backends with weights w [rows][K]; compares results, or the error messages.
static void multinomial_parity(const std::vector<double> &w, int64_t rows, int64_t K, int64_t n, int replacement,
                               uint64_t seed, uint64_t off, const char *what) {
  Dev dw = upload(w), dout((rows * n) != 0 ? rows * n * 8 : 8);
  std::vector<int64_t> want(rows * n);
  int rc_cpu = cpu().random->multinomial(want.data(), w.data(), rows, K, n, replacement, seed, off);
  std::string cpu_err = rc_cpu ? tide_last_error() : "";
  int rc_cuda = cuda().random->multinomial(dout.as<int64_t>(), dw.as<double>(), rows, K, n, replacement, seed, off);
  std::string cuda_err = rc_cuda ? tide_last_error() : "";
  CHECK(rc_cpu == rc_cuda, "%s: cpu rc %d (%s), cuda rc %d (%s)", what, rc_cpu, cpu_err.c_str(), rc_cuda, cuda_err.c_str());
  if (rc_cpu == 0 && rc_cuda == 0) {
    expect_bits(download<int64_t>(dout, rows * n), want, what);
  } else {
    CHECK(cpu_err == cuda_err, "%s: cuda error '%s', cpu '%s'", what, cuda_err.c_str(), cpu_err.c_str());
    // nothing written before validation failed
    expect_bits(download<unsigned char>(dout, dout.bytes), std::vector<unsigned char>(dout.bytes, 0xFF), what);
  }
  // out NULL: validation alone, the same verdict
  int rc_v = cuda().random->multinomial(nullptr, dw.as<double>(), rows, K, n, replacement, seed, off);
  CHECK(rc_v == rc_cpu, "%s: validation-only rc %d, cpu %d", what, rc_v, rc_cpu);
}

KTEST(random_multinomial_parity) {
  Rng r(17);
  struct { int64_t rows, K, n; } shapes[] = {{1, 1, 1}, {1, 5, 3}, {3, 7, 4}, {4, 33, 10}, {9, 6, 0}, {0, 4, 2}, {2, 1000, 50}};
  for (auto s : shapes) {
    std::vector<double> w(s.rows * s.K);
    for (auto &x : w) x = r.uniform() < 0.2 ? 0.0 : r.uniform(0, 3);
    for (int64_t k = 0; k < s.rows; k++) w[k * s.K + (k % s.K)] = 1.5;  // each row at least one nonzero
    for (int rep = 0; rep < 2; rep++) {
      int64_t n = s.n;
      if (!rep) {  // without replacement n may not exceed any row's nonzero count
        for (int64_t k = 0; k < s.rows; k++) {
          int64_t nnz = 0;
          for (int64_t c = 0; c < s.K; c++) nnz += w[k * s.K + c] > 0;
          if (nnz < n) n = nnz;
        }
      }
      char msg[96];
      snprintf(msg, sizeof msg, "multinomial rows=%lld K=%lld n=%lld repl=%d", (long long)s.rows, (long long)s.K,
               (long long)n, rep);
      multinomial_parity(w, s.rows, s.K, n, rep, 2024, 0xFFFFFFFFFFFFFFFFull, msg);
      multinomial_parity(w, s.rows, s.K, n, rep, 7, 3, msg);
    }
  }
  // ties and tiny weights: keys tie or overflow to inf, still the same order
  std::vector<double> t = {1, 1, 1, 1, 1e-310, 1e-310, 1, 0};
  multinomial_parity(t, 1, 8, 7, 0, 1, 0, "multinomial tiny weights");
  multinomial_parity(t, 2, 4, 3, 1, 1, 0, "multinomial 2 rows");
}

KTEST(random_multinomial_bad_weights) {
  double inf = INFINITY, nan = NAN;
  multinomial_parity({1, -1, 2}, 1, 3, 2, 1, 1, 0, "negative weight");
  multinomial_parity({1, 2, 3, 1, nan, 2}, 2, 3, 2, 1, 1, 0, "NaN in row 2");
  multinomial_parity({1, 2, inf, -1, 2, 3}, 2, 3, 2, 0, 1, 0, "inf before a bad row");
  multinomial_parity({0, 0, 0}, 1, 3, 1, 1, 1, 0, "all zero");
  multinomial_parity({1, 0, 0, 0, 0, 0}, 2, 3, 1, 1, 1, 0, "zero row 2");
  multinomial_parity({1.7e308, 1.7e308}, 1, 2, 1, 1, 1, 0, "sum overflows");
  multinomial_parity({1, 0, 2}, 1, 3, 3, 0, 1, 0, "too few nonzero");
  multinomial_parity({1, 1, 1, 1, 0, 2}, 2, 3, 2, 0, 1, 0, "too few nonzero, row 2");
  multinomial_parity({1, 0, 2}, 1, 3, 3, 1, 1, 0, "with replacement n > nnz is fine");
}

KTEST(random_multinomial_deterministic_across_schedules) {
  Rng r(5);
  std::vector<double> w(6 * 40);
  for (auto &x : w) x = r.uniform(0, 1);
  Dev dw = upload(w);
  for (int rep = 0; rep < 2; rep++) {
    std::vector<int64_t> runs[2];
    for (int k = 0; k < 2; k++) {
      kt::schedule_seed(k + 3);
      Dev d(6 * 12 * 8);
      CHECK_OK(cuda().random->multinomial(d.as<int64_t>(), dw.as<double>(), 6, 40, 12, rep, 11, 0));
      runs[k] = download<int64_t>(d, 6 * 12);
    }
    expect_bits(runs[1], runs[0], "multinomial under two schedules");
  }
  kt::schedule_seed(1);
}

// dropout ----------------------------------------------------------------------------

template <class T> static void dropout_fwd_case(int32_t dt, int64_t n, double p, uint64_t seed, uint64_t off) {
  Rng r(n + 1);
  auto x = r.normal_vec<T>(n);
  if (n > 3) x[3] = (T)INFINITY;  // dropped or scaled, the same either way
  Dev dx = upload(x), dy(n ? n * sizeof(T) : 1), dm(n ? n : 1);
  std::vector<T> y(n);
  std::vector<uint8_t> m(n);
  CHECK_OK(cuda().dropout->dropout_forward(dy.p, dm.as<uint8_t>(), dx.p, n, p, seed, off, dt));
  CHECK_OK(cpu().dropout->dropout_forward(y.data(), m.data(), x.data(), n, p, seed, off, dt));
  char msg[96];
  snprintf(msg, sizeof msg, "dropout %s n=%lld p=%g", tide_dtype_name(dt), (long long)n, p);
  expect_bits(download<uint8_t>(dm, n), m, msg);
  expect_bits(download<T>(dy, n), y, msg);
}

KTEST(dropout_forward_masks_and_values) {
  for (int64_t n : {0, 1, 3, 4, 5, 1003})
    for (double p : {0.1, 0.5, 0.9, 1e-9, 1 - 1e-9}) {
      dropout_fwd_case<float>(TIDE_F32, n, p, 123, 0);
      dropout_fwd_case<double>(TIDE_F64, n, p, 0xDEADBEEF12345678ull, 0xFFFFFFFFFFFFFFFDull);
    }
  Dev d(16);
  CHECK_FAILS(cuda().dropout->dropout_forward(d.p, d.as<uint8_t>(), d.p, 1, 0.5, 1, 0, TIDE_BF16), "no kernel");
}

KTEST(dropout_forward_deterministic_across_schedules) {
  Rng r(8);
  auto x = r.normal_vec<float>(777);
  Dev dx = upload(x);
  std::vector<uint8_t> masks[2];
  for (int k = 0; k < 2; k++) {
    kt::schedule_seed(k + 1);
    Dev dy(777 * 4), dm(777);
    CHECK_OK(cuda().dropout->dropout_forward(dy.p, dm.as<uint8_t>(), dx.p, 777, 0.3, 4, 9, TIDE_F32));
    masks[k] = download<uint8_t>(dm, 777);
  }
  expect_bits(masks[1], masks[0], "dropout masks under two schedules");
  kt::schedule_seed(1);
}

template <class T> static void dropout_bwd_case(int32_t dt) {
  Rng r(21);
  // dout transposed ([6, 5] view of a [5, 6] buffer), mask broadcast along dim 0, dinp with row gaps
  std::vector<int64_t> shape = {6, 5}, dst = {7, 1}, yst = {1, 6}, mst = {0, 1};
  auto dy = r.normal_vec<T>(30);
  std::vector<uint8_t> mask = {1, 0, 1, 1, 0};
  Dev ddy = upload(dy), dmask = upload(mask), ddx(42 * sizeof(T));
  std::vector<T> want(42);
  memset(want.data(), 0xFF, want.size() * sizeof(T));
  for (double p : {0.25, 0.0, 0.9}) {
    CHECK_OK(cuda().dropout->dropout_backward(ddx.p, dst.data(), ddy.p, yst.data(), dmask.as<uint8_t>(), mst.data(), 2,
                                              shape.data(), p, dt));
    CHECK_OK(cpu().dropout->dropout_backward(want.data(), dst.data(), dy.data(), yst.data(), mask.data(), mst.data(), 2,
                                             shape.data(), p, dt));
    expect_bits(download<T>(ddx, 42), want, "dropout_backward strided");
  }
  // size 0 writes nothing
  std::vector<int64_t> empty = {0, 5};
  CHECK_OK(cuda().dropout->dropout_backward(ddx.p, dst.data(), ddy.p, yst.data(), dmask.as<uint8_t>(), mst.data(), 2,
                                            empty.data(), 0.5, dt));
  expect_bits(download<T>(ddx, 42), want, "dropout_backward empty");
}

KTEST(dropout_backward_strided) {
  dropout_bwd_case<float>(TIDE_F32);
  dropout_bwd_case<double>(TIDE_F64);
  Dev d(16);
  int64_t one = 1;
  CHECK_FAILS(cuda().dropout->dropout_backward(d.p, &one, d.p, &one, d.as<uint8_t>(), &one, 1, &one, 0.5, TIDE_F16),
              "no kernel");
}
