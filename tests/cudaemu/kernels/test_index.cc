// The index family (index_select, gather, scatter_add, masked_fill), the
// embedding family (check_ids, forward, backward) and the adamw family
// (adamw_step, norm2) on CUDA against the CPU kernels.
#include "harness.h"

#include <algorithm>

static const int32_t kIdxDtypes[] = {TIDE_I64, TIDE_I32, TIDE_U8, TIDE_U16};
static const int32_t kAllDtypes[] = {TIDE_F32, TIDE_F64, TIDE_BF16, TIDE_F16, TIDE_I32, TIDE_I64, TIDE_U8, TIDE_BOOL, TIDE_U16};

// n index values in [lo, hi) stored in dtype idt, one every `step` elements (the gaps hold garbage 0xFF)
static std::vector<unsigned char> index_bytes(Rng &r, int32_t idt, int64_t n, int64_t step, int64_t lo, int64_t hi) {
  int es = tide_dtype_size(idt);
  std::vector<unsigned char> b((size_t)std::max<int64_t>(n * step, 1) * es, 0xFF);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = r.randint(lo, hi);
    char *p = (char *)b.data() + i * step * es;
    switch (idt) {
      case TIDE_I64: memcpy(p, &v, 8); break;
      case TIDE_I32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
      case TIDE_U16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
      default: *p = (char)(uint8_t)v; break;
    }
  }
  return b;
}

// random elements of dtype dt (n of them), as bytes
static std::vector<unsigned char> value_bytes(Rng &r, int32_t dt, int64_t n) {
  int es = tide_dtype_size(dt);
  std::vector<unsigned char> b((size_t)std::max<int64_t>(n, 1) * es);
  for (int64_t i = 0; i < n; i++) tide_store_f64((char *)b.data() + i * es, dt, dt >= TIDE_I32 ? (double)r.randint(0, 200) : r.normal());
  return b;
}

// ---- index_select -------------------------------------------------------------------------

KTEST(index_select_parity) {
  Rng r(11);
  // a [4, 5, 3] tensor read through a permuted view of a [3, 5, 4] buffer (strides 1, 4, 20)
  std::vector<int64_t> shape = {4, 5, 3}, pst = {1, 4, 20}, cst = {15, 3, 1};
  for (int32_t dt : {TIDE_F32, TIDE_BF16, TIDE_F64, TIDE_U8})
    for (int32_t idt : kIdxDtypes)
      for (int32_t dim = 0; dim < 3; dim++)
        for (int64_t n : {0, 1, 7})
          for (const auto *st : {&pst, &cst}) {
            int es = tide_dtype_size(dt);
            auto a = value_bytes(r, dt, 60);
            auto ix = index_bytes(r, idt, n, 2, 0, shape[dim]);  // index stride 2
            Dev da = upload(a), di = upload(ix);
            int64_t total = 60 / shape[dim] * n;
            Dev dout(std::max<int64_t>(total, 1) * es);
            std::vector<unsigned char> want(std::max<int64_t>(total, 1) * es, 0xFF);
            CHECK_OK(cuda().index->index_select(dout.p, da.p, 3, shape.data(), st->data(), es, dim, di.p, n, 2, idt));
            CHECK_OK(cpu().index->index_select(want.data(), a.data(), 3, shape.data(), st->data(), es, dim, ix.data(), n, 2, idt));
            expect_bits(download<unsigned char>(dout, want.size()), want, "index_select");
          }
  // a broadcast source (stride 0 along a dim) and a 1-d source
  std::vector<int64_t> bshape = {3, 6}, bst = {0, 1};
  auto a = r.normal_vec<float>(6);
  auto ix = index_bytes(r, TIDE_I64, 5, 1, 0, 3);
  Dev da = upload(a), di = upload(ix), dout(5 * 6 * 4);
  std::vector<float> want(30);
  CHECK_OK(cuda().index->index_select(dout.p, da.p, 2, bshape.data(), bst.data(), 4, 0, di.p, 5, 1, TIDE_I64));
  CHECK_OK(cpu().index->index_select(want.data(), a.data(), 2, bshape.data(), bst.data(), 4, 0, ix.data(), 5, 1, TIDE_I64));
  expect_bits(download<float>(dout, 30), want, "index_select broadcast");
}

