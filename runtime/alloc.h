/* 64-byte aligned host allocation with process-wide byte accounting, which the
   Lua face reads to run its GC when tensor memory (not the Lua heap) grows. */
#ifndef TIDE_ALLOC_H
#define TIDE_ALLOC_H
#include "tide.h"

/* Returns uninitialised 64-byte aligned memory, or NULL with an error set. */
void *tide_alloc(size_t nbytes);
/* Frees memory from tide_alloc; nbytes must be what was asked for. */
void tide_free(void *p, size_t nbytes);
/* Adds delta (negative when freed) to the live bytes the Lua face paces its GC
   by, for engine memory that is not a tensor's (a tokenizer's tables). */
void tide_mem_account(int64_t delta);

#endif
