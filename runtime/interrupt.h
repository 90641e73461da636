/* A pending Ctrl-C, set from a signal handler and polled by running code. */
#ifndef TIDE_INTERRUPT_H
#define TIDE_INTERRUPT_H
#include "tide.h"

/* Marks an interrupt as pending; async-signal-safe. */
void tide_interrupt_raise(void);
/* Forgets a pending interrupt. */
void tide_interrupt_clear(void);

#endif
