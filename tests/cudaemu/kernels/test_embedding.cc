// GPT-2's token + position embedding (gpt2_embedding_forward) and the sorted
// embedding backward on CUDA against the CPU kernels: f32, f64, bf16 and f16
// tables (strided too), positions as past + t, per row [B, T] and shared
// [T]; the backward with repeated ids, every id the same, V = 1, n = 0,
// vocabularies needing one, two and three radix passes, more ids than one
// sort tile; outputs poisoned (0xFF) so an unwritten element fails, and the
// same bits under two emulator schedules.
#include "harness.h"

#include <algorithm>

using namespace kt;

static std::vector<unsigned char> table_bytes(Rng &r, int32_t dt, int64_t n) {
  int es = tide_dtype_size(dt);
  std::vector<unsigned char> b((size_t)std::max<int64_t>(n, 1) * es);
  for (int64_t i = 0; i < n; i++) tide_store_f64((char *)b.data() + i * es, dt, r.normal());
  return b;
}

static void gpt2_forward_case(Rng &r, int32_t dt, int64_t B, int64_t T, int64_t V, int64_t P, int64_t C, int pos_kind,
                              bool transposed) {
  int es = tide_dtype_size(dt);
  int64_t n = B * T;
  std::vector<int64_t> ids(std::max<int64_t>(n, 1)), pos(std::max<int64_t>(n, 1));
  for (auto &i : ids) i = r.randint(0, V);
  for (auto &p : pos) p = r.randint(0, P);
  auto wte = table_bytes(r, dt, V * C), wpe = table_bytes(r, dt, P * C);
  // a [V, C] view of a [C, V] buffer when transposed
  int64_t trs = transposed ? 1 : C, tcs = transposed ? V : 1, prs = transposed ? 1 : C, pcs = transposed ? P : 1;
  int64_t past = pos_kind == 0 ? P - T : 0, pbs = pos_kind == 1 ? T : 0;
  const int64_t *hp = pos_kind == 0 ? nullptr : pos.data();
  Dev dids = upload(ids), dpos = upload(pos), dte = upload(wte), dpe = upload(wpe);
  std::vector<unsigned char> want((size_t)std::max<int64_t>(n * C, 1) * es, 0);
  CHECK_OK(cpu().embedding->gpt2_embedding_forward(want.data(), wte.data(), wpe.data(), ids.data(), hp, pbs, B, T, C, past,
                                                  trs, tcs, prs, pcs, dt));
  std::vector<std::vector<unsigned char>> got;
  for (uint64_t seed : {1, 2}) {
    schedule_seed(seed);
    Dev dout(std::max<int64_t>(n * C, 1) * es);
    CHECK_OK(cuda().embedding->gpt2_embedding_forward(dout.p, dte.p, dpe.p, dids.as<int64_t>(),
                                                     pos_kind == 0 ? nullptr : dpos.as<int64_t>(), pbs, B, T, C, past,
                                                     trs, tcs, prs, pcs, dt));
    got.push_back(download<unsigned char>(dout, n * C * es));
  }
  schedule_seed(1);
  want.resize(n * C * es);
  char what[120];
  snprintf(what, sizeof what, "gpt2_embedding forward %s B %lld T %lld C %lld pos %d%s", tide_dtype_name(dt), (long long)B,
           (long long)T, (long long)C, pos_kind, transposed ? " transposed" : "");
  expect_bits(got[0], want, what);
  expect_bits(got[1], got[0], "gpt2_embedding forward across seeds");
}

KTEST(gpt2_embedding_forward_parity) {
  Rng r(31);
  for (int32_t dt : {TIDE_F32, TIDE_BF16, TIDE_F64, TIDE_F16})
    for (int pos_kind = 0; pos_kind < 3; pos_kind++)
      for (int tr = 0; tr < 2; tr++) gpt2_forward_case(r, dt, 3, 5, 11, 9, 37, pos_kind, tr != 0);
  gpt2_forward_case(r, TIDE_F32, 2, 3, 7, 4, 300, 0, false);  // more columns than a block's threads
  gpt2_forward_case(r, TIDE_BF16, 1, 1, 1, 1, 1, 1, false);   // one id, one column
  gpt2_forward_case(r, TIDE_F32, 0, 4, 5, 6, 8, 0, false);    // no rows: nothing written
  Dev d(8);
  CHECK_FAILS(cuda().embedding->gpt2_embedding_forward(d.p, d.p, d.p, d.as<int64_t>(), nullptr, 0, 1, 1, 1, 0, 1, 1, 1, 1,
                                                      TIDE_I32),
              "f32, f64, bf16 or f16");
}

// ids: a pattern name; the backward of n ids into V rows of C columns, against the CPU's i-order sums
template <class T>
static void backward_case(Rng &r, const char *pattern, int64_t n, int64_t V, int64_t C, int32_t dt) {
  std::vector<int64_t> ids(std::max<int64_t>(n, 1));
  for (int64_t i = 0; i < n; i++) {
    if (!strcmp(pattern, "equal")) ids[i] = V - 1;
    else if (!strcmp(pattern, "few")) ids[i] = r.randint(0, std::min<int64_t>(V, 4)) * (V / 4 > 0 ? V / 4 : 1) % V;
    else if (!strcmp(pattern, "sorted")) ids[i] = i * V / std::max<int64_t>(n, 1);
    else ids[i] = r.randint(0, V);
  }
  auto g = r.normal_vec<T>(std::max<int64_t>(n * C, 1), 100);
  Dev dids = upload(ids), dg = upload(g);
  std::vector<T> want(V * C);
  CHECK_OK(cpu().embedding->embedding_backward(want.data(), g.data(), ids.data(), n, V, C, dt));
  std::vector<std::vector<T>> got;
  for (uint64_t seed : {1, 2}) {
    schedule_seed(seed);
    Dev dw(V * C * sizeof(T));  // poisoned: every row must be written, zeros included
    CHECK_OK(cuda().embedding->embedding_backward(dw.p, dg.p, dids.as<int64_t>(), n, V, C, dt));
    got.push_back(download<T>(dw, V * C));
  }
  schedule_seed(1);
  char what[120];
  snprintf(what, sizeof what, "embedding backward %s ids, n %lld V %lld C %lld", pattern, (long long)n, (long long)V,
           (long long)C);
  expect_bits(got[0], want, what);
  expect_bits(got[1], got[0], "embedding backward across seeds");
}

KTEST(embedding_backward_sorted) {
  Rng r(32);
  backward_case<float>(r, "random", 700, 300, 19, TIDE_F32);    // three sort tiles, two radix passes
  backward_case<float>(r, "random", 260, 70000, 3, TIDE_F32);   // three radix passes, most rows empty
  backward_case<float>(r, "equal", 600, 5, 33, TIDE_F32);       // every id the same: one long run
  backward_case<float>(r, "few", 513, 17, 8, TIDE_F32);
  backward_case<float>(r, "sorted", 300, 40, 5, TIDE_F32);      // already in order
  backward_case<double>(r, "random", 333, 257, 6, TIDE_F64);    // 257 rows: a digit of the second pass
  backward_case<double>(r, "equal", 40, 1, 7, TIDE_F64);        // V = 1: no pass at all
  backward_case<float>(r, "random", 1, 9, 4, TIDE_F32);         // one id
  backward_case<float>(r, "random", 0, 9, 4, TIDE_F32);         // no ids: every row zero
  backward_case<float>(r, "random", 64, 256, 300, TIDE_F32);    // more columns than a block's threads
}
