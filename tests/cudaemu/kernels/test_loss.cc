// The loss family on CUDA (kernels/nn_loss.h, kernels/cuda/nn_loss.cu)
// against the CPU kernels: cross-entropy forward and backward for f32, f64
// and bf16 logits (bf16 read in place on CUDA; the CPU reference gets the
// same values widened to f32, as the op layer gives it), every reduction,
// ignored rows, all rows ignored, V = 1, odd V (rows off 16-byte
// boundaries), a GPT-2-wide row, large offsets (1e4), -inf logits, a row
// pointer off its vector boundary, per-row dloss weights in f32 and bf16,
// poisoned outputs, bad targets, and the same bits under two emulator
// schedules.
#include "harness.h"
#include <algorithm>
#include <functional>
extern "C" {
#include "dtype.h"
}

namespace {

const int64_t kIgnore = -100;

// bf16 as its bits
typedef uint16_t bf16;

template <class T> int32_t dtype_of();
template <> int32_t dtype_of<float>() { return TIDE_F32; }
template <> int32_t dtype_of<double>() { return TIDE_F64; }
template <> int32_t dtype_of<bf16>() { return TIDE_BF16; }

// the compute type of T's logits (what the CPU kernel reads and lse is saved in)
template <class T> struct Compute { typedef T type; };
template <> struct Compute<bf16> { typedef float type; };

template <class T> double widen(T v) { return (double)v; }
template <> double widen<bf16>(bf16 v) { return tide_bf16_to_f32(v); }

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

// targets in 0..V-1 with every third row ignored (when ignore is set)
std::vector<int64_t> make_targets(Rng &r, int64_t N, int64_t V, bool ignore) {
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; i++) t[i] = ignore && i % 3 == 1 ? kIgnore : r.randint(0, V);
  return t;
}

// N x V logits of T: normal(0, 2) plus offset per row (alternating sign), -inf at a few places if asked
template <class T> std::vector<T> make_logits(Rng &r, int64_t N, int64_t V, double offset, bool neg_inf) {
  std::vector<T> x((size_t)(N * V));
  for (int64_t n = 0; n < N; n++)
    for (int64_t v = 0; v < V; v++) {
      double a = r.normal() * 2 + (n % 2 ? -offset : offset);
      if (neg_inf && V > 1 && (v < 9 || v % 5 == 3) && v != V - 1) a = -INFINITY;  // the row's start too
      if (sizeof(T) == 2) x[(size_t)(n * V + v)] = (T)tide_f32_to_bf16((float)a);
      else x[(size_t)(n * V + v)] = (T)a;
    }
  return x;
}

// The logits the CPU kernel reads: T's values in the compute type.
template <class T> std::vector<typename Compute<T>::type> to_compute(const std::vector<T> &x) {
  std::vector<typename Compute<T>::type> c(x.size());
  for (size_t i = 0; i < x.size(); i++) c[i] = (typename Compute<T>::type)widen(x[i]);
  return c;
}

struct CeOpts {
  bool ignore = true;       // every third row ignored
  double offset = 0;        // added to even rows, taken from odd ones
  bool neg_inf = false;     // some logits -inf
  bool bf16_dloss = false;  // dloss in bf16 instead of f32
};

