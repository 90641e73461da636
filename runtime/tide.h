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
#endif
