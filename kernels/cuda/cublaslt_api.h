/* The part of cuBLASLt the matmul kernels use (kernels/cuda/matmul.cu),
   declared here rather than taken from cublasLt.h: the library is loaded
   with dlopen on first use (kernels/cuda/blas_libs.c), never linked, and
   the emulated build (tests/cudaemu/cublaslt_emu.cc) answers the same table
   with a reference GEMM on a machine without CUDA's headers. The names,
   values and signatures are cuBLASLt's own (cublasLt.h, cublas_api.h,
   library_types.h of CUDA 12/13; the epilogue values and attributes read from
   /usr/local/cuda-13.0/include/cublasLt.h, cublasLtEpilogue_t and
   cublasLtMatmulDescAttributes_t, and matching NVIDIA's nvmath-python list of
   cublasLt.Epilogue); every entry point takes the arguments the
   library does, so a call through the table is a call of the library. */
#ifndef TIDE_CUBLASLT_API_H
#define TIDE_CUBLASLT_API_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int tide_lt_status;                          /* cublasStatus_t */
enum { TIDE_LT_SUCCESS = 0, TIDE_LT_NOT_INITIALIZED = 1, TIDE_LT_INVALID_VALUE = 7, TIDE_LT_NOT_SUPPORTED = 15 };

/* cudaDataType_t */
enum { TIDE_LT_R_32F = 0, TIDE_LT_R_64F = 1, TIDE_LT_R_16BF = 14 };
/* cublasComputeType_t */
enum { TIDE_LT_COMPUTE_32F = 68, TIDE_LT_COMPUTE_64F = 70, TIDE_LT_COMPUTE_32F_FAST_TF32 = 77 };
/* cublasOperation_t (int32_t attribute values) */
enum { TIDE_LT_OP_N = 0, TIDE_LT_OP_T = 1 };
/* cublasLtOrder_t: the layout's CUBLASLT_MATRIX_LAYOUT_ORDER (default COL) */
enum { TIDE_LT_ORDER_COL = 0, TIDE_LT_ORDER_ROW = 1 };

/* cublasLtMatrixLayoutAttribute_t */
enum {
  TIDE_LT_LAYOUT_TYPE = 0,                  /* uint32_t, cudaDataType_t */
  TIDE_LT_LAYOUT_ORDER = 1,                 /* int32_t, cublasLtOrder_t */
  TIDE_LT_LAYOUT_ROWS = 2,                  /* uint64_t */
  TIDE_LT_LAYOUT_COLS = 3,                  /* uint64_t */
  TIDE_LT_LAYOUT_LD = 4,                    /* int64_t */
  TIDE_LT_LAYOUT_BATCH_COUNT = 5,           /* int32_t */
  TIDE_LT_LAYOUT_STRIDED_BATCH_OFFSET = 6,  /* int64_t, elements */
};
/* cublasLtMatmulDescAttributes_t */
enum {
  TIDE_LT_DESC_COMPUTE_TYPE = 0,  /* int32_t */
  TIDE_LT_DESC_SCALE_TYPE = 1,    /* int32_t, cudaDataType_t */
  TIDE_LT_DESC_POINTER_MODE = 2,  /* int32_t; default 0: alpha and beta are host pointers */
  TIDE_LT_DESC_TRANSA = 3,        /* int32_t, cublasOperation_t */
  TIDE_LT_DESC_TRANSB = 4,        /* int32_t */
  TIDE_LT_DESC_EPILOGUE = 7,      /* uint32_t, cublasLtEpilogue_t; default DEFAULT */
  /* void *: the bias (read, D's rows long, packed) or the bias gradient (written); default NULL. The
     heuristic reads its value for the alignment it expects. */
  TIDE_LT_DESC_BIAS_POINTER = 8,
  TIDE_LT_DESC_EPILOGUE_AUX_POINTER = 11,   /* void *: GELU's input, written by GELU_AUX(_BIAS); default NULL */
  TIDE_LT_DESC_EPILOGUE_AUX_LD = 12,        /* int64_t: the aux matrix's ld, >= D's rows, a multiple of 8 for GELU */
  TIDE_LT_DESC_EPILOGUE_AUX_DATA_TYPE = 22, /* int32_t, cudaDataType_t; default -1: D's type */
  TIDE_LT_DESC_BIAS_DATA_TYPE = 26,         /* int32_t, cudaDataType_t; default -1: D's type */
};
/* cublasLtEpilogue_t. BIAS adds the bias vector (one element per row of D, broadcast over columns) before the
   activation; the _AUX forms also write the activation's input to the aux matrix (D's shape, ld AUX_LD);
   BGRADA writes the sums of op(A) over k (one per row of D) to the bias pointer, BGRADB those of op(B) (one
   per column of D), beside the plain product. */
