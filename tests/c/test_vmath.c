/* Accuracy of the vectorisable f32 math (kernels/cpu/vmath.h) against libm in
   double, over a sweep of the whole f32 range. */
#include "../../kernels/cpu/vmath.h"
#include <math.h>
#include <stdio.h>

/* Distance in units in the last place between f and the double d. */
static double ulps(float f, double d) {
  if (isinf(d) || d > 3.4028234663852886e38) return isinf(f) && f > 0 ? 0 : 1e9;
  float rf = (float)d;
  if (rf == f) return 0;
  float up = nextafterf(rf, INFINITY);
  double ulp = (double)up - (double)rf;
  if (ulp == 0 || fabs(d) < 1.1754943508222875e-38) ulp = 1.401298464324817e-45; /* subnormal */
  return fabs((double)f - d) / ulp;
}

int main(void) {
  int failures = 0;
  double worst = 0, worst_x = 0, worst_sig = 0;
  long checked = 0;
  for (uint32_t bits = 0; bits < 0xffffffffu - 97; bits += 97) {
    float x;
    memcpy(&x, &bits, 4);
    if (isnan(x)) continue;
    double want = exp((double)x);
    float got = tide_expf(x);
    double u = ulps(got, want);
    if (u > worst) { worst = u; worst_x = x; }
    /* below -87, e^-x overflows f32 and 1/(1+e^-x) gives 0 where the true
       value is subnormal: the same formula (and tail) as PyTorch's CPU kernel */
    if (x > -87.0f) {
      double s = 1.0 / (1.0 + exp(-(double)x));
      double us = ulps(tide_sigmoidf(x), s);
      if (us > worst_sig) worst_sig = us;
    }
    checked++;
  }
  printf("exp: %ld inputs, worst %.2f ulp at x = %.9g\n", checked, worst, worst_x);
  printf("sigmoid (x > -87): worst %.2f ulp\n", worst_sig);
  if (worst > 2.0) { printf("FAIL: exp error above 2 ulp\n"); failures++; }
  if (worst_sig > 3.0) { printf("FAIL: sigmoid error above 3 ulp\n"); failures++; }
  float nan = NAN;
  if (!isnan(tide_expf(nan))) { printf("FAIL: exp(NaN)\n"); failures++; }
  if (tide_expf(INFINITY) != INFINITY || tide_expf(-INFINITY) != 0.0f) { printf("FAIL: exp(+-inf)\n"); failures++; }
  if (tide_expf(88.7f) == INFINITY || tide_expf(88.73f) != INFINITY) { printf("FAIL: overflow edge\n"); failures++; }
  if (tide_expf(0.0f) != 1.0f) { printf("FAIL: exp(0)\n"); failures++; }
  if (tide_sigmoidf(-200.0f) != 0.0f || tide_sigmoidf(200.0f) != 1.0f) { printf("FAIL: sigmoid tails\n"); failures++; }
  return failures ? 1 : 0;
}
