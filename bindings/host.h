/* The LuaJIT host shared by the script runner and the REPL: a state with
   tide loaded as a global, protected calls with tracebacks, and Ctrl-C
   delivered to running Lua code as an error. */
#ifndef TIDE_HOST_H
#define TIDE_HOST_H
#include <lua.h>

/* A new Lua state with the standard libraries, tide's module path and the
   global `tide`; NULL (message on stderr) if tide fails to load. */
lua_State *tide_host_new(const char *argv0);
/* lua_pcall with a traceback handler; while it runs, SIGINT raises
   "interrupted" inside the running Lua code instead of killing the process. */
int tide_host_pcall(lua_State *L, int nargs, int nresults);
/* Prints the error on top of the stack to stderr and pops it. */
void tide_host_report(lua_State *L);
/* Runs the REPL until end of input; returns the process exit status. */
int tide_repl_run(lua_State *L);

#endif