template <class T> void ce_case(int64_t N, int64_t V, uint64_t seed, CeOpts o = CeOpts()) {
  typedef typename Compute<T>::type C;
  const int32_t dt = dtype_of<T>(), cd = dtype_of<C>();
  const bool half = dt == TIDE_BF16;
  Rng r(seed);
  auto x = make_logits<T>(r, N, V, o.offset, o.neg_inf);
  auto xc = to_compute(x);
  auto t = make_targets(r, N, V, o.ignore);
  Dev dx = upload(x), dtg = upload(t);
  for (int32_t red : {TIDE_REDUCE_NONE, TIDE_REDUCE_SUM, TIDE_REDUCE_MEAN}) {
    char what[160];
    snprintf(what, sizeof what, "cross_entropy %s [%lld, %lld] reduction %d ignore %d offset %g", tide_dtype_name(dt),
             (long long)N, (long long)V, red, o.ignore, o.offset);
    const int64_t nl = red == TIDE_REDUCE_NONE ? N : 1;
    // the loss in f64 (to compare the kernels' arithmetic), lse in the compute dtype
    Dev loss((size_t)nl * 8), lse((size_t)N * sizeof(C));
    std::vector<double> lw((size_t)nl);
    std::vector<C> lsw((size_t)N);
    CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dtg.as<int64_t>(), N, V, kIgnore, red,
                                                dt));
    CHECK_OK(cpu().loss->cross_entropy_forward(lw.data(), TIDE_F64, lsw.data(), xc.data(), t.data(), N, V, kIgnore,
                                               red, cd));
    // f32 math (sums of V terms in f32) against the CPU's double sums
    const double rt = cd == TIDE_F32 ? 2e-6 : 1e-13, at = cd == TIDE_F32 ? 1e-5 : 1e-12;
    expect_close(download<double>(loss, (size_t)nl), lw, rt, at, what);
    expect_close(download<C>(lse, (size_t)N), lsw, rt, at, what);
    // the loss in the logits' dtype: the f64 value rounded once (f32 and bf16 through f32, as tide_store_f64)
    Dev lossd((size_t)nl * sizeof(T));
    CHECK_OK(cuda().loss->cross_entropy_forward(lossd.p, dt, lse.p, dx.p, dtg.as<int64_t>(), N, V, kIgnore, red, dt));
    {
      auto got = download<T>(lossd, (size_t)nl);
      std::vector<double> g(got.size()), w(got.size());
      for (size_t i = 0; i < got.size(); i++) g[i] = widen(got[i]);
      auto l64 = download<double>(loss, (size_t)nl);
      for (size_t i = 0; i < got.size(); i++) {
        T v;
        tide_store_f64((char *)&v, dt, l64[i]);
        w[i] = widen(v);
      }
      expect_close(g, w, 0, 0, what);
    }
    // backward from the CPU's lse, with a dloss per row (none) or one value, in f32 or bf16
    const int32_t ddt = o.bf16_dloss ? TIDE_BF16 : TIDE_F32;
    std::vector<float> dl((size_t)nl);
    std::vector<bf16> dlb((size_t)nl);
    for (size_t i = 0; i < dl.size(); i++) {
      dl[i] = (float)r.uniform(0.5, 2);
      dlb[i] = tide_f32_to_bf16(dl[i]);
      if (o.bf16_dloss) dl[i] = tide_bf16_to_f32(dlb[i]);
    }
    Dev ddl = o.bf16_dloss ? upload(dlb) : upload(dl), dls = upload(lsw), g((size_t)(N * V) * sizeof(T));
    std::vector<C> gw((size_t)(N * V));
    CHECK_OK(cuda().loss->cross_entropy_backward(g.p, dx.p, dtg.as<int64_t>(), dls.p, ddl.p, ddt, N, V, kIgnore, red,
                                                 dt));
    const void *dlh = o.bf16_dloss ? (const void *)dlb.data() : (const void *)dl.data();
    CHECK_OK(cpu().loss->cross_entropy_backward(gw.data(), xc.data(), t.data(), lsw.data(), dlh, ddt, N, V, kIgnore, red,
                                                cd));
    auto gd = download<T>(g, (size_t)(N * V));
    std::vector<double> gg(gd.size()), ww(gw.begin(), gw.end());
    for (size_t i = 0; i < gd.size(); i++) gg[i] = widen(gd[i]);
    if (half)  // the CPU's f32 gradient against CUDA's rounded to bf16: one bf16 step apart at most
      expect_close(gg, ww, 8e-3, 1e-30, what);
    else
      expect_close(gg, ww, cd == TIDE_F32 ? 2e-6 : 1e-13, cd == TIDE_F32 ? 1e-8 : 1e-15, what);
  }
}

}  // namespace

KTEST(cross_entropy_forward_backward) {
  uint64_t seed = 30;
  for (int64_t V : {1, 7, 33, 1000, 1001}) {
    ce_case<float>(9, V, seed++);
    ce_case<double>(5, V, seed++);
    ce_case<bf16>(9, V, seed++);
  }
  CeOpts none;
  none.ignore = false;
  ce_case<float>(1, 300, seed++, none);
  ce_case<bf16>(13, 65, seed++, none);
}

