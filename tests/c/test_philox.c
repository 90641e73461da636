/* Philox4x32-10 and tide's stream layout (runtime/philox.h): the published
   known-answer vectors, the counter/key mapping, golden values of every fill
   kind (the contract a CUDA kernel must reproduce), the portable log and
   sin/cos against libm, and the edge cases of bounded draws. Prints one line
   per check; exits 1 on any failure. */
#include "tensor.h"
#include "philox.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...) do { checks++; if (cond) { printf("ok   "); } else { printf("FAIL %s:%d: ", __FILE__, __LINE__); failures++; } \
  printf(__VA_ARGS__); printf("\n"); } while (0)

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static uint64_t f64_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* Random123's kat_vectors for philox4x32 with 10 rounds (counter, key ->
   output). They agree with an independent Python implementation written from
   the SC'11 paper (see the end of this file), which printed the same words. */
static void test_kat(void) {
  static const struct { uint32_t ctr[4], key[2], out[4]; } kat[3] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  static const char *names[3] = {"zeros", "all ones", "pi digits"};
  for (int k = 0; k < 3; k++) {
    uint32_t out[4];
    tide_philox4x32_10(kat[k].ctr, kat[k].key, out);
    CHECK(!memcmp(out, kat[k].out, sizeof out), "philox4x32-10 KAT %s: %08x %08x %08x %08x", names[k], out[0], out[1], out[2], out[3]);
  }
}

/* Block b of (seed, offset) is Philox on counter offset+b in words 0-1 (carrying across 32 bits), key = seed. */
static void test_block_mapping(void) {
  uint64_t seed = UINT64_C(0x123456789abcdef0), offset = UINT64_C(0xffffffff);
  uint32_t a[4], b[4];
  tide_philox_block(seed, offset, 1, a);
  uint32_t ctr[4] = {0, 1, 0, 0}, key[2] = {0x9abcdef0u, 0x12345678u};
  tide_philox4x32_10(ctr, key, b);
  CHECK(!memcmp(a, b, sizeof a), "block counter = offset + index with carry into word 1; key = seed low, high");
  tide_philox_block(UINT64_MAX, UINT64_MAX, 1, a);  /* the counter wraps mod 2^64 */
  uint32_t zero[4] = {0, 0, 0, 0}, kk[2] = {0xffffffffu, 0xffffffffu};
  tide_philox4x32_10(zero, kk, b);
  CHECK(!memcmp(a, b, sizeof a), "block counter wraps modulo 2^64");
}

static tide_tensor *empty1(int32_t dt, int64_t n) {
  tide_tensor *t = NULL;
  if (tide_empty(dt, 1, &n, TIDE_CPU, &t)) return NULL;
  return t;
}

/* Values computed by the Python model at the end of this file; they pin the
   layout of every fill kind to the bit. */
