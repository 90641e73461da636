/* The tide executable: `tide FILE.lua [args]`, `tide -e CODE`, `tide test
   PATHS`, or the REPL. Argument handling lives in lua/tide/cli.lua; this file
   only hosts the state and starts the REPL when the CLI asks for it. */
#include "host.h"
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* stdio buffers a file or pipe in blocks, so a redirected training run would
     log nothing until it exits (or 4 KB later); whole lines cost little */
  if (!isatty(STDOUT_FILENO)) setvbuf(stdout, NULL, _IOLBF, 0);
  lua_State *L = tide_host_new(argv[0]);
  if (!L) return 1;
  lua_getglobal(L, "require");
  lua_pushstring(L, "tide.cli");
  if (tide_host_pcall(L, 1, 1) != 0) {
    tide_host_report(L);
    lua_close(L);
    return 1;
  }
  lua_getfield(L, -1, "main");
  lua_newtable(L);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  int status = 1;
  if (tide_host_pcall(L, 1, 1) != 0) {
    tide_host_report(L);
  } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "repl") == 0) {
    lua_pop(L, 1);
    status = tide_repl_run(L);
  } else {
    status = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_close(L);  /* runs every finaliser, so tensors are freed before exit */
  return status;
}
