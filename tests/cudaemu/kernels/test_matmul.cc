// matmul on CUDA against the CPU's GEMM: f32/f64/bf16 through cuBLASLt (the
// reference GEMM of cudaemu/cublaslt_emu.cc when emulated), transposes,
// leading dims above the minimum, broadcast and multi-dim batches, odd
// sizes, k == 0, TF32, and the integer kernel.
#include "harness.h"

#include <algorithm>

namespace {

struct Case {
  int64_t m, n, k;
  int32_t ta, tb;
  int64_t lda_pad, ldb_pad;         // added to the minimal leading dims
  std::vector<int64_t> bshape, sa, sb;  // batch shape and strides (elements); empty: no batch
};

int64_t extent(const std::vector<int64_t> &shape, const std::vector<int64_t> &st) {
  int64_t e = 0;
  for (size_t d = 0; d < shape.size(); d++) e += (shape[d] - 1) * st[d];
  return e;
}

// Runs one case in dtype (f32, f64 or bf16) on both backends and compares.
void run(const Case &cs, int32_t dtype, bool tf32 = false) {
  Rng r((uint64_t)(cs.m * 1000003 + cs.n * 1009 + cs.k * 7 + cs.ta * 2 + cs.tb + dtype * 31));
  int64_t m = cs.m, n = cs.n, k = cs.k;
  int64_t arows = cs.ta ? k : m, acols = cs.ta ? m : k, brows = cs.tb ? n : k, bcols = cs.tb ? k : n;
  int64_t lda = std::max<int64_t>(1, acols) + cs.lda_pad, ldb = std::max<int64_t>(1, bcols) + cs.ldb_pad;
  int32_t nb = (int32_t)cs.bshape.size();
  int64_t nbatch = 1;
  for (int64_t s : cs.bshape) nbatch *= s;
  size_t na = (size_t)(extent(cs.bshape, cs.sa) + (arows - 1) * lda + acols), nbv = (size_t)(extent(cs.bshape, cs.sb) + (brows - 1) * ldb + bcols);
  if (k == 0) na = nbv = 1;
  size_t nc = (size_t)(nbatch * m * n);
  std::vector<float> a32 = r.normal_vec<float>(na), b32 = r.normal_vec<float>(nbv);
  char what[160];
  snprintf(what, sizeof what, "gemm dtype %d m %lld n %lld k %lld trans %d%d ld %lld/%lld batch %lld%s", dtype, (long long)m,
           (long long)n, (long long)k, cs.ta, cs.tb, (long long)lda, (long long)ldb, (long long)nbatch, tf32 ? " tf32" : "");
  double tol = tf32 ? 2e-3 : 1e-5;
  double atol = tol * (double)std::max<int64_t>(k, 1);
  if (dtype == TIDE_F64) {
    std::vector<double> a(a32.begin(), a32.end()), b(b32.begin(), b32.end()), want(nc);
    Dev da = upload(a), db = upload(b), dc(nc * 8);
    CHECK_OK(cuda().matmul->gemm_batched(dc.p, da.p, db.p, TIDE_F64, m, n, k, cs.ta, lda, cs.tb, ldb, nb, cs.bshape.data(),
                                         cs.sa.data(), cs.sb.data()));
    CHECK_OK(cpu().matmul->gemm_batched(want.data(), a.data(), b.data(), TIDE_F64, m, n, k, cs.ta, lda, cs.tb, ldb, nb,
                                        cs.bshape.data(), cs.sa.data(), cs.sb.data()));
    expect_close(download<double>(dc, nc), want, 1e-12, 1e-12 * (double)std::max<int64_t>(k, 1), what);
  } else if (dtype == TIDE_F32) {
    std::vector<float> want(nc);
    Dev da = upload(a32), db = upload(b32), dc(nc * 4);
    CHECK_OK(cuda().matmul->gemm_batched(dc.p, da.p, db.p, TIDE_F32, m, n, k, cs.ta, lda, cs.tb, ldb, nb, cs.bshape.data(),
                                         cs.sa.data(), cs.sb.data()));
    CHECK_OK(cpu().matmul->gemm_batched(want.data(), a32.data(), b32.data(), TIDE_F32, m, n, k, cs.ta, lda, cs.tb, ldb, nb,
                                        cs.bshape.data(), cs.sa.data(), cs.sb.data()));
    expect_close(download<float>(dc, nc), want, tol, atol, what);
  } else {
    // bf16: the CPU multiplies the operands widened to f32 and rounds the result once
    std::vector<uint16_t> a(na), b(nbv);
    for (size_t i = 0; i < na; i++) a[i] = tide_f32_to_bf16(a32[i]), a32[i] = tide_bf16_to_f32(a[i]);
    for (size_t i = 0; i < nbv; i++) b[i] = tide_f32_to_bf16(b32[i]), b32[i] = tide_bf16_to_f32(b[i]);
    std::vector<float> want32(nc);
    Dev da = upload(a), db = upload(b), dc(nc * 2);
    CHECK_OK(cuda().matmul->gemm_batched(dc.p, da.p, db.p, TIDE_BF16, m, n, k, cs.ta, lda, cs.tb, ldb, nb, cs.bshape.data(),
                                         cs.sa.data(), cs.sb.data()));
    CHECK_OK(cpu().matmul->gemm_batched(want32.data(), a32.data(), b32.data(), TIDE_F32, m, n, k, cs.ta, lda, cs.tb, ldb, nb,
                                        cs.bshape.data(), cs.sa.data(), cs.sb.data()));
    std::vector<uint16_t> got = download<uint16_t>(dc, nc);
    std::vector<float> g(nc), w(nc);
    for (size_t i = 0; i < nc; i++) g[i] = tide_bf16_to_f32(got[i]), w[i] = tide_bf16_to_f32(tide_f32_to_bf16(want32[i]));
    // one bf16 ulp (2^-8 relative) where the two f32 sums straddle a rounding boundary
    expect_close(g, w, 8e-3, 1e-5 * (double)k, what);
  }
}

const int32_t kFloat[] = {TIDE_F32, TIDE_F64, TIDE_BF16};

}  // namespace

