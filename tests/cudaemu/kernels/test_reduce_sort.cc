// reduce (sum, mean, prod, max, min, argmax, argmin), cumsum, sort and topk on CUDA against the CPU kernels:
// every dtype, strided views, one dim and all elements, NaN, ties, size 0 and 1, long rows, determinism.
#include "harness.h"

static const int32_t kDtypes[] = {TIDE_F32, TIDE_F64, TIDE_BF16, TIDE_F16, TIDE_I32, TIDE_I64, TIDE_U8, TIDE_BOOL, TIDE_U16};
static const int32_t kOps[] = {TIDE_SUM, TIDE_MEAN, TIDE_MAX, TIDE_MIN, TIDE_ARGMAX, TIDE_ARGMIN, TIDE_PROD};

// The op layer's output dtype (runtime/ops/reduce.c).
static int32_t out_dtype(int32_t op, int32_t dt) {
  bool f = tide_is_float(dt);
  switch (op) {
    case TIDE_SUM: case TIDE_PROD: return f ? dt : TIDE_I64;
    case TIDE_MEAN: return f ? dt : TIDE_F32;
    case TIDE_MAX: case TIDE_MIN: return dt;
    default: return TIDE_I64;
  }
}

// n elements of dtype dt as bytes: values drawn with ties (a coarse grid), for floats some NaN, -0 and
// infinities when `specials`; prod-friendly values (near 1) when `near_one`.
static std::vector<unsigned char> make_input(Rng &r, int32_t dt, size_t n, bool specials, bool near_one) {
  int es = tide_dtype_size(dt);
  std::vector<unsigned char> b(n * es);
  for (size_t i = 0; i < n; i++) {
    double v;
    if (near_one) v = tide_is_float(dt) ? r.uniform(0.6, 1.5) : (double)r.randint(1, 3);
    else if (tide_is_float(dt)) v = round(r.normal() * 8) / 4;  // a coarse grid gives ties
    else if (dt == TIDE_BOOL) v = (double)r.randint(0, 2);
    else if (dt == TIDE_I32 || dt == TIDE_I64) v = (double)r.randint(-50, 50);
    else v = (double)r.randint(0, 200);
    if (specials && tide_is_float(dt)) {
      uint64_t c = r.next() % 40;
      if (c == 0) v = NAN;
      else if (c == 1) v = -0.0;
      else if (c == 2) v = INFINITY;
      else if (c == 3) v = -INFINITY;
    }
    tide_store_f64((char *)b.data() + i * es, dt, v);
  }
  return b;
}

static double tol_of(int32_t dt) {
  switch (dt) {
    case TIDE_F32: return 1e-6;
    case TIDE_F64: return 1e-12;
    case TIDE_BF16: return 1e-2;
    case TIDE_F16: return 2e-3;
    default: return 0;
  }
}

// Compares n outputs of dtype dt: floats within tol (NaN = NaN, -0 = +0), everything else bit for bit.
static void compare_out(const std::vector<unsigned char> &got, const std::vector<unsigned char> &want, int32_t dt,
                        size_t n, double tol, const char *what) {
  if (!tide_is_float(dt)) {
    expect_bits(got, want, what);
    return;
  }
  int es = tide_dtype_size(dt);
  std::vector<double> g(n), w(n);
  for (size_t i = 0; i < n; i++) {
    g[i] = tide_load_f64((const char *)got.data() + i * es, dt);
    w[i] = tide_load_f64((const char *)want.data() + i * es, dt);
  }
  expect_close(g.data(), w.data(), n, tol, tol == 0 ? 0 : tol * 1e-3, what);
}

