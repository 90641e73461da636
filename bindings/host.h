/* The LuaJIT host shared by the script runner and the REPL: a state with
   tide loaded as a global, protected calls with tracebacks, and Ctrl-C
   delivered to running Lua code as an error. */
#ifndef TIDE_HOST_H
#define TIDE_HOST_H
#include <lua.h>
#include <stdint.h>

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

/* `tide launch`'s supervisor (bindings/launch.c): runs n commands (argvs[i], NULL-terminated, with the
   "K=V" strings of envs[i] added to the environment), copying each line they print with prefixes[i]
   before it (or, with tagged, one mpirun --tag-output whose "[1,R]<stdout>:" tags become "[rank R] ");
   when one exits non-zero the others get SIGTERM, then SIGKILL after grace_s seconds. Returns the first
   failure's exit code (128 + signal for a signal), 0 when all succeed. Called from Lua through the FFI. */
int tide_launch_run(int32_t n, char *const *const *argvs, char *const *const *envs, const char *const *prefixes,
                    int32_t tagged, double grace_s);

#endif