KTEST(gemm_transposes_odd_sizes_padded_ld) {
  const int64_t sizes[][3] = {{1, 1, 1}, {17, 33, 5}, {33, 17, 33}, {1, 17, 33}, {17, 1, 33}, {33, 33, 1}, {5, 3, 17}};
  for (int32_t dt : kFloat)
    for (auto &s : sizes)
      for (int32_t ta = 0; ta < 2; ta++)
        for (int32_t tb = 0; tb < 2; tb++) {
          run(Case{s[0], s[1], s[2], ta, tb, 0, 0, {}, {}, {}}, dt);
          run(Case{s[0], s[1], s[2], ta, tb, 3, 7, {}, {}, {}}, dt);
        }
}

KTEST(gemm_batched_strides_and_broadcast) {
  for (int32_t dt : kFloat) {
    int64_t m = 5, n = 7, k = 9;
    // one batch dim, contiguous entries (one strided cuBLASLt call)
    run(Case{m, n, k, 0, 0, 0, 0, {4}, {m * k}, {k * n}}, dt);
    // B broadcast (stride 0), A entries row-contiguous: folded into one tall GEMM
    run(Case{m, n, k, 0, 1, 0, 0, {2, 3}, {3 * m * k, m * k}, {0, 0}}, dt);
    // the same with A transposed: no fold, a strided batch with B's stride 0
    run(Case{m, n, k, 1, 0, 0, 0, {2, 3}, {3 * m * k, m * k}, {0, 0}}, dt);
    // A broadcast over the outer dim, B over the inner: dims that cannot merge, so the outer dim loops
    run(Case{m, n, k, 0, 0, 2, 1, {3, 2}, {0, m * (k + 2)}, {2 * k * (n + 1), 0}}, dt);
    // one operand steps evenly over both dims, the other is broadcast over the inner one only: no merge
    run(Case{m, n, k, 0, 0, 0, 0, {3, 2}, {2 * m * k, m * k}, {k * n, 0}}, dt);
    run(Case{m, n, k, 0, 0, 0, 0, {3, 2}, {m * k, 0}, {2 * k * n, k * n}}, dt);
    // gaps between entries (padded strides), transposes, a size-1 batch dim in the middle
    run(Case{m, n, k, 1, 1, 1, 2, {2, 1, 3}, {3 * 100 + 11, 0, 100}, {3 * 90, 5, 90}}, dt);
    // odd sizes in a batch
    run(Case{17, 1, 33, 0, 1, 0, 0, {3}, {17 * 33}, {0}}, dt);
    run(Case{1, 33, 17, 1, 0, 0, 0, {3}, {17}, {17 * 33}}, dt);
  }
}

KTEST(gemm_k0_writes_zeros) {
  for (int32_t dt : kFloat) {
    int es = tide_dtype_size(dt);
    std::vector<int64_t> bs = {2}, st = {0};
    Dev c(2 * 3 * 4 * es);
    Dev dummy(16);
    CHECK_OK(cuda().matmul->gemm_batched(c.p, dummy.p, dummy.p, dt, 3, 4, 0, 0, 1, 0, 1, 1, bs.data(), st.data(), st.data()));
    expect_bits(download<unsigned char>(c, 24 * es), std::vector<unsigned char>(24 * es, 0), "k == 0");
  }
}