// One reduce case: `buf` elements of storage viewed with shape/stride, reduced by op over dim (-1: all).
static void reduce_case(Rng &r, int32_t dt, int32_t op, std::vector<int64_t> shape, std::vector<int64_t> stride,
                        size_t buf, int32_t dim, bool specials = true, bool with_idx = true) {
  int32_t nd = (int32_t)shape.size();
  int32_t odt = out_dtype(op, dt);
  int oes = tide_dtype_size(odt);
  int64_t M = 1;
  if (dim >= 0) for (int32_t i = 0; i < nd; i++) if (i != dim) M *= shape[i];
  bool want_idx = with_idx && dim >= 0 && (op == TIDE_MAX || op == TIDE_MIN);
  auto in = make_input(r, dt, buf, specials, op == TIDE_PROD);
  Dev din = upload(in), dout(M * oes + 1), didx(M * 8 + 8);
  std::vector<unsigned char> want(M * oes + 1, 0xFF);
  std::vector<int64_t> widx(M + 1, -1);
  CHECK_OK(cuda().reduce->reduce(dout.p, want_idx ? didx.as<int64_t>() : nullptr, din.p, op, dt, odt, nd, shape.data(),
                                 stride.data(), dim));
  CHECK_OK(cpu().reduce->reduce(want.data(), want_idx ? widx.data() : nullptr, in.data(), op, dt, odt, nd, shape.data(),
                                stride.data(), dim));
  char what[160];
  snprintf(what, sizeof what, "reduce op %d dtype %d shape [%lld%s] dim %d", op, dt, nd ? (long long)shape[0] : 0LL,
           nd > 1 ? ", ..." : "", dim);
  double tol = (op == TIDE_MAX || op == TIDE_MIN) ? 0 : tol_of(odt);
  auto got = download<unsigned char>(dout, M * oes + 1);
  compare_out(got, want, odt, M, tol, what);
  CHECK(got[M * oes] == 0xFF, "%s: wrote past the output", what);
  if (want_idx) {
    auto gi = download<int64_t>(didx, M + 1);
    widx[M] = gi[M];  // past the end: compared as bytes below
    expect_bits(gi, widx, what);
    unsigned char tail[8];
    memcpy(tail, &gi[M], 8);
    CHECK(tail[0] == 0xFF, "%s: wrote past the indices", what);
  }
}

KTEST(reduce_every_op_and_dtype) {
  Rng r(11);
  for (int32_t dt : kDtypes)
    for (int32_t op : kOps) {
      // contiguous [5, 37]: over the rows (column mode), over the columns, every element
      reduce_case(r, dt, op, {5, 37}, {37, 1}, 185, 0);
      reduce_case(r, dt, op, {5, 37}, {37, 1}, 185, 1);
      reduce_case(r, dt, op, {5, 37}, {37, 1}, 185, -1);
      // a transposed [37, 5] view, and a [3, 4, 6] view with gaps and a negative-free odd stride
      reduce_case(r, dt, op, {37, 5}, {1, 37}, 185, 1);
      reduce_case(r, dt, op, {37, 5}, {1, 37}, 185, -1);
      reduce_case(r, dt, op, {3, 4, 6}, {60, 14, 2}, 180, 1);
      reduce_case(r, dt, op, {3, 4, 6}, {60, 14, 2}, 180, -1);
      // max/min over a dim without positions (amax, amin)
      if (op == TIDE_MAX || op == TIDE_MIN) reduce_case(r, dt, op, {37, 5}, {1, 37}, 185, 0, true, false);
      // size 1 and 0-d
      reduce_case(r, dt, op, {1}, {1}, 1, 0);
      reduce_case(r, dt, op, {}, {}, 1, -1);
    }
}

KTEST(reduce_broadcast_and_long_rows) {
  Rng r(12);
  for (int32_t op : kOps) {
    // a stride-0 (expanded) dim, reduced and kept
    reduce_case(r, TIDE_F32, op, {4, 9}, {0, 1}, 9, 0);
    reduce_case(r, TIDE_F32, op, {4, 9}, {1, 0}, 4, 1);
    // rows longer than a block's 256 lanes, and 300 outputs of 3 (several outputs per block)
    reduce_case(r, TIDE_F32, op, {3, 1000}, {1000, 1}, 3000, 1);
    reduce_case(r, TIDE_I32, op, {300, 3}, {3, 1}, 900, 1);
    reduce_case(r, TIDE_BF16, op, {20, 70}, {1, 20}, 1400, 0);
  }
  // few long reductions: the split into pieces and the second pass (strided and all elements)
  for (int32_t op : {TIDE_SUM, TIDE_MEAN, TIDE_MAX, TIDE_ARGMIN}) {
    reduce_case(r, TIDE_F32, op, {2, 40000}, {40000, 1}, 80000, 1, false);
    reduce_case(r, TIDE_F64, op, {70000}, {1}, 70000, -1);
    reduce_case(r, TIDE_I64, op, {35000, 2}, {2, 1}, 70000, 0);
    reduce_case(r, TIDE_BF16, op, {2, 300, 120}, {36000, 1, 300}, 72000, -1);
    // a column reduction of a tall matrix: column mode cut into pieces
    reduce_case(r, TIDE_F32, op, {4100, 33}, {33, 1}, 135300, 0, false);
    reduce_case(r, TIDE_I32, op, {2500, 20}, {20, 1}, 50000, 0);
  }
}

