// Fused attention (kernels/nn_attention.h) on CUDA against the CPU kernels:
// forward (out, lse) and backward (dq, dk, dv) in f32 and f64, causal and
// not, T == S and T != S, with a key mask that leaves some queries no key,
// several head sizes (1, odd, GPT-2's 64, 128), operands as contiguous
// [B, H, R, D], padded strides, GPT-2's views of one fused qkv tensor and
// inputs broadcast over batch or heads (stride 0); causal masks with a query
// offset (bottom-right, as decoding over a KV cache, and in between);
// outputs poisoned with gaps that must stay so; empty sizes; bits equal
// under two emulator schedules; errors for a bad dtype, a huge D and a
// negative q_offset.
#include "harness.h"

#include <algorithm>

namespace {

struct Case {
  int64_t B, H, T, S, D;
  int causal;
  int mask;    // 0 none, 1 random with left padding (rows without keys), 2 as 1 plus a batch row fully masked
  int layout;  // 0 contiguous [B, H, R, D]; 1 padded strides; 2 q, k, v views of a fused [B, T, 3, H, D] tensor;
               // 3 broadcast inputs: q shared by the batch rows, k and v by the heads (stride 0)
  double scale;
  int64_t qoff = 0;  // the causal mask's query offset: query t sees keys s <= t + qoff
};

// An operand inside a host/device buffer: element offset and {batch, head, row} strides.
struct Opnd {
  int64_t off = 0, st[3] = {0, 0, 0};
};

// Lays out a [B, H, R, D] operand from element `cur` on (layout 0 or 1;
// layout 2 outputs are [B, R, H, D] memory as the op layer makes them).
Opnd place(const Case &c, int64_t R, int layout, int64_t &cur) {
  Opnd o;
  o.off = cur;
  int64_t B = c.B, H = c.H, D = c.D;
  if (layout == 0) {
    o.st[2] = D, o.st[1] = R * D, o.st[0] = H * R * D;
  } else if (layout == 1) {
    o.st[2] = D + 3, o.st[1] = R * (D + 3) + 5, o.st[0] = H * o.st[1] + 7;
  } else {
    o.st[2] = H * D, o.st[1] = D, o.st[0] = R * H * D;
  }
  cur += B * o.st[0] + 16;
  return o;
}

template <class R> std::vector<R> poisoned(size_t n) {
  std::vector<R> v(n);
  if (n) memset(v.data(), 0xFF, n * sizeof(R));
  return v;
}

std::vector<uint8_t> make_mask(const Case &c, Rng &r) {
  std::vector<uint8_t> m(c.B * c.S);
  for (auto &x : m) x = r.uniform() < 0.25 ? 0 : (uint8_t)r.randint(1, 256);
  if (c.B > 0)
    for (int64_t s = 0; s < std::min<int64_t>(3, c.S); s++) m[s] = 0;  // left padding of batch row 0
  if (c.mask == 2 && c.B > 1)
    for (int64_t s = 0; s < c.S; s++) m[c.S + s] = 0;  // batch row 1 sees nothing
  return m;
}

template <class R> const R *at(const std::vector<R> &v, const Opnd &o) { return v.data() + o.off; }
template <class R> R *at(const Dev &d, const Opnd &o) { return d.as<R>() + o.off; }

template <class R> void run_case(const Case &c, uint64_t seed) {
  const int32_t dt = sizeof(R) == 8 ? TIDE_F64 : TIDE_F32;
  const double rtol = sizeof(R) == 8 ? 1e-12 : 2e-5, atol = sizeof(R) == 8 ? 1e-12 : 2e-6;
  char what[160];
  snprintf(what, sizeof what, "%s B%lld H%lld T%lld S%lld D%lld causal %d qoff %lld mask %d layout %d",
           sizeof(R) == 8 ? "f64" : "f32", (long long)c.B, (long long)c.H, (long long)c.T, (long long)c.S, (long long)c.D,
           c.causal, (long long)c.qoff, c.mask, c.layout);
  Rng r(seed);
  // inputs q, k, v, dout in one buffer
  int64_t cur = 0;
  Opnd q, k, v, dout;
  if (c.layout == 2) {  // [B, T, 3, H, D]: q, k, v interleaved per row
    int64_t C = c.H * c.D;
    for (int i = 0; i < 3; i++) {
      Opnd &o = i == 0 ? q : i == 1 ? k : v;
      o.off = i * C, o.st[0] = c.T * 3 * C, o.st[1] = c.D, o.st[2] = 3 * C;
    }
    cur = c.B * c.T * 3 * C + 16;
    dout = place(c, c.T, 2, cur);
  } else if (c.layout == 3) {
    q = place(c, c.T, 1, cur), q.st[0] = 0;
    k = place(c, c.S, 1, cur), k.st[1] = 0;
    v = place(c, c.S, 0, cur), v.st[1] = 0;
    dout = place(c, c.T, 1, cur);
  } else {
    q = place(c, c.T, c.layout, cur);
    k = place(c, c.S, c.layout, cur);
    v = place(c, c.S, c.layout, cur);
    dout = place(c, c.T, c.layout, cur);
  }
  auto in = r.normal_vec<R>(cur);
  auto mask = make_mask(c, r);
  const uint8_t *hm = c.mask ? mask.data() : nullptr;
  Dev din = upload(in), dmask = upload(mask);
  const uint8_t *dm = c.mask ? dmask.as<uint8_t>() : nullptr;

  // outputs: out, dq in one layout over T rows; dk, dv over S rows
  int olayout = c.layout == 3 ? 0 : c.layout;
  int64_t ocur = 0, gcur = 0, kcur = 0, vcur = 0;
  Opnd out = place(c, c.T, olayout, ocur), dq = place(c, c.T, olayout, gcur);
  Opnd dk = place(c, c.S, olayout, kcur), dv = place(c, c.S, olayout, vcur);
  int64_t nl = c.B * c.H * c.T;
  tide_attn_strides st;
  memcpy(st.q, q.st, sizeof st.q), memcpy(st.k, k.st, sizeof st.k), memcpy(st.v, v.st, sizeof st.v);
  memcpy(st.out, out.st, sizeof st.out), memcpy(st.dout, dout.st, sizeof st.dout);
  memcpy(st.dq, dq.st, sizeof st.dq), memcpy(st.dk, dk.st, sizeof st.dk), memcpy(st.dv, dv.st, sizeof st.dv);

  // forward
  auto want_o = poisoned<R>(ocur), want_l = poisoned<R>(nl);
  CHECK_OK(cpu().attention->attention_forward(want_o.data() + out.off, want_l.data(), at(in, q), at(in, k), at(in, v), hm,
                                              c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st, dt));
  std::vector<R> got_o[2], got_l[2];
  for (int run = 0; run < 2; run++) {
    kt::schedule_seed(run + 1);
    Dev dO(ocur * sizeof(R)), dL(std::max<int64_t>(nl, 1) * sizeof(R));
    CHECK_OK(cuda().attention->attention_forward(at<R>(dO, out), dL.p, at<R>(din, q), at<R>(din, k), at<R>(din, v), dm, c.B,
                                                 c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st, dt));
    got_o[run] = download<R>(dO, ocur), got_l[run] = download<R>(dL, nl);
  }
  char w2[200];
  snprintf(w2, sizeof w2, "%s: out", what);
  expect_close(got_o[0], want_o, rtol, atol, w2);
  snprintf(w2, sizeof w2, "%s: lse", what);
  expect_close(got_l[0], want_l, rtol, atol, w2);
  snprintf(w2, sizeof w2, "%s: forward bits across schedules", what);
  expect_bits(got_o[1], got_o[0], w2);
  expect_bits(got_l[1], got_l[0], w2);

  // backward from the CPU's out and lse, so both backends read the same inputs
  Dev dOut = upload(want_o), dLse = upload(want_l);
  auto wq = poisoned<R>(gcur), wk = poisoned<R>(kcur), wv = poisoned<R>(vcur);
  std::vector<R> rowdot(std::max<int64_t>(nl, 1));
  CHECK_OK(cpu().attention->attention_backward(wq.data() + dq.off, wk.data() + dk.off, wv.data() + dv.off, rowdot.data(),
                                               at(in, dout), at(in, q), at(in, k), at(in, v), want_o.data() + out.off,
                                               want_l.data(), hm, c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st,
                                               dt));
  std::vector<R> gq[2], gk[2], gv[2];
  for (int run = 0; run < 2; run++) {
    kt::schedule_seed(run + 1);
    Dev dQ(gcur * sizeof(R)), dK(kcur * sizeof(R)), dV(vcur * sizeof(R)), dR(std::max<int64_t>(nl, 1) * sizeof(R));
    CHECK_OK(cuda().attention->attention_backward(at<R>(dQ, dq), at<R>(dK, dk), at<R>(dV, dv), dR.p, at<R>(din, dout),
                                                  at<R>(din, q), at<R>(din, k), at<R>(din, v), at<R>(dOut, out), dLse.p, dm,
                                                  c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st, dt));
    gq[run] = download<R>(dQ, gcur), gk[run] = download<R>(dK, kcur), gv[run] = download<R>(dV, vcur);
  }
  // gradients are sums of products of O(1) terms that cancel: an absolute floor scaled by sqrt(S)
  double gatol = sizeof(R) == 8 ? 1e-12 : 1e-5;
  snprintf(w2, sizeof w2, "%s: dq", what);
  expect_close(gq[0], wq, rtol, gatol, w2);
  snprintf(w2, sizeof w2, "%s: dk", what);
  expect_close(gk[0], wk, rtol, gatol, w2);
  snprintf(w2, sizeof w2, "%s: dv", what);
  expect_close(gv[0], wv, rtol, gatol, w2);
  snprintf(w2, sizeof w2, "%s: backward bits across schedules", what);
  expect_bits(gq[1], gq[0], w2);
  expect_bits(gk[1], gk[0], w2);
  expect_bits(gv[1], gv[0], w2);
  kt::schedule_seed(1);
}

}  // namespace

