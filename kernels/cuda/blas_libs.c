/* cuBLAS, loaded on first use rather than linked. Linking cuBLAS (and the
   cuBLASLt it pulls in) costs every tide process about 200 MB of RSS and up
   to half a second at startup for their relocations, GPU or not: a REPL, a
   test or a data-preparation run would pay it for nothing. So the engine
   links only the CUDA runtime and reaches cuBLAS through the table below,
   filled by dlopen/dlsym the first time a caller asks for it. The table is
   the process's one copy of the library's entry points (like the library
   itself), set once under pthread_once and read-only after. cuBLASLt, which
   the matmul kernels call (kernels/cuda/matmul.cu), is loaded the same way
   into the table of cublaslt_api.h. */
#include "tide.h"
#include "error.h"
#include "cublaslt_api.h"
#ifdef TIDE_HAVE_CUDA
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

struct tide_cublas_api {
  void *lib;
  int (*get_property)(int type, int *value);  /* cublasGetProperty */
  char error[256];                             /* why loading failed, or "" */
};

static struct tide_cublas_api cublas_api;
static pthread_once_t cublas_once = PTHREAD_ONCE_INIT;

static void cublas_load(void) {
  const char *names[] = { TIDE_CUBLAS_PATH, TIDE_CUBLAS_SONAME };
  for (int i = 0; i < 2 && !cublas_api.lib; i++) cublas_api.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!cublas_api.lib) {
    snprintf(cublas_api.error, sizeof cublas_api.error, "cannot load cuBLAS (%s): %s", TIDE_CUBLAS_SONAME, dlerror());
    return;
  }
  *(void **)&cublas_api.get_property = dlsym(cublas_api.lib, "cublasGetProperty");
  if (!cublas_api.get_property)
    snprintf(cublas_api.error, sizeof cublas_api.error, "cuBLAS has no cublasGetProperty: %s", dlerror());
}

/* The loaded table, or NULL with the reason as the last error. */
static const struct tide_cublas_api *cublas(void) {
  pthread_once(&cublas_once, cublas_load);
  if (cublas_api.error[0]) {
    tide_fail("%s", cublas_api.error);
    return NULL;
  }
  return &cublas_api;
}

static struct tide_cublaslt_api lt_api;
static char lt_error[256];
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;

static void cublaslt_load(void) {
  const char *names[] = { TIDE_CUBLASLT_PATH, TIDE_CUBLASLT_SONAME };
  void *lib = NULL;
  for (int i = 0; i < 2 && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(lt_error, sizeof lt_error, "cannot load cuBLASLt (%s): %s", TIDE_CUBLASLT_SONAME, dlerror());
    return;
  }
  struct { void **slot; const char *name; } syms[] = {
    { (void **)&lt_api.Create, "cublasLtCreate" },
    { (void **)&lt_api.Destroy, "cublasLtDestroy" },
    { (void **)&lt_api.MatmulDescCreate, "cublasLtMatmulDescCreate" },
    { (void **)&lt_api.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute" },
    { (void **)&lt_api.MatmulDescDestroy, "cublasLtMatmulDescDestroy" },
    { (void **)&lt_api.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate" },
    { (void **)&lt_api.MatrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute" },
    { (void **)&lt_api.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy" },
    { (void **)&lt_api.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate" },
    { (void **)&lt_api.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute" },
    { (void **)&lt_api.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy" },
    { (void **)&lt_api.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic" },
    { (void **)&lt_api.Matmul, "cublasLtMatmul" },
    { (void **)&lt_api.GetStatusString, "cublasLtGetStatusString" },
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    *syms[i].slot = dlsym(lib, syms[i].name);
    if (!*syms[i].slot) {
      snprintf(lt_error, sizeof lt_error, "cuBLASLt has no %s: %s", syms[i].name, dlerror());
      return;
    }
  }
}
#endif

const struct tide_cublaslt_api *tide_cublaslt(void) {
#ifdef TIDE_HAVE_CUDA
  pthread_once(&lt_once, cublaslt_load);
  if (lt_error[0]) {
    tide_fail("%s", lt_error);
    return NULL;
  }
  return &lt_api;
#else
  tide_fail("cuBLASLt: tide was built without CUDA");
  return NULL;
#endif
}

int tide_cuda_blas_version(void) {
#ifdef TIDE_HAVE_CUDA
  const struct tide_cublas_api *b = cublas();
  int major = 0, minor = 0, patch = 0;
  /* libraryPropertyType: MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2 */
  if (!b || b->get_property(0, &major) != 0 || b->get_property(1, &minor) != 0 || b->get_property(2, &patch) != 0)
    return 0;
  return major * 10000 + minor * 100 + patch;
#else
  return 0;
#endif
}