KTEST(reduce_empty) {
  // sum/mean/prod over an empty dim give 0, NaN and 1; no outputs writes nothing
  std::vector<int64_t> shape = {3, 0}, stride = {0, 1};
  for (int32_t op : {TIDE_SUM, TIDE_MEAN, TIDE_PROD})
    for (int32_t dt : {TIDE_F32, TIDE_I32}) {
      int32_t odt = out_dtype(op, dt);
      int oes = tide_dtype_size(odt);
      for (int32_t dim : {1, -1}) {
        int64_t M = dim < 0 ? 1 : 3;
        Dev din(4), dout(M * oes);
        std::vector<unsigned char> want(M * oes), hin(4);
        CHECK_OK(cuda().reduce->reduce(dout.p, nullptr, din.p, op, dt, odt, 2, shape.data(), stride.data(), dim));
        CHECK_OK(cpu().reduce->reduce(want.data(), nullptr, hin.data(), op, dt, odt, 2, shape.data(), stride.data(), dim));
        expect_bits(download<unsigned char>(dout, M * oes), want, "empty reduction");
      }
      Dev din(4), dout(16);
      CHECK_OK(cuda().reduce->reduce(dout.p, nullptr, din.p, op, dt, odt, 2, shape.data(), stride.data(), 0));
      expect_bits(download<unsigned char>(dout, 16), std::vector<unsigned char>(16, 0xFF), "no outputs");
    }
}

KTEST(reduce_deterministic) {
  Rng r(13);
  auto x = r.normal_vec<float>(40000);
  Dev dx = upload(x);
  // split rows, one block per output, a column sum in two pieces
  for (auto geo : std::vector<std::vector<int64_t>>{{2, 20000}, {200, 200}, {2100, 16}}) {
    std::vector<int64_t> shape = {geo[0], geo[1]}, stride = {geo[1], 1};
    for (int32_t dim : {0, 1, -1}) {
      int64_t M = dim < 0 ? 1 : shape[1 - dim];
      Dev a(M * 4), b(M * 4);
      kt::schedule_seed(1);
      CHECK_OK(cuda().reduce->reduce(a.p, nullptr, dx.p, TIDE_SUM, TIDE_F32, TIDE_F32, 2, shape.data(), stride.data(), dim));
      kt::schedule_seed(2);
      CHECK_OK(cuda().reduce->reduce(b.p, nullptr, dx.p, TIDE_SUM, TIDE_F32, TIDE_F32, 2, shape.data(), stride.data(), dim));
      expect_bits(download<float>(a, M), download<float>(b, M), "sum under two schedules");
    }
  }
  kt::schedule_seed(1);
}

// ---- cumsum -------------------------------------------------------------------

static void cumsum_case(Rng &r, int32_t dt, int64_t outer, int64_t R, int64_t inner, bool exact) {
  int32_t odt = tide_is_float(dt) ? dt : TIDE_I64;
  size_t n = (size_t)(outer * R * inner);
  int oes = tide_dtype_size(odt);
  auto in = make_input(r, dt, n, false, false);
  Dev din = upload(in), dout(n * oes + 8);
  std::vector<unsigned char> want(n * oes + 8, 0xFF);
  CHECK_OK(cuda().cumsum->cumsum(dout.p, din.p, dt, outer, R, inner));
  CHECK_OK(cpu().cumsum->cumsum(want.data(), in.data(), dt, outer, R, inner));
  char what[120];
  snprintf(what, sizeof what, "cumsum dtype %d (%lld, %lld, %lld)", dt, (long long)outer, (long long)R, (long long)inner);
  auto got = download<unsigned char>(dout, n * oes + 8);
  if (exact) expect_bits(got, want, what);
  else compare_out(got, want, odt, n, tol_of(odt), what);
  CHECK(got[n * oes] == 0xFF, "%s: wrote past the output", what);
}