static void test_golden(void) {
  const uint64_t S1 = 42, S2 = UINT64_C(0x123456789abcdef0), O2 = UINT64_C(0xffffffff);
  tide_generator g;
  tide_tensor *t;

  g.seed = S1; g.offset = 0;
  t = empty1(TIDE_F32, 6);
  static const uint32_t rf32[6] = {0x3f1ceaf0, 0x3eefea92, 0x3d95fa80, 0x3eae8566, 0x3f7cdb21, 0x3ea774d8};
  int ok = tide_rand_(t, &g, 0, 1) == 0;
  for (int i = 0; i < 6; i++) ok = ok && f32_bits(((float *)t->data)[i]) == rf32[i];
  CHECK(ok, "rand f32 [0,1), seed 42: golden bits");
  CHECK(g.offset == 2, "rand f32: 6 values use 2 counters (offset %llu)", (unsigned long long)g.offset);
  tide_tensor_release(t);

  g.seed = S2; g.offset = O2;
  t = empty1(TIDE_F64, 3);
  static const uint64_t rf64[3] = {UINT64_C(0x3fec6aea90a12244), UINT64_C(0x3ff75cd0eec2b3de), UINT64_C(0x3fc4430684ac3400)};
  ok = tide_rand_(t, &g, -2, 3) == 0;
  for (int i = 0; i < 3; i++) ok = ok && f64_bits(((double *)t->data)[i]) == rf64[i];
  CHECK(ok, "rand f64 [-2,3), 64-bit seed, offset 2^32-1: golden bits");
  CHECK(g.offset == O2 + 2, "rand f64: 3 values use 2 counters");
  tide_tensor_release(t);

  g.seed = S1; g.offset = 5;
  t = empty1(TIDE_F32, 6);
  static const uint32_t nf32[6] = {0xbed1f5cb, 0x3fbb62f0, 0x4016b1ec, 0x3f1d382e, 0xbd985e62, 0xbfdcb88f};
  ok = tide_randn_(t, &g, 0, 1) == 0;
  for (int i = 0; i < 6; i++) ok = ok && f32_bits(((float *)t->data)[i]) == nf32[i];
  CHECK(ok, "randn f32, seed 42, offset 5: golden bits");
  CHECK(g.offset == 7, "randn f32: 6 values use 2 counters");
  tide_tensor_release(t);

  g.seed = S2; g.offset = O2;
  t = empty1(TIDE_F64, 3);
  static const uint64_t nf64[3] = {UINT64_C(0x3fe81d21f9f3fa94), UINT64_C(0xbfdd4f799f9d159c), UINT64_C(0x400fc451ad183100)};
  ok = tide_randn_(t, &g, 1.5, 2) == 0;
  for (int i = 0; i < 3; i++) ok = ok && f64_bits(((double *)t->data)[i]) == nf64[i];
  CHECK(ok, "randn f64 mean 1.5 std 2: golden bits");
  tide_tensor_release(t);

  g.seed = S1; g.offset = 0;
  t = empty1(TIDE_I64, 5);
  static const int64_t ri[5] = {465, 337, 323, 451, 656};
  ok = tide_randint_(t, &g, -5, 1000) == 0;
  for (int i = 0; i < 5; i++) ok = ok && ((int64_t *)t->data)[i] == ri[i];
  CHECK(ok, "randint [-5,1000): golden values");
  CHECK(g.offset == 3, "randint narrow range: 2 values per counter");
  tide_tensor_release(t);

  g.seed = S2; g.offset = 7;
  t = empty1(TIDE_I64, 3);
  static const int64_t rw[3] = {INT64_C(-8439139810580258665), INT64_C(-8398882844026364624), INT64_C(-5668511593971659365)};
  ok = tide_randint_(t, &g, INT64_MIN, INT64_MAX) == 0;
  for (int i = 0; i < 3; i++) ok = ok && ((int64_t *)t->data)[i] == rw[i];
  CHECK(ok, "randint [INT64_MIN, INT64_MAX): golden values from 128-bit draws");
  CHECK(g.offset == 10, "randint wide range: 1 value per counter");
  tide_tensor_release(t);
}

/* multinomial's layout: with replacement one f64 uniform per sample against
   the running sums; without, one exponential key per category (model values). */
static void test_golden_multinomial(void) {
  tide_generator g = {42, 0};
  int64_t k4 = 4, shape2[2] = {2, 5};
  tide_tensor *w = NULL, *out = NULL;
  tide_empty(TIDE_F64, 1, &k4, TIDE_CPU, &w);
  for (int i = 0; i < 4; i++) ((double *)w->data)[i] = i + 1;
  static const int64_t want_r[7] = {2, 2, 2, 2, 3, 3, 3};
  int ok = tide_multinomial(w, 7, 1, &g, &out) == 0 && out->ndim == 1 && out->shape[0] == 7;
  for (int i = 0; ok && i < 7; i++) ok = ((int64_t *)out->data)[i] == want_r[i];
  CHECK(ok, "multinomial with replacement, weights 1..4, seed 42: golden samples");
  CHECK(g.offset == 4, "multinomial with replacement: 7 samples use 4 counters");
  tide_tensor_release(w);
  tide_tensor_release(out);
  static const double rows[10] = {1, 0, 3, 4, 2, 5, 1, 0, 0.5, 2};
  static const int64_t want_n[6] = {2, 3, 0, 1, 0, 4};
  tide_empty(TIDE_F64, 2, shape2, TIDE_CPU, &w);
  memcpy(w->data, rows, sizeof rows);
  g.offset = 3;
  ok = tide_multinomial(w, 3, 0, &g, &out) == 0 && out->ndim == 2 && out->shape[0] == 2 && out->shape[1] == 3;
  for (int i = 0; ok && i < 6; i++) ok = ((int64_t *)out->data)[i] == want_n[i];
  CHECK(ok, "multinomial without replacement, 2 rows: golden samples");
  CHECK(g.offset == 8, "multinomial without replacement: 2 rows x 5 categories use 5 counters");
  tide_tensor_release(w);
  tide_tensor_release(out);
}

