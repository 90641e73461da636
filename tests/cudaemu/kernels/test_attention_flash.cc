// Flash attention (kernels/cuda/nn_attention_flash.cu: flash_forward and
// flash_backward of the attention table) against the CPU kernels: out, lse,
// dq, dk and dv within bf16 tolerances of the CPU's f64 attention on the
// same inputs rounded to bf16 (what the tensor cores multiply), for T in
// {1, 2, 15, 16, 17, 33, 64, 80, 97} (below, at and past the tile sizes of
// 16, 32 and 64), causal and not, query offsets (bottom-right, a decode step,
// in between, past S), a key mask that leaves some queries no key, several
// heads and batch rows, head sizes 16 to 128 (the two compiled tiles, 64 and
// 128, and the zero-padded ones between), padded strides and GPT-2's views
// of one fused qkv tensor, f32 and bf16 operands; outputs poisoned with gaps
// that must stay so; empty sizes; the same bits under two emulator
// schedules; errors for head sizes and dtypes the kernels do not take.
#include "harness.h"

#include <algorithm>

namespace {

struct Case {
  int64_t B, H, T, S, D;
  int causal;
  int mask;    // 0 none, 1 random with left padding of batch row 0 (its first causal queries see nothing)
  int layout;  // 0 contiguous [B, H, R, D]; 1 padded strides; 2 q, k, v views of a fused [B, T, 3, H, D] tensor
  double scale;
  int64_t qoff = 0;
};

struct Opnd {
  int64_t off = 0, st[3] = {0, 0, 0};
};

Opnd place(const Case &c, int64_t R, int layout, int64_t &cur) {
  Opnd o;
  o.off = cur;
  int64_t H = c.H, D = c.D;
  if (layout == 0) {
    o.st[2] = D, o.st[1] = R * D, o.st[0] = H * R * D;
  } else if (layout == 1) {
    o.st[2] = D + 3, o.st[1] = R * (D + 3) + 5, o.st[0] = H * o.st[1] + 7;
  } else {
    o.st[2] = H * D, o.st[1] = D, o.st[0] = R * H * D;
  }
  cur += c.B * o.st[0] + 16;
  return o;
}

float bf16_round(float x) { return tide_bf16_to_f32(tide_f32_to_bf16(x)); }

// The operand buffers of one element type E (float, or bf16 bits), and their
// values as the tensor cores see them (bf16) in f64 for the CPU reference.
template <class E> struct Buf {
  std::vector<E> e;
  std::vector<double> ref;
};

template <class E> E from_f32(float x);
template <> float from_f32<float>(float x) { return x; }
template <> uint16_t from_f32<uint16_t>(float x) { return tide_f32_to_bf16(x); }
template <class E> double to_f64(E x);
template <> double to_f64<float>(float x) { return x; }
template <> double to_f64<uint16_t>(uint16_t x) { return tide_bf16_to_f32(x); }

// got (element type E) against want (f64) over a whole buffer: NaN (the
// poisoned gaps) must match NaN; elsewhere |got - want| <= tol * (max |want| + |want|).
template <class E> void expect_near(const std::vector<E> &got, const std::vector<double> &want, double tol, const char *what) {
  double mx = 0;
  for (double w : want)
    if (!std::isnan(w) && !std::isinf(w)) mx = std::max(mx, fabs(w));
  std::vector<double> g(got.size());
  for (size_t i = 0; i < got.size(); i++) g[i] = to_f64<E>(got[i]);
  expect_close(g, want, tol, tol * std::max(mx, 1e-3), what);
}

template <class E> void run_case(const Case &c, uint64_t seed) {
  const int32_t dt = sizeof(E) == 2 ? TIDE_BF16 : TIDE_F32;
  char what[200];
  snprintf(what, sizeof what, "%s B%lld H%lld T%lld S%lld D%lld causal %d qoff %lld mask %d layout %d",
           sizeof(E) == 2 ? "bf16" : "f32", (long long)c.B, (long long)c.H, (long long)c.T, (long long)c.S,
           (long long)c.D, c.causal, (long long)c.qoff, c.mask, c.layout);
  Rng r(seed);
  int64_t cur = 0;
  Opnd q, k, v, dout;
  if (c.layout == 2) {
    int64_t C = c.H * c.D;
    for (int i = 0; i < 3; i++) {
      Opnd &o = i == 0 ? q : i == 1 ? k : v;
      o.off = i * C, o.st[0] = c.T * 3 * C, o.st[1] = c.D, o.st[2] = 3 * C;
    }
    cur = c.B * c.T * 3 * C + 16;
    dout = place(c, c.T, 2, cur);
  } else {
    q = place(c, c.T, c.layout, cur);
    k = place(c, c.S, c.layout, cur);
    v = place(c, c.S, c.layout, cur);
    dout = place(c, c.T, c.layout, cur);
  }
  std::vector<E> in(cur);
  std::vector<double> in_ref(cur);  // bf16-rounded, as the kernels multiply them
  for (int64_t i = 0; i < cur; i++) {
    in[i] = from_f32<E>((float)r.normal());
    in_ref[i] = bf16_round((float)to_f64<E>(in[i]));
  }
  std::vector<uint8_t> mask(c.B * c.S);
  for (auto &x : mask) x = r.uniform() < 0.25 ? 0 : 1;
  if (c.B > 0)
    for (int64_t s = 0; s < std::min<int64_t>(3, c.S); s++) mask[s] = 0;
  const uint8_t *hm = c.mask ? mask.data() : nullptr;
  Dev din = upload(in), dmask = upload(mask);
  const uint8_t *dm = c.mask ? dmask.as<uint8_t>() : nullptr;

  int olayout = c.layout;
  int64_t ocur = 0, gcur = 0, kcur = 0, vcur = 0;
  Opnd out = place(c, c.T, olayout, ocur), dq = place(c, c.T, olayout, gcur);
  Opnd dk = place(c, c.S, olayout, kcur), dv = place(c, c.S, olayout, vcur);
  int64_t nl = c.B * c.H * c.T;
  tide_attn_strides st;
  memcpy(st.q, q.st, sizeof st.q), memcpy(st.k, k.st, sizeof st.k), memcpy(st.v, v.st, sizeof st.v);
  memcpy(st.out, out.st, sizeof st.out), memcpy(st.dout, dout.st, sizeof st.dout);
  memcpy(st.dq, dq.st, sizeof st.dq), memcpy(st.dk, dk.st, sizeof st.dk), memcpy(st.dv, dv.st, sizeof st.dv);

  // the reference: the CPU kernels in f64 on the rounded inputs; NaN-poisoned gaps as the device buffers
  std::vector<double> want_o(ocur, NAN), want_l(nl, NAN);
  const double *R = in_ref.data();
  CHECK_OK(cpu().attention->attention_forward(want_o.data() + out.off, want_l.data(), R + q.off, R + k.off, R + v.off, hm,
                                              c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st, TIDE_F64));
  std::vector<E> got_o[2];
  std::vector<float> got_l[2];
  for (int run = 0; run < 2; run++) {
    kt::schedule_seed(run + 1);
    Dev dO(ocur * sizeof(E)), dL(std::max<int64_t>(nl, 1) * sizeof(float));
    CHECK_OK(cuda().attention->flash_forward(dO.as<E>() + out.off, dL.p, din.as<E>() + q.off, din.as<E>() + k.off,
                                             din.as<E>() + v.off, dm, c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale,
                                             &st, dt));
    got_o[run] = download<E>(dO, ocur), got_l[run] = download<float>(dL, nl);
  }
  char w2[260];
  snprintf(w2, sizeof w2, "%s: out", what);
  expect_near(got_o[0], want_o, sizeof(E) == 2 ? 7.5e-3 : 5e-3, w2);
  snprintf(w2, sizeof w2, "%s: lse", what);
  std::vector<double> gl(got_l[0].begin(), got_l[0].end());
  expect_close(gl, want_l, 1e-3, 1e-3, w2);
  snprintf(w2, sizeof w2, "%s: forward bits across schedules", what);
  expect_bits(got_o[1], got_o[0], w2);
  expect_bits(got_l[1], got_l[0], w2);

  // backward from the device's out and lse (what autograd hands back)
  std::vector<double> wq(gcur, NAN), wk(kcur, NAN), wv(vcur, NAN), rowdot(std::max<int64_t>(nl, 1));
  std::vector<double> o_ref(ocur, NAN), l_ref(nl);
  for (int64_t i = 0; i < ocur; i++) o_ref[i] = to_f64<E>(got_o[0][i]);
  for (int64_t i = 0; i < nl; i++) l_ref[i] = got_l[0][i];
  CHECK_OK(cpu().attention->attention_backward(wq.data() + dq.off, wk.data() + dk.off, wv.data() + dv.off, rowdot.data(),
                                               R + dout.off, R + q.off, R + k.off, R + v.off, o_ref.data() + out.off,
                                               want_l.data(), hm, c.B, c.H, c.T, c.S, c.D, c.causal, c.qoff, c.scale, &st,
                                               TIDE_F64));
  Dev dOut = upload(got_o[0]), dLse = upload(got_l[0]);
  std::vector<E> gq[2], gk[2], gv[2];
  for (int run = 0; run < 2; run++) {
    kt::schedule_seed(run + 1);
    Dev dQ(gcur * sizeof(E)), dK(kcur * sizeof(E)), dV(vcur * sizeof(E)), dR(std::max<int64_t>(nl, 1) * sizeof(float));
    CHECK_OK(cuda().attention->flash_backward(dQ.as<E>() + dq.off, dK.as<E>() + dk.off, dV.as<E>() + dv.off, dR.p,
                                              din.as<E>() + dout.off, din.as<E>() + q.off, din.as<E>() + k.off,
                                              din.as<E>() + v.off, dOut.as<E>() + out.off, dLse.p, dm, c.B, c.H, c.T, c.S,
                                              c.D, c.causal, c.qoff, c.scale, &st, dt));
    gq[run] = download<E>(dQ, gcur), gk[run] = download<E>(dK, kcur), gv[run] = download<E>(dV, vcur);
  }
  double gtol = sizeof(E) == 2 ? 1.25e-2 : 1e-2;
  snprintf(w2, sizeof w2, "%s: dq", what);
  expect_near(gq[0], wq, gtol, w2);
  snprintf(w2, sizeof w2, "%s: dk", what);
  expect_near(gk[0], wk, gtol, w2);
  snprintf(w2, sizeof w2, "%s: dv", what);
  expect_near(gv[0], wv, gtol, w2);
  snprintf(w2, sizeof w2, "%s: backward bits across schedules", what);
  expect_bits(gq[1], gq[0], w2);
  expect_bits(gk[1], gk[0], w2);
  expect_bits(gv[1], gv[0], w2);
  kt::schedule_seed(1);
}

}  // namespace

