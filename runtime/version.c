#include "tide.h"

#ifndef TIDE_VERSION
#define TIDE_VERSION "0.1.0"
#endif

const char *tide_version(void) { return TIDE_VERSION; }
