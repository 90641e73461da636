#include "interrupt.h"
#include <signal.h>

/* Signals are process-wide, so is this flag: the one place a SIGINT handler
   can leave word for code that polls (tensor ops, long kernels). */
static volatile sig_atomic_t pending;

void tide_interrupt_raise(void) { pending = 1; }

void tide_interrupt_clear(void) { pending = 0; }

int32_t tide_interrupt_take(void) {
  if (!pending) return 0;
  pending = 0;
  return 1;
}
