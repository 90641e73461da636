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