/* randperm and bernoulli_ (once Lua loops over tensor memory): the values the
   Lua versions drew with these seeds, and their argument checks. */
static void test_randperm_bernoulli(void) {
  tide_generator g = {42, 0};
  tide_tensor *p = NULL;
  static const int64_t want_p[10] = {1, 0, 9, 4, 8, 2, 3, 6, 5, 7};
  int ok = tide_randperm(10, TIDE_I64, &g, &p) == 0 && p->ndim == 1 && p->shape[0] == 10 && p->dtype == TIDE_I64;
  for (int i = 0; ok && i < 10; i++) ok = ((int64_t *)p->data)[i] == want_p[i];
  CHECK(ok, "randperm(10), seed 42: the Lua version's permutation");
  CHECK(g.offset == 9, "randperm(10): n - 1 draws, one counter each");
  tide_tensor_release(p);
  p = NULL;
  CHECK(tide_randperm(1, TIDE_I32, &g, &p) == 0 && p->dtype == TIDE_I32 && ((int32_t *)p->data)[0] == 0 && g.offset == 9,
        "randperm(1) as i32: [0] without a draw");
  tide_tensor_release(p);
  CHECK(tide_randperm(-1, TIDE_I64, &g, &p) != 0 && strstr(tide_last_error(), "non-negative"), "randperm: n < 0 fails");
  CHECK(tide_randperm(300, TIDE_U8, &g, &p) != 0 && strstr(tide_last_error(), "u8 cannot hold the values 0..299"),
        "randperm: a dtype too small fails");
  CHECK(tide_randperm(3, TIDE_I64, NULL, &p) != 0 && strstr(tide_last_error(), "generator is NULL"), "randperm: NULL generator");

  tide_generator g2 = {7, 0};
  tide_tensor *t = empty1(TIDE_F32, 13);
  static const float want_b[13] = {0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0};
  ok = tide_bernoulli_(t, &g2, 0.3) == 0;
  for (int i = 0; ok && i < 13; i++) ok = ((float *)t->data)[i] == want_b[i];
  CHECK(ok, "bernoulli_(0.3) f32, seed 7: the Lua version's values");
  CHECK(g2.offset == 7, "bernoulli_: one f64 uniform per element, two per counter");
  CHECK(tide_bernoulli_(t, &g2, 1.5) != 0 && strstr(tide_last_error(), "p must be in [0, 1]"), "bernoulli_: p out of range");
  CHECK(tide_bernoulli_(t, NULL, 0.5) != 0 && strstr(tide_last_error(), "generator is NULL"), "bernoulli_: NULL generator");
  CHECK(tide_bernoulli_(NULL, &g2, 0.5) != 0 && strstr(tide_last_error(), "expected a tensor"), "bernoulli_: NULL tensor");
  CHECK(g2.offset == 7, "failed calls leave the stream where it was");
  tide_tensor_release(t);
}

