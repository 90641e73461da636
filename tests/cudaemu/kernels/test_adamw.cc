// The multi-tensor kernels of the adamw family (adamw_multi_step, multi_norm2,
// clip_scale) on CUDA against the CPU kernels: many tensors of odd sizes
// (0, 1, chunk boundaries, more tensors than one launch's table holds),
// misaligned starts, bf16 shadows on and off, f32 and f64; the same bits
// under two schedule seeds. (adamw_step and norm2 are in test_index.cc.)
#include "harness.h"

#include <algorithm>

// sizes crossing the kernels' chunks (4096 for AdamW, 8192 for the norm and clipping)
static const int64_t kSizes[] = {0, 1, 3, 4, 5, 17, 256, 1000, 4095, 4097, 8193, 9000};

template <class T> struct multi_case {
  int32_t dt;
  std::vector<int64_t> n, off, step;  // elements, offset (elements) of each operand's start, step count
  std::vector<bool> shadow;
  std::vector<std::vector<T>> h[4];          // param, grad, exp_avg, exp_avg_sq (with the offset in front)
  std::vector<std::vector<uint16_t>> hs;     // shadows (same offset)
};

template <class T> static multi_case<T> make_case(Rng &r, int32_t dt, int ntensors) {
  multi_case<T> c;
  c.dt = dt;
  for (int i = 0; i < ntensors; i++) {
    int64_t n = kSizes[i % (int)(sizeof kSizes / sizeof kSizes[0])];
    if (ntensors > 20) n = n % 300;  // many tensors: keep them small (emulator time)
    c.n.push_back(n);
    c.off.push_back(i % 3 == 2 ? 1 : 0);  // every third starts one element in: the unaligned path
    c.step.push_back(1 + i % 4);          // per-tensor bias corrections
    c.shadow.push_back(i % 2 == 0);
    int64_t room = n + c.off.back();
    c.h[0].push_back(r.normal_vec<T>(room));
    c.h[1].push_back(r.normal_vec<T>(room, 0.1));
    c.h[2].push_back(r.normal_vec<T>(room, 0.01));
    c.h[3].push_back(r.uniform_vec<T>(room, 0, 1e-3));
    c.hs.push_back(std::vector<uint16_t>((size_t)std::max<int64_t>(room, 1), 0xFFFF));
  }
  return c;
}

// Runs the CUDA multi step on a copy of the case's inputs; returns the results (operands + shadows).
template <class T>
static void run_cuda(const multi_case<T> &c, double beta1, double wd, std::vector<std::vector<T>> out[4],
                     std::vector<std::vector<uint16_t>> &shadows) {
  size_t nt = c.n.size();
  std::vector<Dev> d[5];
  std::vector<tide_adamw_entry> es(nt);
  for (size_t i = 0; i < nt; i++) {
    for (int k = 0; k < 4; k++) d[k].push_back(upload(c.h[k][i]));
    d[4].push_back(upload(c.hs[i]));
    int64_t o = c.off[i];
    es[i] = tide_adamw_entry{d[0][i].as<T>() + o, d[1][i].as<T>() + o, d[2][i].as<T>() + o, d[3][i].as<T>() + o,
                             c.shadow[i] ? d[4][i].as<uint16_t>() + o : nullptr, c.n[i], c.step[i]};
  }
  CHECK_OK(cuda().adamw->adamw_multi_step((int32_t)nt, es.data(), c.dt, 1e-2, beta1, 0.999, 1e-8, wd));
  for (int k = 0; k < 4; k++) {
    out[k].clear();
    for (size_t i = 0; i < nt; i++) out[k].push_back(download<T>(d[k][i], c.h[k][i].size()));
  }
  shadows.clear();
  for (size_t i = 0; i < nt; i++) shadows.push_back(download<uint16_t>(d[4][i], c.hs[i].size()));
}