KTEST(gemm_tf32_switch) {
  CHECK(cuda().matmul->set_allow_tf32(1) == 0, "TF32 is on by default");
  run(Case{33, 17, 33, 0, 1, 0, 0, {2}, {33 * 33}, {0}}, TIDE_F32, true);
  CHECK(cuda().matmul->set_allow_tf32(0) == 1, "set_allow_tf32 did not report the previous setting");
  run(Case{33, 17, 33, 0, 1, 0, 0, {2}, {33 * 33}, {0}}, TIDE_F32);
  CHECK(cpu().matmul->set_allow_tf32 == nullptr && cpu().matmul->bf16_operands == 0, "the CPU has a TF32 switch or bf16");
  // emulated, TF32 rounds the inputs to 10 mantissa bits: the switch must reach the compute type
  if (kt::emulated()) {
    Rng r(5);
    auto x = r.normal_vec<float>(8 * 16), y = r.normal_vec<float>(16 * 8);
    Dev dx = upload(x), dy = upload(y), d1(64 * 4), d2(64 * 4);
    CHECK_OK(cuda().matmul->gemm_batched(d1.p, dx.p, dy.p, TIDE_F32, 8, 8, 16, 0, 16, 0, 8, 0, nullptr, nullptr, nullptr));
    cuda().matmul->set_allow_tf32(1);
    CHECK_OK(cuda().matmul->gemm_batched(d2.p, dx.p, dy.p, TIDE_F32, 8, 8, 16, 0, 16, 0, 8, 0, nullptr, nullptr, nullptr));
    cuda().matmul->set_allow_tf32(0);
    auto g1 = download<float>(d1, 64), g2 = download<float>(d2, 64);
    CHECK(memcmp(g1.data(), g2.data(), 256) != 0, "TF32 on gave the same bits as off");
  }
}

KTEST(gemm_bad_dtype_and_determinism) {
  Dev a(64), b(64), c(64);
  CHECK_FAILS(cuda().matmul->gemm_batched(c.p, a.p, b.p, TIDE_F16, 2, 2, 2, 0, 2, 0, 2, 0, nullptr, nullptr, nullptr),
              "f32, f64 or bf16");
  Rng r(9);
  auto x = r.normal_vec<float>(33 * 17), y = r.normal_vec<float>(17 * 5);
  Dev dx = upload(x), dy = upload(y), d1(33 * 5 * 4), d2(33 * 5 * 4);
  kt::schedule_seed(1);
  CHECK_OK(cuda().matmul->gemm_batched(d1.p, dx.p, dy.p, TIDE_F32, 33, 5, 17, 0, 17, 0, 5, 0, nullptr, nullptr, nullptr));
  kt::schedule_seed(2);
  CHECK_OK(cuda().matmul->gemm_batched(d2.p, dx.p, dy.p, TIDE_F32, 33, 5, 17, 0, 17, 0, 5, 0, nullptr, nullptr, nullptr));
  expect_bits(download<float>(d1, 165), download<float>(d2, 165), "same bits under two schedules");
}

KTEST(gemm_i64_strides_wrap_broadcast) {
  Rng r(11);
  struct I {
    int64_t m, n, k, a_sr, a_sc, b_sr, b_sc;
    std::vector<int64_t> bshape, sa, sb;
  };
  const I cases[] = {
    {1, 1, 1, 1, 1, 1, 1, {}, {}, {}},
    {17, 33, 5, 5, 1, 33, 1, {}, {}, {}},
    {5, 3, 17, 1, 5, 1, 17, {}, {}, {}},                  // both transposed
    {4, 6, 3, 7, 2, 13, 2, {2, 3}, {0, 30}, {80, 0}},      // gaps and broadcast
    {3, 2, 33, 0, 1, 2, 1, {3}, {33}, {0}},                // a row broadcast over rows (stride 0)
    {3, 4, 0, 1, 1, 1, 1, {2}, {0}, {0}},                  // k == 0: zeros
  };
  for (const I &cs : cases) {
    int64_t nbatch = 1;
    for (int64_t s : cs.bshape) nbatch *= s;
    auto span = [](int64_t r0, int64_t s0, int64_t r1, int64_t s1) { return (r0 > 0 ? (r0 - 1) * s0 : 0) + (r1 > 0 ? (r1 - 1) * s1 : 0) + 1; };
    size_t na = (size_t)(extent(cs.bshape, cs.sa) + span(cs.m, cs.a_sr, cs.k, cs.a_sc));
    size_t nbv = (size_t)(extent(cs.bshape, cs.sb) + span(cs.k, cs.b_sr, cs.n, cs.b_sc));
    std::vector<int64_t> a(na), b(nbv), want(nbatch * cs.m * cs.n);
    for (auto &v : a) v = (int64_t)r.next();  // full 64-bit values: the sums wrap
    for (auto &v : b) v = r.randint(-1000, 1000);
    Dev da = upload(a), db = upload(b), dc(want.size() * 8);
    CHECK_OK(cuda().matmul->gemm_batched_i64(dc.as<int64_t>(), da.as<int64_t>(), db.as<int64_t>(), cs.m, cs.n, cs.k, cs.a_sr,
                                             cs.a_sc, cs.b_sr, cs.b_sc, (int32_t)cs.bshape.size(), cs.bshape.data(),
                                             cs.sa.data(), cs.sb.data()));
    CHECK_OK(cpu().matmul->gemm_batched_i64(want.data(), a.data(), b.data(), cs.m, cs.n, cs.k, cs.a_sr, cs.a_sc, cs.b_sr,
                                            cs.b_sc, (int32_t)cs.bshape.size(), cs.bshape.data(), cs.sa.data(), cs.sb.data()));
    expect_bits(download<int64_t>(dc, want.size()), want, "gemm_i64");
  }
}