KTEST(cross_entropy_bf16_dloss) {
  CeOpts o;
  o.bf16_dloss = true;
  ce_case<bf16>(7, 257, 51, o);
  ce_case<float>(7, 257, 52, o);
}

KTEST(cross_entropy_wide_row) {
  // the GPT-2 vocabulary: 50257 logits per row (rows off 16-byte boundaries: 50257 is odd)
  ce_case<float>(3, 50257, 40);
  ce_case<bf16>(3, 50257, 41);
}

KTEST(cross_entropy_large_logits_and_neg_inf) {
  // 1e4 offsets: exp would overflow without the running max (rows of both signs)
  CeOpts big;
  big.offset = 1e4;
  ce_case<float>(6, 300, 60, big);
  ce_case<bf16>(6, 300, 61, big);
  ce_case<double>(4, 300, 62, big);
  // -inf logits (masked classes), the first ones of each row among them: threads that see only -inf
  CeOpts inf;
  inf.neg_inf = true;
  ce_case<float>(6, 130, 63, inf);
  ce_case<bf16>(6, 130, 64, inf);
}

KTEST(cross_entropy_unaligned_rows) {
  // logits one element past a 16-byte boundary: the forward reads a head then vectors, the backward (dx aligned,
  // x not) goes element by element
  Rng r(70);
  const int64_t N = 5, V = 203;
  auto x = make_logits<bf16>(r, N, V, 0, false);
  std::vector<bf16> xs(x.size() + 1, 0);
  std::copy(x.begin(), x.end(), xs.begin() + 1);
  auto xc = to_compute(x);
  auto t = make_targets(r, N, V, true);
  Dev dxs = upload(xs), dtg = upload(t), loss(N * 8), lse(N * 4), g(N * V * 2), dl = upload(std::vector<float>(N, 1.5f));
  std::vector<double> lw(N);
  std::vector<float> lsw(N), gw(N * V);
  const bf16 *xp = dxs.as<bf16>() + 1;
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, xp, dtg.as<int64_t>(), N, V, kIgnore,
                                              TIDE_REDUCE_NONE, TIDE_BF16));
  CHECK_OK(cpu().loss->cross_entropy_forward(lw.data(), TIDE_F64, lsw.data(), xc.data(), t.data(), N, V, kIgnore,
                                             TIDE_REDUCE_NONE, TIDE_F32));
  expect_close(download<double>(loss, N), lw, 2e-6, 1e-5, "unaligned forward");
  CHECK_OK(cuda().loss->cross_entropy_backward(g.p, xp, dtg.as<int64_t>(), lse.p, dl.p, TIDE_F32, N, V, kIgnore,
                                               TIDE_REDUCE_NONE, TIDE_BF16));
  std::vector<float> dlh(N, 1.5f);
  CHECK_OK(cpu().loss->cross_entropy_backward(gw.data(), xc.data(), t.data(), lsw.data(), dlh.data(), TIDE_F32, N, V,
                                              kIgnore, TIDE_REDUCE_NONE, TIDE_F32));
  auto gd = download<bf16>(g, N * V);
  std::vector<double> gg(gd.size()), ww(gw.begin(), gw.end());
  for (size_t i = 0; i < gd.size(); i++) gg[i] = widen(gd[i]);
  expect_close(gg, ww, 8e-3, 1e-30, "unaligned backward");
}