KTEST(index_select_bad_index) {
  std::vector<int64_t> shape = {4, 3}, st = {3, 1};
  std::vector<float> a(12, 1.0f);
  for (int64_t badv : {4, -1, 1000}) {
    std::vector<int64_t> ix = {0, 2, badv, 1, 77};
    Dev da = upload(a), di = upload(ix), dout(5 * 3 * 4);
    std::vector<float> want(15);
    CHECK_FAILS(cpu().index->index_select(want.data(), a.data(), 2, shape.data(), st.data(), 4, 0, ix.data(), 5, 1, TIDE_I64), "index_select");
    std::string cpu_msg = tide_last_error();
    CHECK_FAILS(cuda().index->index_select(dout.p, da.p, 2, shape.data(), st.data(), 4, 0, di.p, 5, 1, TIDE_I64), "index_select");
    CHECK(cpu_msg == tide_last_error(), "cuda says '%s', cpu '%s'", tide_last_error(), cpu_msg.c_str());
    // nothing written
    expect_bits(download<unsigned char>(dout, 60), std::vector<unsigned char>(60, 0xFF), "index_select wrote before failing");
  }
  // an empty dimension: every index is bad
  std::vector<int64_t> eshape = {0, 3};
  std::vector<int32_t> ix = {0};
  Dev da(4), di = upload(ix), dout(12);
  CHECK_FAILS(cuda().index->index_select(dout.p, da.p, 2, eshape.data(), st.data(), 4, 0, di.p, 1, 1, TIDE_I32), "which has size 0");
}

// ---- gather ---------------------------------------------------------------------------------

KTEST(gather_parity) {
  Rng r(12);
  // a: [5, 6] as a transposed view of a [6, 5] buffer; index: [4, 3] inside a [4, 6] buffer
  std::vector<int64_t> ashape = {5, 6}, ast = {1, 5};
  std::vector<int64_t> ishape = {4, 3}, ist = {6, 2};
  for (int32_t dt : {TIDE_F32, TIDE_BF16, TIDE_F64, TIDE_I64})
    for (int32_t idt : kIdxDtypes)
      for (int32_t dim = 0; dim < 2; dim++) {
        int es = tide_dtype_size(dt);
        auto a = value_bytes(r, dt, 30);
        auto ix = index_bytes(r, idt, 24, 1, 0, ashape[dim]);
        Dev da = upload(a), di = upload(ix), dout(12 * es);
        std::vector<unsigned char> want(12 * es);
        CHECK_OK(cuda().index->gather(dout.p, 2, ishape.data(), da.p, ast.data(), ashape[dim], es, dim, di.p, ist.data(), idt));
        CHECK_OK(cpu().index->gather(want.data(), 2, ishape.data(), a.data(), ast.data(), ashape[dim], es, dim, ix.data(), ist.data(), idt));
        expect_bits(download<unsigned char>(dout, 12 * es), want, "gather");
      }
  // 0-d: one element, asize 1
  std::vector<float> a = {3.5f};
  std::vector<int64_t> ix = {0};
  Dev da = upload(a), di = upload(ix), dout(4);
  CHECK_OK(cuda().index->gather(dout.p, 0, nullptr, da.p, nullptr, 1, 4, 0, di.p, nullptr, TIDE_I64));
  expect_bits(download<float>(dout, 1), a, "gather 0-d");
  // size 0 writes nothing
  std::vector<int64_t> zshape = {0, 3}, zst = {3, 1};
  CHECK_OK(cuda().index->gather(dout.p, 2, zshape.data(), da.p, zst.data(), 1, 4, 0, di.p, zst.data(), TIDE_I64));
  expect_bits(download<float>(dout, 1), a, "gather size 0");
}

KTEST(gather_bad_index) {
  std::vector<int64_t> shape = {2, 3}, st = {3, 1};
  std::vector<float> a(6, 2.0f);
  std::vector<int32_t> ix = {0, 1, 2, 1, -3, 9};
  Dev da = upload(a), di = upload(ix), dout(24);
  CHECK_FAILS(cuda().index->gather(dout.p, 2, shape.data(), da.p, st.data(), 3, 4, 1, di.p, st.data(), TIDE_I32),
              "gather: index -3 is out of range for dimension 2 of size 3");
}

