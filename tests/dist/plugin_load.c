/* Loads each collective plugin named on the command line as tide does
   (dlopen with RTLD_NOW, so every NCCL/MPI symbol it uses must resolve) and
   checks its table: the ABI version, the name, and every entry the core
   calls. Where no GPU or MPI job exists this is what can be checked of the
   NCCL plugin: that it was built and linked whole.
     plugin_load build/libtide_nccl.so nccl build/libtide_mpi.so mpi */
#include "dist_backend.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  int bad = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    void *lib = dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) { printf("FAIL %s: %s\n", argv[i], dlerror()); bad = 1; continue; }
    tide_dist_backend_get_fn get;
    *(void **)&get = dlsym(lib, "tide_dist_backend_get");
    const tide_dist_backend *be = get ? get() : NULL;
    if (!be) { printf("FAIL %s: no tide_dist_backend_get\n", argv[i]); bad = 1; continue; }
    int ok = be->abi == TIDE_DIST_ABI && be->name && strcmp(be->name, argv[i + 1]) == 0 && be->init &&
             be->all_reduce && be->broadcast && be->all_gather && be->reduce_scatter && be->barrier &&
             be->finalize && be->abort_job && (be->reduce_dtypes & 1u) &&
             (strcmp(be->name, "nccl") == 0 ? be->make_id != NULL : be->all_to_all != NULL && be->threads_ok != NULL);
    printf("%s %s: abi %d, name %s\n", ok ? "ok  " : "FAIL", argv[i], (int)be->abi, be->name ? be->name : "(null)");
    if (!ok) bad = 1;
  }
  return bad;
}