KTEST(cross_entropy_all_ignored_and_empty) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  std::vector<int64_t> t = {kIgnore, kIgnore};
  Dev dx = upload(x), dt = upload(t), loss(8), lse(16), g(24), dl = upload(std::vector<double>{1.0});
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), 2, 3, kIgnore,
                                              TIDE_REDUCE_MEAN, TIDE_F32));
  CHECK(isnan(download<double>(loss, 1)[0]), "the mean of no rows is NaN");
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), 2, 3, kIgnore,
                                              TIDE_REDUCE_SUM, TIDE_F32));
  CHECK(download<double>(loss, 1)[0] == 0, "the sum of no rows is 0");
  for (int32_t red : {TIDE_REDUCE_MEAN, TIDE_REDUCE_SUM}) {
    Dev gp(24);  // poisoned: every element must be written
    CHECK_OK(cuda().loss->cross_entropy_backward(gp.p, dx.p, dt.as<int64_t>(), lse.p, dl.p, TIDE_F64, 2, 3, kIgnore,
                                                 red, TIDE_F32));
    expect_close(download<float>(gp, 6), std::vector<float>(6, 0.0f), 0, 0, "ignored rows' gradient");
  }
  // bf16: all ignored rows write bf16 zeros
  std::vector<bf16> xb(2 * 37, tide_f32_to_bf16(1.0f));
  Dev dxb = upload(xb), gb(2 * 37 * 2);
  CHECK_OK(cuda().loss->cross_entropy_backward(gb.p, dxb.p, dt.as<int64_t>(), lse.p, dl.p, TIDE_F64, 2, 37, kIgnore,
                                               TIDE_REDUCE_MEAN, TIDE_BF16));
  expect_bits(download<bf16>(gb, 2 * 37), std::vector<bf16>(2 * 37, 0), "ignored bf16 rows' gradient");
  // N == 0: sum 0, mean NaN, nothing else written
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), 0, 3, kIgnore,
                                              TIDE_REDUCE_SUM, TIDE_F32));
  CHECK(download<double>(loss, 1)[0] == 0, "the sum of zero rows is 0");
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F32, lse.p, dx.p, dt.as<int64_t>(), 0, 3, kIgnore,
                                              TIDE_REDUCE_MEAN, TIDE_F32));
  CHECK(isnan(download<float>(loss, 1)[0]), "the mean of zero rows is NaN");
  CHECK_FAILS(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), 2, 3, kIgnore,
                                                 TIDE_REDUCE_SUM, TIDE_F16),
              "f32, f64 or bf16");
  CHECK_FAILS(cuda().loss->cross_entropy_forward(loss.p, TIDE_I64, lse.p, dx.p, dt.as<int64_t>(), 2, 3, kIgnore,
                                                 TIDE_REDUCE_SUM, TIDE_F32),
              "float dtype");
  CHECK(cuda().loss->bf16_logits == 1 && cpu().loss->bf16_logits == 0, "bf16_logits: CUDA reads bf16, the CPU not");
  CHECK(cuda().loss->backward_checks_targets == 0 && cpu().loss->backward_checks_targets == 1,
        "backward_checks_targets: the CPU's backward needs checked targets, CUDA's not");
}

KTEST(cross_entropy_backward_bad_target_is_nan) {
  // the CUDA backward does not re-check targets: a row whose target is out of range is NaN, the others exact
  Rng r(80);
  const int64_t N = 3, V = 40;
  auto x = r.normal_vec<float>(N * V);
  std::vector<int64_t> t = {3, 40, -7};
  std::vector<int64_t> tok = {3, 0, 0};
  Dev dx = upload(x), dt = upload(t), dtok = upload(tok), loss(N * 8), lse(N * 4), g(N * V * 4),
      dl = upload(std::vector<float>{2.0f});
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dtok.as<int64_t>(), N, V, kIgnore,
                                              TIDE_REDUCE_NONE, TIDE_F32));
  CHECK_OK(cuda().loss->cross_entropy_backward(g.p, dx.p, dt.as<int64_t>(), lse.p, dl.p, TIDE_F32, N, V, kIgnore,
                                               TIDE_REDUCE_SUM, TIDE_F32));
  auto gd = download<float>(g, N * V);
  for (int64_t v = 0; v < V; v++) {
    CHECK(!isnan(gd[v]), "row 0 (a valid target) element %lld is NaN", (long long)v);
    CHECK(isnan(gd[V + v]) && isnan(gd[2 * V + v]), "rows with targets 40 and -7 must be NaN at %lld", (long long)v);
  }
  // and the forward's row loss for a bad target is NaN too, never a stray read
  CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), N, V, kIgnore,
                                              TIDE_REDUCE_NONE, TIDE_F32));
  auto ld = download<double>(loss, N);
  CHECK(!isnan(ld[0]) && isnan(ld[1]) && isnan(ld[2]), "forward row losses of bad targets are NaN");
}