// ---- scatter_add_ ---------------------------------------------------------------------------

struct ScatterCase {
  int32_t adt, sdt, dim;
};

KTEST(scatter_add_parity) {
  Rng r(13);
  // a: [5, 4] (a transposed view of a [4, 5] buffer); index and src [7, 4] along dim 0 or [5, 9] along dim 1
  const ScatterCase cases[] = {{TIDE_F32, TIDE_F32, 0}, {TIDE_F32, TIDE_F32, 1}, {TIDE_F64, TIDE_F32, 0},
                               {TIDE_BF16, TIDE_BF16, 1}, {TIDE_F16, TIDE_F32, 0}, {TIDE_I32, TIDE_I64, 0},
                               {TIDE_I64, TIDE_I64, 1}, {TIDE_U8, TIDE_U8, 0}, {TIDE_BOOL, TIDE_BOOL, 1}};
  std::vector<int64_t> ast = {1, 5};
  for (const auto &c : cases)
    for (int32_t idt : kIdxDtypes) {
      int32_t dim = c.dim;
      std::vector<int64_t> ishape = dim == 0 ? std::vector<int64_t>{7, 4} : std::vector<int64_t>{5, 9};
      int64_t size = dim == 0 ? 5 : 4, inum = ishape[0] * ishape[1];
      // index contiguous; src a transposed view
      std::vector<int64_t> ist = {ishape[1], 1}, sst = {1, ishape[0]};
      int aes = tide_dtype_size(c.adt);
      auto a = value_bytes(r, c.adt, 20);
      auto src = value_bytes(r, c.sdt, inum);
      auto ix = index_bytes(r, idt, inum, 1, 0, size);
      Dev da = upload(a), di = upload(ix), ds = upload(src);
      std::vector<unsigned char> want = a;
      CHECK_OK(cuda().index->scatter_add(da.p, c.adt, ast.data(), size, 2, ishape.data(), dim, di.p, ist.data(), idt, ds.p, sst.data(), c.sdt));
      CHECK_OK(cpu().index->scatter_add(want.data(), c.adt, ast.data(), size, 2, ishape.data(), dim, ix.data(), ist.data(), idt, src.data(), sst.data(), c.sdt));
      char what[64];
      snprintf(what, sizeof what, "scatter_add %d += %d dim %d idx %d", c.adt, c.sdt, dim, idt);
      expect_bits(download<unsigned char>(da, 20 * aes), want, what);
    }
}

// many sources per destination (a 3-row destination, 300 sources per column): the order of
// addition shows in f32 bits, so equal bits under two schedules and with the CPU mean index order
KTEST(scatter_add_deterministic) {
  Rng r(14);
  std::vector<int64_t> ishape = {300, 33}, ist = {33, 1}, ast = {33, 1};
  auto src = r.normal_vec<float>(300 * 33, 1e3);
  auto ix = index_bytes(r, TIDE_I64, 300 * 33, 1, 0, 3);
  std::vector<float> a(99, 0.25f);
  std::vector<float> want = a;
  CHECK_OK(cpu().index->scatter_add(want.data(), TIDE_F32, ast.data(), 3, 2, ishape.data(), 0, ix.data(), ist.data(), TIDE_I64, src.data(), ist.data(), TIDE_F32));
  Dev di = upload(ix), ds = upload(src);
  std::vector<std::vector<float>> got;
  for (uint64_t seed : {1, 2}) {
    kt::schedule_seed(seed);
    Dev da = upload(a);
    CHECK_OK(cuda().index->scatter_add(da.p, TIDE_F32, ast.data(), 3, 2, ishape.data(), 0, di.p, ist.data(), TIDE_I64, ds.p, ist.data(), TIDE_F32));
    got.push_back(download<float>(da, 99));
  }
  expect_bits(got[0], got[1], "scatter_add across seeds");
  expect_bits(got[0], want, "scatter_add vs cpu");
  kt::schedule_seed(1);
}

