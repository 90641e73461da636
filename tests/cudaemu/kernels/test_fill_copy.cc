// fill, arange and copy (every dtype pair, strided and broadcast views) on CUDA against the CPU.
#include "harness.h"

static const int32_t kDtypes[] = {TIDE_F32, TIDE_F64, TIDE_BF16, TIDE_F16, TIDE_I32, TIDE_I64, TIDE_U8, TIDE_BOOL, TIDE_U16};

KTEST(fill_strided_every_dtype) {
  // a [5, 7] view with row stride 9 inside a 5 x 9 buffer: the gaps must stay poisoned
  std::vector<int64_t> shape = {5, 7}, stride = {9, 1};
  for (int32_t dt : kDtypes) {
    int es = tide_dtype_size(dt);
    Dev d(45 * es);
    std::vector<unsigned char> want(45 * es, 0xFF);
    for (double v : {0.0, -2.5, 300.75, 1e30}) {
      CHECK_OK(cuda().fill->fill(d.p, dt, stride.data(), 2, shape.data(), v));
      CHECK_OK(cpu().fill->fill(want.data(), dt, stride.data(), 2, shape.data(), v));
      expect_bits(download<unsigned char>(d, 45 * es), want, "fill");
    }
  }
  // size 0 writes nothing
  std::vector<int64_t> empty = {0, 3}, est = {3, 1};
  Dev d(16);
  CHECK_OK(cuda().fill->fill(d.p, TIDE_F32, est.data(), 2, empty.data(), 1.0));
  expect_bits(download<unsigned char>(d, 16), std::vector<unsigned char>(16, 0xFF), "empty fill");
}

KTEST(arange_every_dtype) {
  for (int32_t dt : kDtypes) {
    if (dt == TIDE_BOOL) continue;
    int es = tide_dtype_size(dt);
    for (int64_t n : {1, 5, 1000}) {
      Dev d(n * es);
      std::vector<unsigned char> want(n * es);
      double start = dt == TIDE_I64 ? -7 : 0.5, step = dt >= TIDE_I32 ? 1 : 0.1;
      CHECK_OK(cuda().fill->arange(d.p, dt, n, start, step));
      CHECK_OK(cpu().fill->arange(want.data(), dt, n, start, step));
      expect_bits(download<unsigned char>(d, n * es), want, "arange");
    }
  }
}

KTEST(copy_every_dtype_pair) {
  Rng r(3);
  // source: a transposed [6, 5] view of a [5, 6] buffer; destination contiguous
  std::vector<int64_t> shape = {6, 5}, sst = {1, 6};
  std::vector<int64_t> dst_st = kt::contiguous_strides(shape);
  std::vector<double> vals(30);
  for (auto &v : vals) v = r.uniform(-300, 300);
  vals[0] = 1e10, vals[1] = -1e10, vals[2] = 0.5, vals[3] = -0.0, vals[4] = NAN;
  for (int32_t s : kDtypes)
    for (int32_t d : kDtypes) {
      int ses = tide_dtype_size(s), des = tide_dtype_size(d);
      std::vector<unsigned char> src(30 * ses);
      for (int i = 0; i < 30; i++) tide_store_f64((char *)src.data() + i * ses, s, vals[i]);
      Dev ds = upload(src), dd(30 * des);
      std::vector<unsigned char> want(30 * des);
      CHECK_OK(cuda().copy->copy(dd.p, d, dst_st.data(), ds.p, s, sst.data(), 2, shape.data()));
      CHECK_OK(cpu().copy->copy(want.data(), d, dst_st.data(), src.data(), s, sst.data(), 2, shape.data()));
      char what[64];
      snprintf(what, sizeof what, "copy dtype %d -> %d", s, d);
      expect_bits(download<unsigned char>(dd, 30 * des), want, what);
    }
}

KTEST(copy_broadcast_and_contiguous) {
  Rng r(4);
  // a [1, 4] row broadcast to [3, 4] (stride 0), and a contiguous same-dtype copy (the memcpy path)
  auto row = r.normal_vec<float>(4);
  std::vector<int64_t> shape = {3, 4}, sst = {0, 1}, dst = {4, 1};
  Dev s = upload(row), d(12 * 4);
  std::vector<float> want(12);
  CHECK_OK(cuda().copy->copy(d.p, TIDE_F32, dst.data(), s.p, TIDE_F32, sst.data(), 2, shape.data()));
  CHECK_OK(cpu().copy->copy(want.data(), TIDE_F32, dst.data(), row.data(), TIDE_F32, sst.data(), 2, shape.data()));
  expect_bits(download<float>(d, 12), want, "broadcast copy");
  auto x = r.normal_vec<double>(1000);
  std::vector<int64_t> n = {1000}, one = {1};
  Dev sx = upload(x), dx(8000);
  CHECK_OK(cuda().copy->copy(dx.p, TIDE_F64, one.data(), sx.p, TIDE_F64, one.data(), 1, n.data()));
  expect_bits(download<double>(dx, 1000), x, "contiguous copy");
}

KTEST(transfer_round_trip) {
  std::vector<int32_t> h(1000), back(1000, -1);
  for (int i = 0; i < 1000; i++) h[i] = i * 7 - 3;
  Dev d(4000);
  CHECK_OK(cuda().copy->transfer(d.p, h.data(), 4000, 1));
  CHECK_OK(cuda().copy->transfer(back.data(), d.p, 4000, 0));
  expect_bits(back, h, "transfer");
}