KTEST(cumsum_every_dtype) {
  Rng r(21);
  for (int32_t dt : kDtypes) {
    // a thread per column: the CPU's own sequence of adds, so the same bits
    cumsum_case(r, dt, 3, 7, 5, true);
    cumsum_case(r, dt, 4, 33, 1, true);
    cumsum_case(r, dt, 1, 1, 1, true);
    // long rows: a block per row (integers exact, floats to rounding)
    cumsum_case(r, dt, 2, 3001, 1, !tide_is_float(dt));
  }
  Dev d(8);
  CHECK_OK(cuda().cumsum->cumsum(d.p, d.p, TIDE_F32, 0, 5, 1));  // nothing to scan
  expect_bits(download<unsigned char>(d, 8), std::vector<unsigned char>(8, 0xFF), "empty cumsum");
}

KTEST(cumsum_deterministic) {
  Rng r(22);
  auto x = r.normal_vec<float>(2 * 5000);
  Dev dx = upload(x), a(2 * 5000 * 4), b(2 * 5000 * 4);
  kt::schedule_seed(1);
  CHECK_OK(cuda().cumsum->cumsum(a.p, dx.p, TIDE_F32, 2, 5000, 1));
  kt::schedule_seed(2);
  CHECK_OK(cuda().cumsum->cumsum(b.p, dx.p, TIDE_F32, 2, 5000, 1));
  kt::schedule_seed(1);
  expect_bits(download<float>(a, 10000), download<float>(b, 10000), "cumsum under two schedules");
}

// ---- sort and topk ------------------------------------------------------------

// sort (k < 0) or topk of a view; values and indices must be the CPU's bit for bit.
static void order_case(Rng &r, int32_t dt, std::vector<int64_t> shape, std::vector<int64_t> stride, size_t buf,
                       int32_t dim, int64_t k, int32_t flag) {
  int32_t nd = (int32_t)shape.size();
  int es = tide_dtype_size(dt);
  int64_t len = nd ? shape[dim] : 1, rows = 1;
  for (int32_t i = 0; i < nd; i++) if (i != dim) rows *= shape[i];
  int64_t kk = k < 0 ? len : k, n = rows * kk;
  auto in = make_input(r, dt, buf, true, false);
  Dev din = upload(in), dv(n * es + 8), di(n * 8 + 8);
  std::vector<unsigned char> wv(n * es + 8, 0xFF);
  std::vector<int64_t> wi(n + 1, -1);
  if (k < 0) {
    CHECK_OK(cuda().sort->sort(dv.p, di.as<int64_t>(), din.p, dt, nd, shape.data(), stride.data(), dim, flag));
    CHECK_OK(cpu().sort->sort(wv.data(), wi.data(), in.data(), dt, nd, shape.data(), stride.data(), dim, flag));
  } else {
    CHECK_OK(cuda().sort->topk(dv.p, di.as<int64_t>(), din.p, dt, nd, shape.data(), stride.data(), dim, k, flag));
    CHECK_OK(cpu().sort->topk(wv.data(), wi.data(), in.data(), dt, nd, shape.data(), stride.data(), dim, k, flag));
  }
  char what[120];
  snprintf(what, sizeof what, "%s dtype %d len %lld dim %d k %lld flag %d", k < 0 ? "sort" : "topk", dt, (long long)len,
           dim, (long long)k, flag);
  auto gv = download<unsigned char>(dv, n * es + 8);
  auto gi = download<int64_t>(di, n + 1);
  unsigned char tail[8];
  memcpy(tail, &gi[n], 8);
  CHECK(tail[0] == 0xFF && gv[n * es] == 0xFF, "%s: wrote past the outputs", what);
  gi.resize(n);
  wi.resize(n);
  gv.resize(n * es);
  wv.resize(n * es);
  expect_bits(gv, wv, what);
  expect_bits(gi, wi, what);
}