KTEST(scatter_add_bad_index_changes_nothing) {
  std::vector<int64_t> ishape = {4, 2}, ist = {2, 1}, ast = {2, 1};
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, src(8, 1.0f);
  std::vector<int64_t> ix = {0, 1, 2, 0, 1, 3, 2, -1};  // 3 and -1 are bad along dim 0 of size 3
  Dev da = upload(a), di = upload(ix), ds = upload(src);
  std::vector<float> ca = a;
  CHECK_FAILS(cpu().index->scatter_add(ca.data(), TIDE_F32, ast.data(), 3, 2, ishape.data(), 0, ix.data(), ist.data(), TIDE_I64, src.data(), ist.data(), TIDE_F32), "scatter_add_");
  std::string cpu_msg = tide_last_error();
  CHECK_FAILS(cuda().index->scatter_add(da.p, TIDE_F32, ast.data(), 3, 2, ishape.data(), 0, di.p, ist.data(), TIDE_I64, ds.p, ist.data(), TIDE_F32), "scatter_add_: index 3 is out of range");
  CHECK(cpu_msg == tide_last_error(), "cuda says '%s', cpu '%s'", tide_last_error(), cpu_msg.c_str());
  expect_bits(download<float>(da, 6), a, "scatter_add changed the destination before failing");
}

// ---- masked_fill_ ---------------------------------------------------------------------------

KTEST(masked_fill_parity) {
  Rng r(15);
  // a: [6, 5] view with row stride 7 (gaps stay as they were); mask [1, 5] broadcast over rows, or full [6, 5]
  std::vector<int64_t> shape = {6, 5}, ast = {7, 1};
  for (int32_t dt : kAllDtypes)
    for (int full = 0; full < 2; full++)
      for (double value : {-1.5, 7.0, 1e30}) {
        int es = tide_dtype_size(dt);
        auto a = value_bytes(r, dt, 42);
        std::vector<unsigned char> mask(30);
        for (auto &m : mask) m = (unsigned char)(r.randint(0, 3) == 0 ? r.randint(1, 4) : 0);  // nonzero bytes 1..3
        std::vector<int64_t> mst = full ? std::vector<int64_t>{5, 1} : std::vector<int64_t>{0, 1};
        Dev da = upload(a), dm = upload(mask);
        std::vector<unsigned char> want = a;
        CHECK_OK(cuda().index->masked_fill(da.p, 2, shape.data(), ast.data(), dt, dm.p, mst.data(), value));
        CHECK_OK(cpu().index->masked_fill(want.data(), 2, shape.data(), ast.data(), dt, mask.data(), mst.data(), value));
        expect_bits(download<unsigned char>(da, 42 * es), want, "masked_fill");
      }
  // size 0
  std::vector<int64_t> z = {0, 4}, zst = {4, 1};
  Dev d(16);
  CHECK_OK(cuda().index->masked_fill(d.p, 2, z.data(), zst.data(), TIDE_F32, d.p, zst.data(), 1.0));
  expect_bits(download<unsigned char>(d, 16), std::vector<unsigned char>(16, 0xFF), "empty masked_fill");
}

// ---- embedding ------------------------------------------------------------------------------

KTEST(embedding_check_ids) {
  std::vector<int64_t> ok = {0, 5, 9, 3}, bad = {0, 5, 10, -2, 3, 11};
  Dev dok = upload(ok), dbad = upload(bad);
  int64_t v = 12345;
  CHECK(cuda().embedding->embedding_check_ids(dok.as<int64_t>(), 4, 10, &v) == 0, "in-range ids reported bad");
  CHECK(v == 12345, "bad written when all ids are fine");
  CHECK(cuda().embedding->embedding_check_ids(dbad.as<int64_t>(), 6, 10, &v) == 1, "bad ids not found");
  CHECK(v == 10, "first bad id: got %lld, expected 10", (long long)v);
  CHECK(cuda().embedding->embedding_check_ids(dbad.as<int64_t>(), 0, 10, &v) == 0, "no ids");
  CHECK(cuda().embedding->embedding_check_ids(dok.as<int64_t>(), 4, 0, &v) == 1 && v == 0, "no rows");
}

