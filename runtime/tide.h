/* Include this, not tide_api.h: it adds what the FFI-readable header leaves
   out (guards and the fixed-width integer types). */
#ifndef TIDE_H
#define TIDE_H
#include <stdint.h>
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
#include "tide_api.h"
#ifdef __cplusplus
}
#endif

/* The most dimensions a tensor has (the shape[8] of tide_tensor above). */
#define TIDE_MAX_DIMS 8

#endif