// The emulated cuBLASLt refuses what the library would: a leading dim below the rows, a k mismatch, an
// attribute of the wrong size, a pointer less aligned than the heuristic was told. (Emulator only: the
// library's exact statuses for these are not all documented.)
#include "cublaslt_api.h"
KTEST(cublaslt_emulator_refuses_bad_descriptors) {
  if (!kt::emulated()) return;
  const tide_cublaslt_api *lt = tide_cublaslt();
  CHECK(lt != nullptr, "no cuBLASLt table: %s", tide_last_error());
  if (!lt) return;
  tide_lt_handle h;
  CHECK(lt->Create(&h) == TIDE_LT_SUCCESS, "create");
  tide_lt_desc d;
  CHECK(lt->MatmulDescCreate(&d, TIDE_LT_COMPUTE_32F, TIDE_LT_R_32F) == TIDE_LT_SUCCESS, "desc");
  int64_t wrong = 1;
  CHECK(lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_TRANSA, &wrong, sizeof wrong) != TIDE_LT_SUCCESS, "an 8-byte TRANSA taken");
  tide_lt_layout a, b, c, bad;
  lt->MatrixLayoutCreate(&a, TIDE_LT_R_32F, 4, 3, 4);   // 4 x 3
  lt->MatrixLayoutCreate(&b, TIDE_LT_R_32F, 3, 5, 3);   // 3 x 5
  lt->MatrixLayoutCreate(&c, TIDE_LT_R_32F, 4, 5, 4);   // 4 x 5
  lt->MatrixLayoutCreate(&bad, TIDE_LT_R_32F, 4, 3, 3);  // ld 3 < rows 4
  tide_lt_pref p;
  lt->MatmulPreferenceCreate(&p);
  uint64_t ws = 1 << 20;
  lt->MatmulPreferenceSetAttribute(p, TIDE_LT_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  tide_lt_heuristic res;
  int found = 0;
  CHECK(lt->MatmulAlgoGetHeuristic(h, d, bad, b, c, c, p, 1, &res, &found) == TIDE_LT_INVALID_VALUE, "ld below rows taken");
  CHECK(lt->MatmulAlgoGetHeuristic(h, d, b, b, c, c, p, 1, &res, &found) == TIDE_LT_INVALID_VALUE, "k mismatch taken");
  CHECK(lt->MatmulAlgoGetHeuristic(h, d, a, b, c, c, p, 1, &res, &found) == TIDE_LT_SUCCESS && found == 1, "heuristic");
  Dev da(64), db(64), dc(128), dw(ws);
  float one = 1, zero = 0;
  CHECK(lt->Matmul(h, d, &one, da.p, a, db.p, b, &zero, dc.p, c, dc.p, c, &res.algo, dw.p, ws, nullptr) == TIDE_LT_SUCCESS,
        "matmul: %s", lt->GetStatusString(TIDE_LT_INVALID_VALUE));
  // A one float off its declared 256-byte alignment
  CHECK(lt->Matmul(h, d, &one, (char *)da.p + 4, a, db.p, b, &zero, dc.p, c, dc.p, c, &res.algo, dw.p, ws, nullptr) ==
            TIDE_LT_INVALID_VALUE, "a misaligned A taken");
  CHECK(strstr(lt->GetStatusString(TIDE_LT_INVALID_VALUE), "aligned") != nullptr, "reason: %s", lt->GetStatusString(TIDE_LT_INVALID_VALUE));
  lt->MatmulPreferenceDestroy(p);
  lt->MatrixLayoutDestroy(a), lt->MatrixLayoutDestroy(b), lt->MatrixLayoutDestroy(c), lt->MatrixLayoutDestroy(bad);
  lt->MatmulDescDestroy(d);
  lt->Destroy(h);
}

// ---- epilogues: gemm_epilogue (bias, GELU with its input kept) and gemm_bgrad (the bias gradient) ----

extern "C" __attribute__((weak)) uint64_t tide_cublaslt_emu_heuristic_calls(void);

namespace {

// bf16 bits of v, and v rounded through them
std::vector<uint16_t> to_bf16(std::vector<float> &v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); i++) h[i] = tide_f32_to_bf16(v[i]), v[i] = tide_bf16_to_f32(h[i]);
  return h;
}
std::vector<float> from_bf16(const std::vector<uint16_t> &h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); i++) v[i] = tide_bf16_to_f32(h[i]);
  return v;
}