KTEST(embedding_forward_parity) {
  Rng r(16);
  const int64_t V = 11, C = 9, n = 23;
  std::vector<int64_t> ids(n);
  for (auto &i : ids) i = r.randint(0, V);
  Dev dids = upload(ids);
  for (int32_t dt : {TIDE_F32, TIDE_BF16, TIDE_F64, TIDE_F16})
    for (int transposed = 0; transposed < 2; transposed++) {
      int es = tide_dtype_size(dt);
      auto w = value_bytes(r, dt, V * C);
      int64_t rs = transposed ? 1 : C, cs = transposed ? V : 1;  // a [V, C] view of a [C, V] buffer
      Dev dw = upload(w), dout(n * C * es);
      std::vector<unsigned char> want(n * C * es);
      CHECK_OK(cuda().embedding->embedding_forward(dout.p, dw.p, dids.as<int64_t>(), n, C, rs, cs, dt));
      CHECK_OK(cpu().embedding->embedding_forward(want.data(), w.data(), ids.data(), n, C, rs, cs, dt));
      expect_bits(download<unsigned char>(dout, n * C * es), want, "embedding forward");
    }
  Dev dw(8), dout(8);
  CHECK_OK(cuda().embedding->embedding_forward(dout.p, dw.p, dids.as<int64_t>(), 0, 4, 4, 1, TIDE_F32));
}

template <class T> static void embedding_backward_case(Rng &r, int64_t n, int64_t V, int64_t C, int32_t dt) {
  std::vector<int64_t> ids(n);
  for (auto &i : ids) i = r.randint(0, std::min<int64_t>(V, 5)) * (V / 5 > 0 ? V / 5 : 1) % V;  // few ids, many repeats
  auto g = r.normal_vec<T>(n * C, 100);
  Dev dids = upload(ids), dg = upload(g);
  std::vector<T> want(V * C);
  CHECK_OK(cpu().embedding->embedding_backward(want.data(), g.data(), ids.data(), n, V, C, dt));
  std::vector<std::vector<T>> got;
  for (uint64_t seed : {1, 2}) {
    kt::schedule_seed(seed);
    Dev dw(V * C * sizeof(T));
    CHECK_OK(cuda().embedding->embedding_backward(dw.p, dg.p, dids.as<int64_t>(), n, V, C, dt));
    got.push_back(download<T>(dw, V * C));
  }
  kt::schedule_seed(1);
  char what[80];
  snprintf(what, sizeof what, "embedding backward n %lld V %lld C %lld", (long long)n, (long long)V, (long long)C);
  expect_bits(got[0], want, what);
  expect_bits(got[0], got[1], "embedding backward across seeds");
}

KTEST(embedding_backward_parity) {
  Rng r(17);
  embedding_backward_case<float>(r, 300, 37, 150, TIDE_F32);   // two column tiles, chunks of ids
  embedding_backward_case<double>(r, 45, 7, 33, TIDE_F64);
  embedding_backward_case<float>(r, 1, 1, 1, TIDE_F32);
  embedding_backward_case<float>(r, 0, 6, 5, TIDE_F32);        // no ids: zeros
  embedding_backward_case<float>(r, 20, 700, 3, TIDE_F32);      // several rows per block
  Dev dw(8);
  CHECK_FAILS(cuda().embedding->embedding_backward(dw.p, dw.p, nullptr, 0, 1, 1, TIDE_BF16), "f32 or f64");
}

// ---- adamw ----------------------------------------------------------------------------------

