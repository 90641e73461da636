#include "host.h"
#include "interrupt.h"
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>
#include <libgen.h>

/* The state that a SIGINT should interrupt. A signal handler cannot be given
   an argument, so this is the only way for it to reach the running code; the
   pending flag itself is the engine's (runtime/interrupt.c). */
static lua_State *volatile interrupt_target;

/* Raises "interrupted" inside interpreted Lua code. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  /* JIT-compiled traces never run hooks, so tensor ops also poll the flag
     (lua/tide/tensor.lua); whichever sees it first takes it */
  if (!tide_interrupt_take()) return;
  luaL_error(L, "interrupted");
}

static void on_sigint(int sig) {
  (void)sig;
  signal(SIGINT, SIG_DFL);  /* a second Ctrl-C before the first is seen kills the process */
  tide_interrupt_raise();
  if (interrupt_target)
    lua_sethook(interrupt_target, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int tide_host_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  interrupt_target = L;
  tide_interrupt_clear();
  signal(SIGINT, on_sigint);
  int status = lua_pcall(L, nargs, nresults, base);
  signal(SIGINT, SIG_DFL);
  interrupt_target = NULL;
  lua_remove(L, base);
  return status;
}

void tide_host_report(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "tide: %s\n", msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(L, 1);
}

/* Module search path: $TIDE_LUA_PATH, share/tide/lua beside an installed
   binary, then the source tree this binary was built from. */
static void set_paths(lua_State *L, const char *argv0) {
  char exe[PATH_MAX] = "", buf[4 * PATH_MAX + 256];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) exe[n] = 0;
  else if (argv0) snprintf(exe, sizeof exe, "%s", argv0);
  char *dir = dirname(exe);
  const char *env = getenv("TIDE_LUA_PATH");
  /* an installed tide uses the library installed beside it, not the tree it was built from */
  snprintf(buf, sizeof buf, "%s%s%s/../share/tide/lua/?.lua;%s/../share/tide/lua/?/init.lua;%s/?.lua;%s/?/init.lua;",
           env ? env : "", env ? ";" : "", dir, dir, TIDE_LUA_DIR, TIDE_LUA_DIR);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushstring(L, buf);
  lua_insert(L, -2);
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

lua_State *tide_host_new(const char *argv0) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "tide: cannot create a Lua state (out of memory)\n");
    return NULL;
  }
  luaL_openlibs(L);
  set_paths(L, argv0);
  lua_getglobal(L, "require");
  lua_pushstring(L, "tide");
  if (tide_host_pcall(L, 1, 1) != 0) {
    tide_host_report(L);
    lua_close(L);
    return NULL;
  }
  lua_setglobal(L, "tide");
  return L;
}