KTEST(attention_f32_shapes) {
  uint64_t seed = 10;
  // {B, H, T, S, D, causal, mask, layout, scale}
  const Case cases[] = {
      {2, 3, 37, 37, 16, 1, 0, 0, 0.25},  {2, 3, 37, 37, 16, 0, 0, 1, 0.25},  {1, 2, 20, 45, 33, 1, 0, 1, 0.2},
      {1, 2, 45, 20, 33, 1, 1, 0, 0.2},   {1, 2, 45, 20, 33, 0, 1, 1, 0.2},   {3, 1, 40, 40, 8, 1, 2, 0, 0.35},
      {1, 1, 5, 7, 1, 0, 1, 1, 1.0},      {1, 1, 1, 1, 3, 1, 0, 0, 0.5},      {2, 2, 33, 33, 64, 1, 1, 2, 0.125},
      {2, 3, 12, 17, 9, 1, 1, 3, 0.4},    {2, 2, 17, 12, 9, 0, 0, 3, 0.4},
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
}

KTEST(attention_f64_shapes) {
  uint64_t seed = 30;
  const Case cases[] = {
      {2, 2, 35, 35, 16, 1, 0, 0, 0.25},  {1, 2, 19, 41, 33, 1, 1, 1, 0.2},  {1, 2, 41, 19, 20, 0, 2, 1, 0.3},
      {2, 2, 33, 33, 64, 1, 1, 2, 0.125}, {2, 3, 12, 17, 9, 1, 2, 3, 0.4},
  };
  for (const Case &c : cases) run_case<double>(c, seed++);
}

KTEST(attention_head_size_128) {
  run_case<float>({1, 2, 34, 34, 128, 1, 1, 2, 0.088}, 50);
  run_case<double>({1, 1, 20, 26, 128, 0, 0, 1, 0.088}, 51);
}

KTEST(attention_q_offset) {
  uint64_t seed = 70;
  // {B, H, T, S, D, causal, mask, layout, scale, qoff}: bottom-right (qoff = S - T: a decode step
  // T = 1, a prefill chunk), an offset in between, one past S (every key seen), and an offset with
  // causal = 0 (ignored)
  const Case cases[] = {
      {2, 3, 1, 37, 16, 1, 0, 0, 0.25, 36}, {2, 2, 1, 40, 33, 1, 1, 1, 0.2, 39},  {1, 2, 10, 45, 64, 1, 1, 1, 0.125, 35},
      {2, 3, 12, 41, 9, 1, 2, 3, 0.4, 29},  {1, 2, 20, 45, 33, 1, 0, 1, 0.2, 10}, {1, 1, 7, 9, 5, 1, 1, 0, 0.5, 1000},
      {1, 2, 6, 15, 8, 0, 1, 0, 0.3, 9},
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
  const Case cases64[] = {
      {2, 2, 1, 35, 16, 1, 1, 0, 0.25, 34}, {1, 2, 13, 41, 33, 1, 2, 1, 0.2, 28}, {2, 2, 9, 33, 64, 1, 0, 1, 0.125, 24},
  };
  for (const Case &c : cases64) run_case<double>(c, seed++);
}

KTEST(attention_empty_sizes) {
  uint64_t seed = 60;
  const Case cases[] = {
      {0, 2, 5, 5, 4, 1, 0, 0, 0.5},  // no heads
      {1, 2, 0, 6, 4, 0, 1, 1, 0.5},  // no queries: dk, dv are zeros
      {1, 2, 6, 0, 4, 1, 0, 1, 0.5},  // no keys: out zeros, lse -inf, dq zeros
      {1, 2, 6, 0, 4, 0, 1, 0, 0.5},
      {2, 1, 4, 4, 0, 1, 1, 0, 0.5},  // D = 0
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
  run_case<double>({1, 2, 6, 0, 4, 1, 0, 1, 0.5}, seed++);
}

KTEST(attention_errors) {
  tide_attn_strides st;
  memset(&st, 0, sizeof st);
  Dev d(64);
  CHECK_FAILS(cuda().attention->attention_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 1, 0, 0, 1.0, &st, TIDE_BF16),
              "no kernel for dtype");
  CHECK_FAILS(cuda().attention->attention_backward(d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 1,
                                                   0, 0, 1.0, &st, TIDE_I32),
              "no kernel for dtype");
  CHECK_FAILS(cuda().attention->attention_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 100000, 0, 0, 1.0, &st, TIDE_F64),
              "too large");
  // a negative offset would leave queries no key: both backends refuse it
  for (const tide_backend *be : {&cpu(), &cuda()}) {
    CHECK_FAILS(be->attention->attention_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 1, 1, -1, 1.0, &st, TIDE_F32),
                "q_offset must be >= 0, got -1");
    CHECK_FAILS(be->attention->attention_backward(d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 1, 1,
                                                  -3, 1.0, &st, TIDE_F32),
                "q_offset must be >= 0, got -3");
  }
}