KTEST(flash_attention_causal_lengths) {
  uint64_t seed = 100;
  // {B, H, T, S, D, causal, mask, layout, scale}: GPT-2's head size, T below, at and past the tiles
  for (int64_t T : {1, 2, 15, 16, 17, 33, 64, 80, 97}) run_case<float>({1, 2, T, T, 64, 1, 0, 0, 0.125}, seed++);
}

KTEST(flash_attention_shapes) {
  uint64_t seed = 200;
  const Case cases[] = {
      {2, 3, 37, 37, 16, 1, 0, 1, 0.25},  // several heads and batch rows, padded strides, D padded to 64
      {2, 2, 33, 33, 64, 1, 1, 2, 0.125}, // GPT-2's fused qkv views, key mask (rows with no key)
      {1, 2, 20, 45, 32, 1, 0, 1, 0.2},   // T < S, top-left causal
      {1, 2, 45, 20, 48, 1, 1, 0, 0.2},   // T > S: the late rows see every key
      {2, 1, 40, 29, 64, 0, 0, 0, 0.3},   // not causal
      {1, 2, 17, 23, 80, 0, 1, 1, 0.1},   // not causal, key mask, D padded to 128
      {1, 2, 34, 34, 128, 1, 1, 2, 0.088},
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
}

KTEST(flash_attention_q_offset) {
  uint64_t seed = 300;
  // {..., qoff}: a decode step (T = 1, bottom-right), a prefill chunk at the end of the keys, an
  // offset in between, with a key mask, and one past S (every key seen)
  const Case cases[] = {
      {2, 3, 1, 37, 64, 1, 0, 0, 0.125, 36}, {2, 2, 1, 70, 64, 1, 1, 1, 0.125, 69},
      {1, 2, 10, 75, 64, 1, 0, 1, 0.125, 65}, {2, 2, 12, 41, 32, 1, 1, 0, 0.25, 20},
      {1, 1, 7, 9, 16, 1, 0, 0, 0.5, 1000},
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
}

KTEST(flash_attention_bf16_operands) {
  uint64_t seed = 400;
  const Case cases[] = {
      {2, 2, 33, 33, 64, 1, 0, 2, 0.125},
      {1, 2, 17, 40, 64, 1, 1, 1, 0.125, 23},
      {1, 1, 19, 19, 96, 0, 0, 0, 0.1},
  };
  for (const Case &c : cases) run_case<uint16_t>(c, seed++);
}

KTEST(flash_attention_empty_sizes) {
  uint64_t seed = 500;
  const Case cases[] = {
      {0, 2, 5, 5, 16, 1, 0, 0, 0.5},   // no heads
      {1, 2, 0, 6, 16, 0, 1, 1, 0.5},   // no queries: dk, dv are zeros
      {1, 2, 6, 0, 16, 1, 0, 1, 0.5},   // no keys: out zeros, lse -inf, dq zeros
  };
  for (const Case &c : cases) run_case<float>(c, seed++);
}

KTEST(flash_attention_errors) {
  tide_attn_strides st;
  memset(&st, 0, sizeof st);
  Dev d(64);
  for (int64_t D : {0, 8, 33, 72 + 1, 144})
    CHECK_FAILS(cuda().attention->flash_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, D, 1, 0, 1.0, &st, TIDE_F32),
                "multiple of 16 from 16 to 128");
  CHECK_FAILS(cuda().attention->flash_backward(d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 24,
                                               1, 0, 1.0, &st, TIDE_F32),
              "got D = 24");
  CHECK_FAILS(cuda().attention->flash_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 64, 1, 0, 1.0, &st, TIDE_F64),
              "no kernel for dtype f64");
  CHECK_FAILS(cuda().attention->flash_forward(d.p, d.p, d.p, d.p, d.p, nullptr, 1, 1, 1, 1, 64, 1, -2, 1.0, &st, TIDE_F32),
              "q_offset must be >= 0, got -2");
  // the CPU has no flash kernel: the op layer takes its plain one
  CHECK(cpu().attention->flash_forward == nullptr && cpu().attention->flash_backward == nullptr, "cpu flash entries");
}