// One fused forward on both backends: C and aux against the CPU kernel (f32/f64), or against the CPU's f32
// kernel on the bf16-rounded inputs (bf16, within a bf16 ulp or two of each tensor's scale).
void run_epilogue(int32_t dtype, int64_t m, int64_t n, int64_t k, int32_t ta, int32_t tb, int32_t epi) {
  Rng r((uint64_t)(m * 7919 + n * 131 + k * 17 + ta * 5 + tb * 3 + epi + dtype * 1000));
  int64_t lda = ta ? m : k, ldb = tb ? k : n;
  size_t na = (size_t)(m * k), nbv = (size_t)(k * n), nc = (size_t)(m * n);
  std::vector<float> a = r.normal_vec<float>(na), b = r.normal_vec<float>(nbv), bias = r.normal_vec<float>((size_t)n);
  char what[160];
  snprintf(what, sizeof what, "gemm_epilogue dtype %d m %lld n %lld k %lld trans %d%d epilogue %d", dtype, (long long)m,
           (long long)n, (long long)k, ta, tb, epi);
  bool gelu = (epi & TIDE_EPI_GELU) != 0;
  if (dtype == TIDE_F64) {
    std::vector<double> a64(a.begin(), a.end()), b64(b.begin(), b.end()), bias64(bias.begin(), bias.end()), want(nc), wa(nc);
    Dev da = upload(a64), db = upload(b64), dbias = upload(bias64), dc(nc * 8), daux(nc * 8);
    CHECK_OK(cuda().matmul->gemm_epilogue(dc.p, gelu ? daux.p : nullptr, da.p, db.p, dbias.p, dtype, m, n, k, ta, lda, tb, ldb, epi));
    CHECK_OK(cpu().matmul->gemm_epilogue(want.data(), gelu ? wa.data() : nullptr, a64.data(), b64.data(), bias64.data(), dtype,
                                         m, n, k, ta, lda, tb, ldb, epi));
    expect_close(download<double>(dc, nc), want, 1e-12, 1e-12 * (double)k, what);
    if (gelu) expect_close(download<double>(daux, nc), wa, 1e-12, 1e-12 * (double)k, what);
    return;
  }
  std::vector<uint16_t> ah, bh, biash;
  if (dtype == TIDE_BF16) ah = to_bf16(a), bh = to_bf16(b), biash = to_bf16(bias);
  std::vector<float> want(nc), wa(nc);
  CHECK_OK(cpu().matmul->gemm_epilogue(want.data(), gelu ? wa.data() : nullptr, a.data(), b.data(), bias.data(), TIDE_F32, m,
                                       n, k, ta, lda, tb, ldb, epi));
  if (dtype == TIDE_F32) {
    Dev da = upload(a), db = upload(b), dbias = upload(bias), dc(nc * 4), daux(nc * 4);
    CHECK_OK(cuda().matmul->gemm_epilogue(dc.p, gelu ? daux.p : nullptr, da.p, db.p, dbias.p, dtype, m, n, k, ta, lda, tb, ldb, epi));
    expect_close(download<float>(dc, nc), want, 1e-5, 1e-5 * (double)k, what);
    if (gelu) expect_close(download<float>(daux, nc), wa, 1e-5, 1e-5 * (double)k, what);
  } else {
    Dev da = upload(ah), db = upload(bh), dbias = upload(biash), dc(nc * 2), daux(nc * 2);
    CHECK_OK(cuda().matmul->gemm_epilogue(dc.p, gelu ? daux.p : nullptr, da.p, db.p, dbias.p, dtype, m, n, k, ta, lda, tb, ldb, epi));
    expect_close(from_bf16(download<uint16_t>(dc, nc)), want, 8e-3, 8e-3, what);
    if (gelu) expect_close(from_bf16(download<uint16_t>(daux, nc)), wa, 8e-3, 8e-3, what);
  }
}