template <class T> static void adamw_case(Rng &r, int32_t dt, double beta1, double wd, bool strided) {
  // operands [13, 17]: contiguous, or each its own view (transposed, row stride 20, ...)
  const int64_t R = 13, C = 17, N = R * C;
  std::vector<int64_t> shape = {R, C};
  std::vector<int64_t> st[4];
  int64_t room[4];
  if (strided) {
    st[0] = {1, R}, room[0] = N;            // transposed
    st[1] = {20, 1}, room[1] = R * 20;      // padded rows
    st[2] = {C * 2, 2}, room[2] = N * 2;    // every other element
    st[3] = {C, 1}, room[3] = N;
  } else {
    for (int k = 0; k < 4; k++) st[k] = {C, 1}, room[k] = N;
  }
  std::vector<T> h[4];
  h[0] = r.normal_vec<T>(room[0]);
  h[1] = r.normal_vec<T>(room[1], 0.1);
  h[2] = r.normal_vec<T>(room[2], 0.01);
  h[3] = r.uniform_vec<T>(room[3], 0, 1e-3);
  Dev d[4] = {upload(h[0]), upload(h[1]), upload(h[2]), upload(h[3])};
  for (int64_t step = 1; step <= 3; step++) {
    for (auto &x : h[1]) x = (T)r.normal(), x = x * (T)0.1;
    cudaMemcpy(d[1].p, h[1].data(), h[1].size() * sizeof(T), cudaMemcpyHostToDevice);
    CHECK_OK(cuda().adamw->adamw_step(d[0].p, d[1].p, d[2].p, d[3].p, dt, 2, shape.data(), st[0].data(), st[1].data(), st[2].data(), st[3].data(),
                                      1e-2, beta1, 0.999, 1e-8, wd, step));
    CHECK_OK(cpu().adamw->adamw_step(h[0].data(), h[1].data(), h[2].data(), h[3].data(), dt, 2, shape.data(), st[0].data(), st[1].data(), st[2].data(), st[3].data(),
                                     1e-2, beta1, 0.999, 1e-8, wd, step));
  }
  const char *names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  for (int k = 0; k < 4; k++) {
    char what[80];
    snprintf(what, sizeof what, "adamw %s dtype %d beta1 %g strided %d", names[k], dt, beta1, (int)strided);
    expect_bits(download<T>(d[k], room[k]), h[k], what);
  }
}

KTEST(adamw_step_parity) {
  Rng r(18);
  for (bool strided : {false, true})
    for (double beta1 : {0.9, 0.3}) {  // lerp weight 0.1 (first formula) and 0.7 (second)
      adamw_case<float>(r, TIDE_F32, beta1, 0.1, strided);
      adamw_case<double>(r, TIDE_F64, beta1, 0.0, strided);
    }
  // size 0 is a no-op; other dtypes are refused
  std::vector<int64_t> z = {0}, one = {1};
  Dev d(4);
  CHECK_OK(cuda().adamw->adamw_step(d.p, d.p, d.p, d.p, TIDE_F32, 1, z.data(), one.data(), one.data(), one.data(), one.data(), 1e-3, 0.9, 0.999, 1e-8, 0, 1));
  CHECK_FAILS(cuda().adamw->adamw_step(d.p, d.p, d.p, d.p, TIDE_BF16, 1, one.data(), one.data(), one.data(), one.data(), one.data(), 1e-3, 0.9, 0.999, 1e-8, 0, 1), "f32 or f64");
}

template <class T> static void norm2_case(Rng &r, int64_t n, int32_t dt, double rtol) {
  auto x = r.normal_vec<T>(n, 3);
  Dev dx = upload(x);
  T want = 0;
  CHECK_OK(cpu().adamw->norm2(&want, x.data(), n, dt));
  std::vector<std::vector<T>> got;
  for (uint64_t seed : {1, 2}) {
    kt::schedule_seed(seed);
    Dev dout(sizeof(T));
    CHECK_OK(cuda().adamw->norm2(dout.p, dx.p, n, dt));
    got.push_back(download<T>(dout, 1));
  }
  kt::schedule_seed(1);
  char what[64];
  snprintf(what, sizeof what, "norm2 n %lld dtype %d", (long long)n, dt);
  expect_close(got[0], std::vector<T>{want}, rtol, 0, what);
  expect_bits(got[0], got[1], "norm2 across seeds");
}

KTEST(norm2_parity) {
  Rng r(19);
  for (int64_t n : {0, 1, 5, 13, 1000, 70001}) {
    norm2_case<float>(r, n, TIDE_F32, 1e-5);  // the CPU sums in f32
    norm2_case<double>(r, n, TIDE_F64, 1e-14);
  }
  Dev d(8);
  CHECK_FAILS(cuda().adamw->norm2(d.p, d.p, 1, TIDE_BF16), "f32 or f64");
}