enum {
  TIDE_LT_EPILOGUE_DEFAULT = 1,
  TIDE_LT_EPILOGUE_BIAS = 4,
  TIDE_LT_EPILOGUE_GELU = 32,
  TIDE_LT_EPILOGUE_GELU_BIAS = 36,
  TIDE_LT_EPILOGUE_GELU_AUX = 160,
  TIDE_LT_EPILOGUE_GELU_AUX_BIAS = 164,
  TIDE_LT_EPILOGUE_BGRADA = 256,
  TIDE_LT_EPILOGUE_BGRADB = 512,
};
/* cublasLtMatmulPreferenceAttributes_t */
enum {
  TIDE_LT_PREF_MAX_WORKSPACE_BYTES = 1,  /* uint64_t, default 0 */
  /* uint32_t, default 256: algorithms kept must work with pointers this aligned (every batch entry's) */
  TIDE_LT_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  TIDE_LT_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  TIDE_LT_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  TIDE_LT_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

typedef struct tide_lt_context *tide_lt_handle;      /* cublasLtHandle_t */
typedef struct tide_lt_desc_opaque *tide_lt_desc;    /* cublasLtMatmulDesc_t */
typedef struct tide_lt_layout_opaque *tide_lt_layout; /* cublasLtMatrixLayout_t */
typedef struct tide_lt_pref_opaque *tide_lt_pref;    /* cublasLtMatmulPreference_t */
typedef struct { uint64_t data[8]; } tide_lt_algo;   /* cublasLtMatmulAlgo_t */
typedef struct {                                     /* cublasLtMatmulHeuristicResult_t */
  tide_lt_algo algo;
  size_t workspaceSize;
  tide_lt_status state;
  float wavesCount;
  int reserved[4];
} tide_lt_heuristic;

/* The entry points, named after the library's functions without "cublasLt". */
struct tide_cublaslt_api {
  tide_lt_status (*Create)(tide_lt_handle *handle);
  tide_lt_status (*Destroy)(tide_lt_handle handle);
  tide_lt_status (*MatmulDescCreate)(tide_lt_desc *desc, int32_t compute_type, int32_t scale_type);
  tide_lt_status (*MatmulDescSetAttribute)(tide_lt_desc desc, int32_t attr, const void *buf, size_t size);
  tide_lt_status (*MatmulDescDestroy)(tide_lt_desc desc);
  tide_lt_status (*MatrixLayoutCreate)(tide_lt_layout *layout, int32_t type, uint64_t rows, uint64_t cols, int64_t ld);
  tide_lt_status (*MatrixLayoutSetAttribute)(tide_lt_layout layout, int32_t attr, const void *buf, size_t size);
  tide_lt_status (*MatrixLayoutDestroy)(tide_lt_layout layout);
  tide_lt_status (*MatmulPreferenceCreate)(tide_lt_pref *pref);
  tide_lt_status (*MatmulPreferenceSetAttribute)(tide_lt_pref pref, int32_t attr, const void *buf, size_t size);
  tide_lt_status (*MatmulPreferenceDestroy)(tide_lt_pref pref);
  tide_lt_status (*MatmulAlgoGetHeuristic)(tide_lt_handle handle, tide_lt_desc desc, tide_lt_layout a, tide_lt_layout b,
                                           tide_lt_layout c, tide_lt_layout d, tide_lt_pref pref, int requested,
                                           tide_lt_heuristic *results, int *returned);
  /* D = alpha op(A) op(B) + beta C; stream is a cudaStream_t */
  tide_lt_status (*Matmul)(tide_lt_handle handle, tide_lt_desc desc, const void *alpha, const void *a, tide_lt_layout adesc,
                           const void *b, tide_lt_layout bdesc, const void *beta, const void *c, tide_lt_layout cdesc,
                           void *d, tide_lt_layout ddesc, const tide_lt_algo *algo, void *workspace, size_t workspace_size,
                           void *stream);
  const char *(*GetStatusString)(tide_lt_status status);
};

/* The table, loaded on first call (the library under nvcc, the reference GEMM
   under the emulator); NULL with the reason as the last error when cuBLASLt
   cannot be loaded. */
const struct tide_cublaslt_api *tide_cublaslt(void);

#ifdef __cplusplus
}
#endif
#endif