// One weight gradient with its bias gradient: C against the CPU's product, dbias against sums in double.
void run_bgrad(int32_t dtype, int64_t m, int64_t n, int64_t k, int32_t ta, int32_t tb, int32_t bg) {
  Rng r((uint64_t)(m * 31 + n * 1013 + k * 7 + ta * 2 + tb + bg * 100 + dtype * 10000));
  int64_t lda = ta ? m : k, ldb = tb ? k : n;
  size_t na = (size_t)(m * k), nbv = (size_t)(k * n), nc = (size_t)(m * n);
  int64_t len = bg == TIDE_BGRAD_A ? m : n;
  std::vector<float> a = r.normal_vec<float>(na), b = r.normal_vec<float>(nbv);
  std::vector<uint16_t> ah, bh;
  if (dtype == TIDE_BF16) ah = to_bf16(a), bh = to_bf16(b);
  char what[160];
  snprintf(what, sizeof what, "gemm_bgrad dtype %d m %lld n %lld k %lld trans %d%d bgrad %d", dtype, (long long)m, (long long)n,
           (long long)k, ta, tb, bg);
  // the sums of op(A)'s rows or op(B)'s columns over k
  std::vector<double> sums((size_t)len, 0.0);
  for (int64_t i = 0; i < len; i++)
    for (int64_t p = 0; p < k; p++)
      sums[i] += bg == TIDE_BGRAD_A ? a[ta ? p * lda + i : i * lda + p] : b[tb ? i * ldb + p : p * ldb + i];
  std::vector<float> want(nc);
  CHECK_OK(cpu().matmul->gemm_batched(want.data(), a.data(), b.data(), TIDE_F32, m, n, k, ta, lda, tb, ldb, 0, nullptr, nullptr,
                                      nullptr));
  int es = tide_dtype_size(dtype);
  Dev dc(nc * es), dbias(len * es);
  Dev da = dtype == TIDE_F32 ? upload(a) : dtype == TIDE_BF16 ? upload(ah) : upload(std::vector<double>(a.begin(), a.end()));
  Dev db = dtype == TIDE_F32 ? upload(b) : dtype == TIDE_BF16 ? upload(bh) : upload(std::vector<double>(b.begin(), b.end()));
  CHECK_OK(cuda().matmul->gemm_bgrad(dc.p, bg ? dbias.p : nullptr, da.p, db.p, dtype, m, n, k, ta, lda, tb, ldb, bg));
  std::vector<float> got(nc), gb((size_t)len);
  if (dtype == TIDE_F32) got = download<float>(dc, nc), gb = bg ? download<float>(dbias, len) : gb;
  else if (dtype == TIDE_BF16) got = from_bf16(download<uint16_t>(dc, nc)), gb = bg ? from_bf16(download<uint16_t>(dbias, len)) : gb;
  else {
    auto g64 = download<double>(dc, nc);
    for (size_t i = 0; i < nc; i++) got[i] = (float)g64[i];
    if (bg) {
      auto b64 = download<double>(dbias, len);
      for (int64_t i = 0; i < len; i++) gb[i] = (float)b64[i];
    }
  }
  double tol = dtype == TIDE_BF16 ? 8e-3 : 1e-5;
  expect_close(got, want, tol, tol * (double)k, what);
  if (bg) {
    std::vector<float> ws(sums.begin(), sums.end());
    expect_close(gb, ws, tol, tol * (double)k, what);
  }
}

}  // namespace

KTEST(linear_epilogue_bias_gelu_vs_cpu) {
  // n = 16, 24: cuBLASLt's epilogues; n = 9, 1: GELU falls back (its aux ld must be a multiple of 8);
  // f64: the fallback kernels (64F epilogues are not emulated)
  const int64_t sizes[][3] = {{1, 1, 1}, {17, 16, 33}, {5, 9, 7}, {33, 24, 17}, {3, 1, 5}};
  const int32_t epis[] = {0, TIDE_EPI_BIAS, TIDE_EPI_GELU, TIDE_EPI_BIAS | TIDE_EPI_GELU};
  for (int32_t dt : kFloat)
    for (auto &s : sizes)
      for (int32_t ta = 0; ta < 2; ta++)
        for (int32_t tb = 0; tb < 2; tb++)
          for (int32_t e : epis) run_epilogue(dt, s[0], s[1], s[2], ta, tb, e);
}

KTEST(linear_bgrad_vs_sums) {
  const int64_t sizes[][3] = {{1, 1, 1}, {16, 9, 33}, {7, 24, 5}, {33, 17, 17}};
  for (int32_t dt : kFloat)
    for (auto &s : sizes)
      for (int32_t ta = 0; ta < 2; ta++)
        for (int32_t tb = 0; tb < 2; tb++)
          for (int32_t bg : {TIDE_BGRAD_NONE, TIDE_BGRAD_A, TIDE_BGRAD_B}) run_bgrad(dt, s[0], s[1], s[2], ta, tb, bg);
}

KTEST(linear_bad_input) {
  Dev a(64), b(64), c(64), bias(64);
  CHECK(cpu().matmul->gemm_bgrad == nullptr, "the CPU has a bias-gradient GEMM (the op layer's sum is its path)");
  CHECK_FAILS(cuda().matmul->gemm_epilogue(c.p, nullptr, a.p, b.p, bias.p, TIDE_F16, 2, 2, 2, 0, 2, 0, 2, TIDE_EPI_BIAS),
              "f32, f64 or bf16");
  CHECK_FAILS(cuda().matmul->gemm_epilogue(c.p, nullptr, a.p, b.p, bias.p, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, TIDE_EPI_GELU),
              "without its bias or aux");
  CHECK_FAILS(cuda().matmul->gemm_epilogue(c.p, nullptr, a.p, b.p, nullptr, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, TIDE_EPI_BIAS),
              "without its bias or aux");
  CHECK_FAILS(cuda().matmul->gemm_epilogue(c.p, nullptr, a.p, b.p, nullptr, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, 8), "unknown epilogue");
  CHECK_FAILS(cpu().matmul->gemm_epilogue(c.p, nullptr, a.p, b.p, nullptr, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, TIDE_EPI_GELU),
              "without its bias or aux");
  CHECK_FAILS(cuda().matmul->gemm_bgrad(c.p, nullptr, a.p, b.p, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, TIDE_BGRAD_A), "no buffer");
  CHECK_FAILS(cuda().matmul->gemm_bgrad(c.p, bias.p, a.p, b.p, TIDE_F32, 2, 2, 2, 0, 2, 0, 2, 5), "unknown bias gradient");
}