KTEST(sort_every_dtype) {
  Rng r(31);
  for (int32_t dt : kDtypes)
    for (int32_t desc : {0, 1}) {
      order_case(r, dt, {6, 37}, {37, 1}, 222, 1, -1, desc);
      order_case(r, dt, {6, 37}, {37, 1}, 222, 0, -1, desc);
      order_case(r, dt, {37, 6}, {1, 37}, 222, 0, -1, desc);   // transposed: strided rows
      order_case(r, dt, {2, 3, 5}, {40, 12, 2}, 80, 1, -1, desc);
      order_case(r, dt, {1}, {1}, 1, 0, -1, desc);
      order_case(r, dt, {}, {}, 1, 0, -1, desc);
      order_case(r, dt, {0, 4}, {4, 1}, 1, 1, -1, desc);
    }
  // rows past shared memory: the scratch path, and a broadcast (stride 0) row of equal values
  order_case(r, TIDE_F32, {2, 3000}, {3000, 1}, 6000, 1, -1, 0);
  order_case(r, TIDE_BF16, {3000, 2}, {2, 1}, 6000, 0, -1, 1);
  order_case(r, TIDE_I64, {3, 2500}, {1, 3}, 7500, 1, -1, 1);
  order_case(r, TIDE_F32, {3, 40}, {1, 0}, 3, 1, -1, 1);
  order_case(r, TIDE_F64, {9000, 2}, {2, 1}, 18000, 0, -1, 0);  // three sequence sizes across chunks
  order_case(r, TIDE_F32, {2, 3000}, {1, 2}, 6000, 1, 600, 1);   // topk with a large k: the whole sort
}

KTEST(topk_every_dtype) {
  Rng r(32);
  for (int32_t dt : kDtypes)
    for (int32_t largest : {0, 1}) {
      order_case(r, dt, {5, 41}, {41, 1}, 205, 1, 7, largest);
      order_case(r, dt, {5, 41}, {41, 1}, 205, 0, 3, largest);
      order_case(r, dt, {41, 5}, {1, 41}, 205, 0, 41, largest);
      order_case(r, dt, {5, 41}, {41, 1}, 205, 1, 0, largest);
      order_case(r, dt, {}, {}, 1, 0, 1, largest);
    }
  // the generation case: a vocabulary row, k = 50 and 1
  for (int32_t largest : {0, 1}) {
    order_case(r, TIDE_F32, {1, 50257}, {50257, 1}, 50257, 1, 50, largest);
    order_case(r, TIDE_BF16, {1, 50257}, {50257, 1}, 50257, 1, 1, largest);
  }
  order_case(r, TIDE_F32, {50257}, {1}, 50257, 0, 500, 1);  // four rounds of candidates
  order_case(r, TIDE_I32, {3, 5000}, {5000, 1}, 15000, 1, 100, 0);
}

KTEST(sort_deterministic) {
  Rng r(33);
  auto x = r.normal_vec<float>(3 * 3000);
  for (auto &v : x) v = roundf(v * 4);  // many ties
  std::vector<int64_t> shape = {3, 3000}, stride = {3000, 1};
  Dev dx = upload(x), v1(9000 * 4), i1(9000 * 8), v2(9000 * 4), i2(9000 * 8);
  kt::schedule_seed(1);
  CHECK_OK(cuda().sort->sort(v1.p, i1.as<int64_t>(), dx.p, TIDE_F32, 2, shape.data(), stride.data(), 1, 1));
  kt::schedule_seed(2);
  CHECK_OK(cuda().sort->sort(v2.p, i2.as<int64_t>(), dx.p, TIDE_F32, 2, shape.data(), stride.data(), 1, 1));
  kt::schedule_seed(1);
  expect_bits(download<int64_t>(i1, 9000), download<int64_t>(i2, 9000), "sort under two schedules");
}