KTEST(cross_entropy_check_targets) {
  const int64_t V = 10;
  struct Case { std::vector<int64_t> t; int want; int64_t bad; };
  std::vector<Case> cases = {
      {{0, 9, kIgnore, 3}, 0, 0},
      {{0, 10, -1, 3}, 1, 10},       // the first bad one
      {{kIgnore, 2, -1}, 1, -1},
      {{-100}, 0, 0},
      {{5}, 0, 0},
  };
  // a long run: the bad one far in, after another bad one that a later thread sees first
  std::vector<int64_t> lng(1000, 4);
  lng[700] = 11, lng[333] = -7;
  cases.push_back({lng, 1, -7});
  for (auto &c : cases) {
    Dev d = upload(c.t);
    int64_t bad = 12345, badw = 12345;
    int got = cuda().loss->cross_entropy_check_targets(d.as<int64_t>(), (int64_t)c.t.size(), V, kIgnore, &bad);
    int want = cpu().loss->cross_entropy_check_targets(c.t.data(), (int64_t)c.t.size(), V, kIgnore, &badw);
    CHECK(got == want && want == c.want, "check_targets: %d, cpu %d, expected %d", got, want, c.want);
    if (want) CHECK(bad == badw && bad == c.bad, "bad target %lld, cpu %lld, expected %lld", (long long)bad,
                    (long long)badw, (long long)c.bad);
  }
  int64_t bad = 0;
  CHECK(cuda().loss->cross_entropy_check_targets(nullptr, 0, V, kIgnore, &bad) == 0, "no targets are all valid");
}

KTEST(cross_entropy_deterministic) {
  Rng r(8);
  const int64_t N = 40, V = 501;
  auto x = r.normal_vec<float>(N * V, 3);
  std::vector<bf16> xb(x.size());
  for (size_t i = 0; i < x.size(); i++) xb[i] = tide_f32_to_bf16(x[i]);
  auto t = make_targets(r, N, V, true);
  std::vector<float> dln(N);
  for (auto &v : dln) v = (float)r.uniform(0.5, 2);
  Dev dx = upload(x), dxb = upload(xb), dt = upload(t), loss(N * 8), lse(N * 4), g(N * V * 4), gb(N * V * 2),
      dl = upload(std::vector<float>{1.5f}), dlr = upload(dln);
  for (int32_t red : {TIDE_REDUCE_SUM, TIDE_REDUCE_MEAN}) {
    same_bits_two_seeds([&] {
      CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dx.p, dt.as<int64_t>(), N, V, kIgnore, red,
                                                  TIDE_F32));
    }, loss, 8, "loss bits");
    same_bits_two_seeds([&] {
      CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dxb.p, dt.as<int64_t>(), N, V, kIgnore,
                                                  red, TIDE_BF16));
    }, loss, 8, "bf16 loss bits");
    same_bits_two_seeds([&] {
      CHECK_OK(cuda().loss->cross_entropy_backward(g.p, dx.p, dt.as<int64_t>(), lse.p, dl.p, TIDE_F32, N, V, kIgnore,
                                                   red, TIDE_F32));
    }, g, N * V * 4, "dlogits bits");
  }
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().loss->cross_entropy_forward(loss.p, TIDE_F64, lse.p, dxb.p, dt.as<int64_t>(), N, V, kIgnore,
                                                TIDE_REDUCE_NONE, TIDE_BF16));
  }, lse, N * 4, "bf16 lse bits");
  same_bits_two_seeds([&] {
    CHECK_OK(cuda().loss->cross_entropy_backward(gb.p, dxb.p, dt.as<int64_t>(), lse.p, dlr.p, TIDE_F32, N, V, kIgnore,
                                                 TIDE_REDUCE_NONE, TIDE_BF16));
  }, gb, N * V * 2, "bf16 dlogits bits (per-row weights)");
}