/* The portable transforms stay within a few ulp of libm across their domains. */
static void test_transforms(void) {
  double worst = 0;
  uint64_t x = 88172645463325252u;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    int p = i & 1 ? 53 : 32;
    uint64_t n = (x >> (64 - p)) + 1;
    double got = tide_philox_neglog(n, p), want = -log((double)n * pow(2, -p));
    if (want != 0) worst = fmax(worst, fabs(got - want) / want);
    else if (got != 0) worst = 1;
  }
  CHECK(worst < 1e-15, "neglog vs libm: worst relative error %.3g", worst);
  CHECK(tide_philox_neglog(UINT64_C(1) << 53, 53) == 0 && !signbit(tide_philox_neglog(UINT64_C(1) << 53, 53)), "neglog(1) is +0");
  CHECK(fabs(tide_philox_neglog(1, 32) - 32 * log(2.0)) < 1e-14, "neglog(2^-32) = 32 ln 2");
  worst = 0;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    int p = i & 1 ? 53 : 32;
    uint64_t n = x >> (64 - p);
    double c, s, a = 2 * M_PI * ((double)n * pow(2, -p));
    tide_philox_sincos2pi(n, p, &c, &s);
    worst = fmax(worst, fmax(fabs(c - cos(a)), fabs(s - sin(a))));
  }
  CHECK(worst < 2e-15, "sincos2pi vs libm: worst absolute error %.3g", worst);
  double c, s;
  tide_philox_sincos2pi(UINT64_C(1) << 30, 32, &c, &s);
  CHECK(c == 0 && s == 1, "sincos2pi: a quarter turn is exactly (0, 1)");
  CHECK(tide_philox_u24(0xffffffffu) < 1 && tide_philox_u53(0xffffffffu, 0xffffffffu) < 1, "uniform bits never reach 1");
}

/* floor(x*r/2^64) and floor(x*r/2^128) against exact arithmetic. */
static void test_bounded(void) {
  CHECK(tide_philox_bounded64(UINT64_MAX, 10) == 9 && tide_philox_bounded64(0, 10) == 0, "bounded64 covers [0, r)");
  CHECK(tide_philox_bounded128(UINT64_MAX, UINT64_MAX, UINT64_MAX) == UINT64_MAX - 1, "bounded128 top of range is r-1");
  CHECK(tide_philox_bounded128(UINT64_C(1) << 63, 0, 6) == 3, "bounded128 half of 6 is 3");
  int ok = 1;
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 10000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    uint64_t xh = x, xl = x * 0x2545F4914F6CDD1Du, r = (x >> 3) | 1;
    unsigned __int128 lo = (unsigned __int128)xl * r, hi = (unsigned __int128)xh * r;
    uint64_t want = (uint64_t)((hi + (lo >> 64)) >> 64);
    ok = ok && tide_philox_bounded128(xh, xl, r) == want;
  }
  CHECK(ok, "bounded128 matches 128x64-bit arithmetic on 10000 random inputs");
}

/* Rounding to the output type never leaves [low, high); impossible intervals are errors. */
static void test_bounds(void) {
  tide_generator g = {7, 0};
  tide_tensor *t = empty1(TIDE_BF16, 100000);
  int ok = tide_rand_(t, &g, 0, 1) == 0;
  for (int i = 0; i < 100000; i++) {
    float v = tide_bf16_to_f32(((uint16_t *)t->data)[i]);
    ok = ok && v >= 0 && v < 1;
  }
  CHECK(ok, "rand bf16 [0,1): all values inside after rounding");
  tide_tensor_release(t);
  t = empty1(TIDE_F16, 1000);
  ok = tide_rand_(t, &g, 1.0, 1.0001) == 0;
  for (int i = 0; i < 1000; i++) ok = ok && tide_f16_to_f32(((uint16_t *)t->data)[i]) == 1.0f;
  CHECK(ok, "rand f16 [1, 1.0001): the only f16 value inside is 1");
  uint64_t before = g.offset;
  CHECK(tide_rand_(t, &g, 1.0001, 1.0002) == -1 && strstr(tide_last_error(), "no f16 value"), "rand f16 with no representable value: %s", tide_last_error());
  CHECK(g.offset == before, "a failed call does not advance the generator");
  CHECK(tide_rand_(t, &g, 0, 1e6) == -1 && strstr(tide_last_error(), "exceeds the range"), "rand f16 beyond 65504: %s", tide_last_error());
  tide_tensor_release(t);
  t = empty1(TIDE_F32, 4096);
  float lo = 1.0f, hi = nextafterf(1.0f, 2.0f);  /* one float wide: everything is lo */
  ok = tide_rand_(t, &g, lo, hi) == 0;
  for (int i = 0; i < 4096; i++) ok = ok && ((float *)t->data)[i] == lo;
  CHECK(ok, "rand f32 on a one-ulp interval gives its low end");
  tide_tensor_release(t);
}