KTEST(linear_epilogues_same_bits_under_two_schedules) {
  // each path: cuBLASLt's GELU_AUX_BIAS (n = 16), the fallback GELU kernel (n = 9), BGRADB (f32), the fallback sum (f64)
  Rng r(21);
  int64_t m = 13, k = 19;
  for (int64_t n : {16, 9}) {
    auto a = r.normal_vec<float>((size_t)(m * k)), b = r.normal_vec<float>((size_t)(k * n)), bias = r.normal_vec<float>((size_t)n);
    Dev da = upload(a), db = upload(b), dbias = upload(bias);
    std::vector<float> runs[2][2];
    for (int s = 0; s < 2; s++) {
      kt::schedule_seed((uint64_t)s + 1);
      Dev dc((size_t)(m * n) * 4), daux((size_t)(m * n) * 4);
      CHECK_OK(cuda().matmul->gemm_epilogue(dc.p, daux.p, da.p, db.p, dbias.p, TIDE_F32, m, n, k, 0, k, 0, n,
                                            TIDE_EPI_BIAS | TIDE_EPI_GELU));
      runs[s][0] = download<float>(dc, (size_t)(m * n)), runs[s][1] = download<float>(daux, (size_t)(m * n));
    }
    expect_bits(runs[0][0], runs[1][0], "gemm_epilogue C under two schedules");
    expect_bits(runs[0][1], runs[1][1], "gemm_epilogue aux under two schedules");
  }
  auto x = r.normal_vec<float>(40 * 7);
  std::vector<double> x64(x.begin(), x.end());
  for (int32_t dt : {TIDE_F32, TIDE_F64}) {
    Dev dx = dt == TIDE_F32 ? upload(x) : upload(x64);
    int es = tide_dtype_size(dt);
    std::vector<unsigned char> got[2];
    for (int s = 0; s < 2; s++) {
      kt::schedule_seed((uint64_t)s + 1);
      Dev dc(7 * 7 * es), dbias(7 * es);
      // x^T x with the column sums of x (its op(B) over k = 40)
      CHECK_OK(cuda().matmul->gemm_bgrad(dc.p, dbias.p, dx.p, dx.p, dt, 7, 7, 40, 1, 7, 0, 7, TIDE_BGRAD_B));
      got[s] = download<unsigned char>(dbias, 7 * es);
    }
    expect_bits(got[0], got[1], "bias gradient under two schedules");
  }
}

KTEST(linear_heuristic_cached_per_problem) {
  if (!tide_cublaslt_emu_heuristic_calls) return;  // the emulator counts its heuristic queries
  Rng r(23);
  int64_t m = 8, n = 16, k = 8;
  auto a = r.normal_vec<float>(64), b = r.normal_vec<float>(128), bias = r.normal_vec<float>(16);
  Dev da = upload(a), db = upload(b), dbias = upload(bias), dc(m * n * 4), daux(m * n * 4);
  auto call = [&](int64_t mm) {
    CHECK_OK(cuda().matmul->gemm_epilogue(dc.p, daux.p, da.p, db.p, dbias.p, TIDE_F32, mm, n, k, 0, k, 0, n,
                                          TIDE_EPI_BIAS | TIDE_EPI_GELU));
  };
  call(m);
  uint64_t before = tide_cublaslt_emu_heuristic_calls();
  call(m);
  call(m);
  CHECK(tide_cublaslt_emu_heuristic_calls() == before, "a repeated problem queried the heuristic again");
  call(m - 1);  // another shape: one more query
  CHECK(tide_cublaslt_emu_heuristic_calls() == before + 1, "a new problem made %llu queries",
        (unsigned long long)(tide_cublaslt_emu_heuristic_calls() - before));
}

