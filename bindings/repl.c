/* Minimal REPL: replaced by the full libedit front end. */
#include "host.h"
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

int tide_repl_run(lua_State *L) {
  char line[4096];
  while (fgets(line, sizeof line, stdin)) {
    if (luaL_loadstring(L, line) != 0) { tide_host_report(L); continue; }
    if (tide_host_pcall(L, 0, 0) != 0) tide_host_report(L);
  }
  return 0;
}