int main(void) {
  test_kat();
  test_block_mapping();
  test_golden();
  test_golden_multinomial();
  test_randperm_bernoulli();
  test_transforms();
  test_bounded();
  test_bounds();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}

/* The independent Python model that produced the KAT check and the golden
   values above (python3; floats are IEEE doubles, each op rounded alone):

MASK = 0xffffffff
def philox(c, k):
    c, k = list(c), list(k)
    for r in range(10):
        if r: k = [(k[0] + 0x9E3779B9) & MASK, (k[1] + 0xBB67AE85) & MASK]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK]
    return c
def block(seed, offset, b):
    c = (offset + b) % 2**64
    return philox([c & MASK, c >> 32, 0, 0], [seed & MASK, seed >> 32])
def neglog(n, p):
    b = n.bit_length() - 1; m = float(n) * 2.0**-b; e = b - p
    if m > 1.4142135623730951: m = m * 0.5; e += 1
    s = (m - 1.0) / (m + 1.0); z = s * s; q = 1.0 / 23
    for d in (21, 19, 17, 15, 13, 11, 9, 7, 5, 3): q = 1.0 / d + z * q
    t = 2.0 * s; e = float(e)
    return 0.0 - (e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + (t + t * (z * q))))
def sincos2pi(n, p):      # returns (cos, sin)
    qt = 1 << (p - 2); k = (n + (qt >> 1)) >> (p - 2)
    a = (float(n - k * qt) * 2.0**(2 - p)) * 1.5707963267948966; z = a * a
    f = lambda j: float(math.factorial(j))
    ps = -1.0 / f(19)
    for j in (17, 15, 13, 11, 9, 7, 5, 3): ps = (-1)**((j - 1) // 2) / f(j) + z * ps
    pc = -1.0 / f(18)
    for j in (16, 14, 12, 10, 8, 6, 4, 2): pc = (-1)**(j // 2) / f(j) + z * pc
    sa, ca = a + (a * z) * ps, 1.0 + z * pc
    return [(ca, sa), (-sa, ca), (-ca, -sa), (sa, -ca)][k & 3]
u24 = lambda w: float(w >> 8) / 2**24                      # f32 family
u53 = lambda lo, hi: float(((hi << 32) | lo) >> 11) / 2**53  # f64
f32: struct.unpack('f', struct.pack('f', lo + u24(w) * (hi - lo))) per word;
f64: lo + u53(w0, w1) * (hi - lo), lo + u53(w2, w3) * (hi - lo) per block;
normal f32: r = sqrt(2 * neglog(w0 + 1, 32)); (c, s) = sincos2pi(w1, 32); r*c, r*s
  (then words 2, 3), each mean + std * z rounded to f32;
normal f64: r from neglog((w1:w0 >> 11) + 1, 53), angle from (w3:w2 >> 11, 53);
randint: lo + ((w1:w0) * (hi - lo) >> 64), two per block (range <= 2^32),
  else lo + ((w3:w2:w1:w0) * (hi - lo) >> 128), one per block;
multinomial with replacement: sample i takes u53 of slot i % 2 of block i // 2,
  then the first c with cdf[c] > u * cdf[-1] (cdf: running f64 sums);
multinomial without: element r*K + c (same slots) gives x = (hi:lo) >> 11 and
  key neglog(x + 1, 53) / w[c] for w[c] > 0; sorted (key, c), first n taken.
*/