// The emulated cuBLASLt's epilogue rules: what cublasLt.h documents, refused as the library refuses it.
KTEST(cublaslt_emulator_epilogue_refusals) {
  if (!kt::emulated()) return;
  const tide_cublaslt_api *lt = tide_cublaslt();
  tide_lt_handle h;
  CHECK(lt->Create(&h) == TIDE_LT_SUCCESS, "create");
  tide_lt_layout a, b, c;
  lt->MatrixLayoutCreate(&a, TIDE_LT_R_32F, 8, 3, 8);  // 8 x 3
  lt->MatrixLayoutCreate(&b, TIDE_LT_R_32F, 3, 5, 3);  // 3 x 5
  lt->MatrixLayoutCreate(&c, TIDE_LT_R_32F, 8, 5, 8);  // 8 x 5
  tide_lt_pref p;
  lt->MatmulPreferenceCreate(&p);
  uint64_t ws = 1 << 20;
  lt->MatmulPreferenceSetAttribute(p, TIDE_LT_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  Dev bias(64), aux(8 * 5 * 4);
  auto heuristic = [&](uint32_t epi, void *bp, void *ap, int64_t ld, int32_t btype) {
    tide_lt_desc d;
    lt->MatmulDescCreate(&d, TIDE_LT_COMPUTE_32F, TIDE_LT_R_32F);
    lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_EPILOGUE, &epi, sizeof epi);
    if (bp) lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_BIAS_POINTER, &bp, sizeof bp);
    if (ap) lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_EPILOGUE_AUX_POINTER, &ap, sizeof ap);
    if (ld) lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld);
    if (btype >= 0) lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_BIAS_DATA_TYPE, &btype, sizeof btype);
    tide_lt_heuristic res;
    int found = 0;
    tide_lt_status st = lt->MatmulAlgoGetHeuristic(h, d, a, b, c, c, p, 1, &res, &found);
    lt->MatmulDescDestroy(d);
    return st;
  };
  CHECK(heuristic(TIDE_LT_EPILOGUE_GELU_AUX_BIAS, bias.p, aux.p, 8, -1) == TIDE_LT_SUCCESS, "GELU_AUX_BIAS refused: %s",
        lt->GetStatusString(TIDE_LT_INVALID_VALUE));
  CHECK(heuristic(TIDE_LT_EPILOGUE_BIAS, bias.p, nullptr, 0, TIDE_LT_R_16BF) == TIDE_LT_NOT_SUPPORTED, "a bf16 bias with f32 D taken");
  CHECK(strstr(lt->GetStatusString(TIDE_LT_NOT_SUPPORTED), "bias type") != nullptr, "reason: %s",
        lt->GetStatusString(TIDE_LT_NOT_SUPPORTED));
  CHECK(heuristic(TIDE_LT_EPILOGUE_BIAS, nullptr, nullptr, 0, -1) == TIDE_LT_INVALID_VALUE, "BIAS without a bias taken");
  CHECK(heuristic(TIDE_LT_EPILOGUE_GELU_AUX_BIAS, bias.p, nullptr, 8, -1) == TIDE_LT_INVALID_VALUE, "GELU_AUX without aux taken");
  CHECK(strstr(lt->GetStatusString(TIDE_LT_INVALID_VALUE), "AUX_POINTER") != nullptr, "reason: %s",
        lt->GetStatusString(TIDE_LT_INVALID_VALUE));
  CHECK(heuristic(TIDE_LT_EPILOGUE_GELU_AUX, nullptr, aux.p, 12, -1) == TIDE_LT_INVALID_VALUE, "aux ld 12 taken");
  CHECK(heuristic(TIDE_LT_EPILOGUE_GELU_AUX, nullptr, aux.p, 0, -1) == TIDE_LT_INVALID_VALUE, "aux ld 0 taken");
  CHECK(heuristic(TIDE_LT_EPILOGUE_BGRADB, nullptr, nullptr, 0, -1) == TIDE_LT_INVALID_VALUE, "BGRADB without its output");
  CHECK(heuristic(136 /* DRELU */, bias.p, aux.p, 8, -1) == TIDE_LT_NOT_SUPPORTED, "an unemulated epilogue taken");
  // the heuristic saw a 256-byte aligned bias: one 4 bytes off is refused at the call
  {
    tide_lt_desc d;
    lt->MatmulDescCreate(&d, TIDE_LT_COMPUTE_32F, TIDE_LT_R_32F);
    uint32_t epi = TIDE_LT_EPILOGUE_BIAS;
    void *bp = bias.p;
    lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_EPILOGUE, &epi, sizeof epi);
    lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_BIAS_POINTER, &bp, sizeof bp);
    tide_lt_heuristic res;
    int found = 0;
    CHECK(lt->MatmulAlgoGetHeuristic(h, d, a, b, c, c, p, 1, &res, &found) == TIDE_LT_SUCCESS, "heuristic");
    Dev da(8 * 3 * 4), db(3 * 5 * 4), dc(8 * 5 * 4), dw(ws);
    float one = 1, zero = 0;
    CHECK(lt->Matmul(h, d, &one, da.p, a, db.p, b, &zero, dc.p, c, dc.p, c, &res.algo, dw.p, ws, nullptr) == TIDE_LT_SUCCESS,
          "matmul with a bias");
    bp = (char *)bias.p + 4;
    lt->MatmulDescSetAttribute(d, TIDE_LT_DESC_BIAS_POINTER, &bp, sizeof bp);
    CHECK(lt->Matmul(h, d, &one, da.p, a, db.p, b, &zero, dc.p, c, dc.p, c, &res.algo, dw.p, ws, nullptr) ==
              TIDE_LT_INVALID_VALUE, "a less aligned bias taken");
    lt->MatmulDescDestroy(d);
  }
  lt->MatmulPreferenceDestroy(p);
  lt->MatrixLayoutDestroy(a), lt->MatrixLayoutDestroy(b), lt->MatrixLayoutDestroy(c);
  lt->Destroy(h);
}
