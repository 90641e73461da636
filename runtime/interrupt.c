#include "interrupt.h"
#include <signal.h>

/* Signals are process-wide, so is this flag: the one place a SIGINT handler
   can leave word for code that polls (tensor ops, long kernels). */
static volatile sig_atomic_t pending;
/* While set, ops leave a pending interrupt to a loop that polls it at a safe
   point (a training step's end) instead of raising it in the middle of one. */
static volatile sig_atomic_t deferred;

void tide_interrupt_raise(void) { pending = 1; }

void tide_interrupt_clear(void) { pending = 0; }

int32_t tide_interrupt_take(void) {
  if (!pending || deferred) return 0;
  pending = 0;
  return 1;
}

int32_t tide_interrupt_defer(int32_t on) {
  int32_t was = deferred ? 1 : 0;
  deferred = on ? 1 : 0;
  return was;
}

int32_t tide_interrupt_pending(void) { return pending ? 1 : 0; }