template <class T> static void multi_step_case(Rng &r, int32_t dt, int ntensors, double beta1, double wd) {
  multi_case<T> c = make_case<T>(r, dt, ntensors);
  std::vector<std::vector<T>> got[4], again[4];
  std::vector<std::vector<uint16_t>> gs, gs2;
  kt::schedule_seed(1);
  run_cuda(c, beta1, wd, got, gs);
  kt::schedule_seed(2);
  run_cuda(c, beta1, wd, again, gs2);
  kt::schedule_seed(1);
  // the CPU: the single-tensor step, tensor by tensor, and the cast of the result
  const char *names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  for (size_t i = 0; i < c.n.size(); i++) {
    std::vector<T> w[4] = {c.h[0][i], c.h[1][i], c.h[2][i], c.h[3][i]};
    int64_t o = c.off[i], n = c.n[i], one = 1;
    if (n > 0)
      CHECK_OK(cpu().adamw->adamw_step(w[0].data() + o, w[1].data() + o, w[2].data() + o, w[3].data() + o, dt, 1, &n,
                                       &one, &one, &one, &one, 1e-2, beta1, 0.999, 1e-8, wd, c.step[i]));
    std::vector<uint16_t> ws = c.hs[i];
    if (c.shadow[i])
      for (int64_t j = 0; j < n; j++) ws[o + j] = tide_f32_to_bf16((float)w[0][o + j]);
    char what[120];
    for (int k = 0; k < 4; k++) {
      snprintf(what, sizeof what, "multi %s tensor %zu (n %lld, dtype %d, beta1 %g)", names[k], i, (long long)n, dt, beta1);
      expect_bits(got[k][i], w[k], what);
      snprintf(what, sizeof what, "multi %s tensor %zu across seeds", names[k], i);
      expect_bits(again[k][i], got[k][i], what);
    }
    snprintf(what, sizeof what, "shadow tensor %zu (n %lld, dtype %d)", i, (long long)n, dt);
    expect_bits(gs[i], ws, what);  // no shadow: untouched (0xFFFF); around the tensor: untouched
    expect_bits(gs2[i], gs[i], "shadow across seeds");
  }
}

KTEST(adamw_multi_step_parity) {
  Rng r(41);
  for (double beta1 : {0.9, 0.3}) {  // lerp weight 0.1 (torch's first formula) and 0.7 (second)
    multi_step_case<float>(r, TIDE_F32, 12, beta1, 0.1);
    multi_step_case<double>(r, TIDE_F64, 12, beta1, 0.0);
  }
  // more tensors than one launch's table (50): several launches, chunks numbered per table
  multi_step_case<float>(r, TIDE_F32, 110, 0.9, 0.01);
  // nothing to do, and a dtype the kernel does not take
  CHECK_OK(cuda().adamw->adamw_multi_step(0, nullptr, TIDE_F32, 1e-3, 0.9, 0.999, 1e-8, 0));
  tide_adamw_entry e{};
  CHECK_FAILS(cuda().adamw->adamw_multi_step(1, &e, TIDE_BF16, 1e-3, 0.9, 0.999, 1e-8, 0), "f32 or f64");
}

// ---- multi_norm2 ---------------------------------------------------------------------------------

static void multi_norm_case(Rng &r, int ntensors, bool with_f64, double rtol) {
  std::vector<std::vector<unsigned char>> host;
  std::vector<Dev> dev;
  std::vector<const void *> hx, dx;
  std::vector<int64_t> ns;
  std::vector<int32_t> dts;
  for (int i = 0; i < ntensors; i++) {
    int64_t n = kSizes[(i * 7) % (int)(sizeof kSizes / sizeof kSizes[0])];
    if (ntensors > 20) n = n % 200;
    if (i == ntensors - 1 && ntensors > 20) n = 20000;  // one tensor of several chunks among many
    int32_t dt = with_f64 && i % 3 == 1 ? TIDE_F64 : TIDE_F32;
    std::vector<unsigned char> b((size_t)std::max<int64_t>(n, 1) * tide_dtype_size(dt));
    for (int64_t j = 0; j < n; j++) tide_store_f64((char *)b.data() + j * tide_dtype_size(dt), dt, r.normal() * (1 + i % 5));
    host.push_back(b);
    dev.push_back(upload(b));
    ns.push_back(n);
    dts.push_back(dt);
  }
  for (int i = 0; i < ntensors; i++) hx.push_back(host[i].data()), dx.push_back(dev[i].p);
  int32_t odt = with_f64 ? TIDE_F64 : TIDE_F32;
  double want = 0;
  unsigned char wb[8];
  CHECK_OK(cpu().adamw->multi_norm2(wb, odt, ntensors, hx.data(), ns.data(), dts.data()));
  want = tide_load_f64((const char *)wb, odt);
  std::vector<std::vector<unsigned char>> got;
  for (uint64_t seed : {1, 2}) {
    kt::schedule_seed(seed);
    Dev out(8);
    CHECK_OK(cuda().adamw->multi_norm2(out.p, odt, ntensors, dx.data(), ns.data(), dts.data()));
    got.push_back(download<unsigned char>(out, tide_dtype_size(odt)));
  }
  kt::schedule_seed(1);
  char what[80];
  snprintf(what, sizeof what, "multi_norm2 of %d tensors (f64 %d)", ntensors, (int)with_f64);
  std::vector<double> g = {tide_load_f64((const char *)got[0].data(), odt)};
  expect_close(g, std::vector<double>{want}, rtol, 0, what);
  expect_bits(got[0], got[1], "multi_norm2 across seeds");
}

