/* The deferred Ctrl-C of tide.train (runtime/interrupt.c): while deferred,
   tide_interrupt_take leaves a pending interrupt to the loop that polls
   tide_interrupt_pending at a step's end; undeferred, the next take gets it. */
#include "interrupt.h"
#include <stdio.h>

static int failures;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

int main(void) {
  tide_interrupt_clear();
  CHECK(tide_interrupt_defer(1) == 0);
  CHECK(tide_interrupt_pending() == 0);
  tide_interrupt_raise();
  CHECK(tide_interrupt_take() == 0);    /* ops leave it alone */
  CHECK(tide_interrupt_pending() == 1); /* the loop sees it, as often as it asks */
  CHECK(tide_interrupt_pending() == 1);
  CHECK(tide_interrupt_defer(0) == 1);  /* back: the previous mode is returned */
  CHECK(tide_interrupt_take() == 1);    /* the next op takes it */
  CHECK(tide_interrupt_pending() == 0);
  CHECK(tide_interrupt_take() == 0);
  tide_interrupt_raise();               /* undeferred, as before this mode existed */
  CHECK(tide_interrupt_take() == 1);
  CHECK(tide_interrupt_defer(7) == 0 && tide_interrupt_defer(0) == 1);
  if (failures) return 1;
  printf("interrupt: passed\n");
  return 0;
}