KTEST(multi_norm2_parity) {
  Rng r(42);
  multi_norm_case(r, 12, false, 2e-6);   // the CPU sums in f32 (torch's order), the GPU in double
  multi_norm_case(r, 12, true, 1e-6);    // f64 tensors with f32 ones: an f64 total
  multi_norm_case(r, 175, false, 2e-6);  // more than one table (160)
  multi_norm_case(r, 1, false, 2e-6);
  // no tensors: a zero total
  Dev out(4);
  CHECK_OK(cuda().adamw->multi_norm2(out.p, TIDE_F32, 0, nullptr, nullptr, nullptr));
  CHECK(download<float>(out, 1)[0] == 0.0f, "multi_norm2 of no tensors is 0");
  int64_t n1 = 1;
  int32_t bf = TIDE_BF16;
  const void *x = out.p;
  CHECK_FAILS(cuda().adamw->multi_norm2(out.p, TIDE_F32, 1, &x, &n1, &bf), "dtype bf16");
  int32_t f64 = TIDE_F64;
  CHECK_FAILS(cuda().adamw->multi_norm2(out.p, TIDE_F32, 1, &x, &n1, &f64), "f64 with an f64 total");
}

// ---- clip_scale ------------------------------------------------------------------------------------

static void clip_case(Rng &r, int ntensors, int32_t tdt, double total, double max_norm) {
  static const int32_t dts[] = {TIDE_F32, TIDE_BF16, TIDE_F64, TIDE_F16};
  std::vector<std::vector<unsigned char>> host;
  std::vector<void *> hx;
  std::vector<int64_t> ns;
  std::vector<int32_t> dt;
  for (int i = 0; i < ntensors; i++) {
    int64_t n = kSizes[(i * 5) % (int)(sizeof kSizes / sizeof kSizes[0])];
    if (ntensors > 20) n = n % 100;
    int32_t d = tdt == TIDE_F64 ? dts[i % 4] : dts[(i % 4) == 2 ? 0 : i % 4];  // f64 tensors come with an f64 total
    std::vector<unsigned char> b((size_t)std::max<int64_t>(n, 1) * tide_dtype_size(d));
    for (int64_t j = 0; j < n; j++) tide_store_f64((char *)b.data() + j * tide_dtype_size(d), d, r.normal());
    host.push_back(b);
    ns.push_back(n);
    dt.push_back(d);
  }
  unsigned char tb[8];
  tide_store_f64((char *)tb, tdt, total);
  std::vector<std::vector<std::vector<unsigned char>>> got;
  for (uint64_t seed : {1, 2}) {
    kt::schedule_seed(seed);
    std::vector<Dev> dev;
    std::vector<void *> dx;
    for (auto &b : host) dev.push_back(upload(b));
    for (auto &d : dev) dx.push_back(d.p);
    Dev dt_total = upload(std::vector<unsigned char>(tb, tb + tide_dtype_size(tdt)));
    CHECK_OK(cuda().adamw->clip_scale(ntensors, dx.data(), ns.data(), dt.data(), dt_total.p, tdt, max_norm));
    std::vector<std::vector<unsigned char>> res;
    for (size_t i = 0; i < dev.size(); i++) res.push_back(download<unsigned char>(dev[i], host[i].size()));
    got.push_back(res);
  }
  kt::schedule_seed(1);
  for (auto &b : host) hx.push_back(b.data());
  CHECK_OK(cpu().adamw->clip_scale(ntensors, hx.data(), ns.data(), dt.data(), tb, tdt, max_norm));
  for (int i = 0; i < ntensors; i++) {
    char what[96];
    snprintf(what, sizeof what, "clip_scale tensor %d (dtype %d, n %lld, total %g)", i, dt[i], (long long)ns[i], total);
    expect_bits(got[0][i], host[i], what);
    expect_bits(got[1][i], got[0][i], "clip_scale across seeds");
  }
}

KTEST(clip_scale_parity) {
  Rng r(43);
  clip_case(r, 12, TIDE_F32, 3.7, 1.0);     // scaled down
  clip_case(r, 12, TIDE_F64, 3.7, 1.0);
  clip_case(r, 12, TIDE_F32, 0.25, 1.0);    // factor clamped to 1
  clip_case(r, 8, TIDE_F32, NAN, 1.0);      // NaN total: NaN grads, as torch
  clip_case(r, 170, TIDE_F32, 12.5, 2.0);   // more than one table (160)
  Dev d(8);
  int64_t n1 = 1;
  int32_t i32 = TIDE_I32;
  void *x = d.p;
  CHECK_FAILS(cuda().adamw->clip_scale(1, &x, &n1, &i32, d.p, TIDE_F32, 1.0), "dtype i32");
  int32_t f32 = TIDE_F32;
  CHECK_FAILS(cuda().adamw->clip_scale(1, &x, &n1, &f32, d.p, TIDE_BF16, 1.0), "f32 or f64");
}
