/* tide's flat C API. LuaJIT's ffi.cdef reads this file as it is, so it holds
   no preprocessor lines: C code includes it through runtime/tide.h, which
   adds the guards and <stdint.h>. Every function that can fail returns 0 on
   success or -1 with the reason in tide_last_error(); none raises a Lua error
   or calls back into Lua. Dimensions are 0-based here; the Lua face converts
   its 1-based and negative ones. Index tensors hold 0-based values (token ids
   are indices). Functions that return a new tensor write it to *out with one
   reference owned by the caller. */

enum tide_dtype {
  TIDE_F32 = 0, TIDE_F64 = 1, TIDE_BF16 = 2, TIDE_F16 = 3,
  TIDE_I32 = 4, TIDE_I64 = 5, TIDE_U8 = 6, TIDE_BOOL = 7, TIDE_U16 = 8,
  TIDE_NUM_DTYPES = 9
};

enum tide_unary_op {
  TIDE_NEG = 0, TIDE_ABS, TIDE_EXP, TIDE_LOG, TIDE_SQRT, TIDE_RSQRT, TIDE_TANH,
  TIDE_SIGMOID, TIDE_RELU, TIDE_GELU, TIDE_NOT, TIDE_SIN, TIDE_COS, TIDE_FLOOR,
  TIDE_CEIL, TIDE_ROUND, TIDE_SIGN, TIDE_LOG1P, TIDE_EXPM1, TIDE_SQUARE,
  TIDE_RECIPROCAL, TIDE_ISNAN, TIDE_ISINF, TIDE_NUM_UNARY
};

enum tide_binary_op {
  TIDE_ADD = 0, TIDE_SUB, TIDE_MUL, TIDE_DIV, TIDE_POW, TIDE_MAXIMUM,
  TIDE_MINIMUM, TIDE_EQ, TIDE_NE, TIDE_LT, TIDE_LE, TIDE_GT, TIDE_GE,
  TIDE_AND, TIDE_OR, TIDE_XOR, TIDE_FMOD, TIDE_NUM_BINARY
};

enum tide_reduce_op {
  TIDE_SUM = 0, TIDE_MEAN, TIDE_MAX, TIDE_MIN, TIDE_ARGMAX, TIDE_ARGMIN,
  TIDE_PROD, TIDE_NUM_REDUCE
};

typedef struct tide_storage tide_storage;

/* A tensor handle: a strided view of a refcounted storage. Lua reads the
   fields directly (shape, strides, dtype) so cheap queries cost no call. */
typedef struct tide_tensor {
  tide_storage *storage;
  char *data;             /* address of the element at offset */
  int64_t shape[8];
  int64_t stride[8];      /* in elements */
  int64_t offset;         /* in elements, from the start of storage */
  int64_t numel;
  int32_t ndim;
  int32_t dtype;
  int32_t device;         /* -1: CPU */
  int32_t refcount;
} tide_tensor;

/* Philox4x32-10 stream: (seed, offset) fully determine what comes next. */
typedef struct tide_generator {
  uint64_t seed;
  uint64_t offset;
} tide_generator;

typedef struct tide_mem_stats {
  int64_t live_bytes;
  int64_t peak_bytes;
  int64_t total_allocated;
  int64_t allocations;
  int64_t cached_bytes;   /* freed large blocks kept for reuse */
  int64_t cache_limit;
} tide_mem_stats;

/* errors, version, threads, memory ------------------------------------------ */

/* The message of this thread's last failed call. */
const char *tide_last_error(void);
/* 1 when the last error is a device running out of memory (the Lua layer collects garbage and retries once). */
int tide_last_error_is_oom(void);
/* tide's version, "MAJOR.MINOR.PATCH". */
const char *tide_version(void);
/* This header's text, compiled into the executable for ffi.cdef. */
const char *tide_api_header(void);
/* Sets the threads used by CPU kernels and OpenBLAS; n outside 1..tide_max_threads() is an error. */
int tide_set_num_threads(int32_t n);
/* The most threads tide_set_num_threads accepts: 4 per online core. */
int32_t tide_max_threads(void);
/* The threads CPU kernels use. */
int32_t tide_get_num_threads(void);
/* Fills s with the engine's memory counters. */
void tide_mem_get_stats(tide_mem_stats *s);
/* Bytes held by live tensors right now (what Lua's GC is paced by). */
int64_t tide_mem_live_bytes(void);
/* Returns every cached free block to the system. */
void tide_mem_empty_cache(void);
/* Bounds the bytes of freed blocks kept for reuse; < 0: the default, a quarter of RAM. */
void tide_mem_set_cache_limit(int64_t bytes);
/* Bytes per element of dtype (0 for an invalid code). */
int32_t tide_dtype_size(int32_t dtype);
/* "f32", "i64", ... for a dtype code ("invalid" otherwise). */
const char *tide_dtype_name(int32_t dtype);
/* The dtype two operands' result takes (PyTorch's promotion); -1 for invalid codes. */
int32_t tide_promote_types(int32_t a, int32_t b);

/* lifetime -------------------------------------------------------------------- */

/* Adds a reference to a handle. */
void tide_tensor_retain(tide_tensor *t);
/* The number of in-place writes to t's storage so far (shared by all its views; autograd compares it). */
int64_t tide_tensor_version(const tide_tensor *t);
/* Drops a reference; the last one frees the handle, and its storage when no view is left. */
void tide_tensor_release(tide_tensor *t);
/* 1 when t's elements are laid out row-major without gaps. */
int tide_is_contiguous(const tide_tensor *t);
/* For a contiguous f64 CPU tensor Lua is about to read: 1 when it holds a NaN whose bits LuaJIT
   would take for a tagged value (the sign and top mantissa bits set, as an all-0xFF f32 cast to f64),
   else 0; with fix = 1 such NaNs are rewritten as the canonical quiet NaN. -1 on a bad operand. */
int tide_f64_odd_nans(tide_tensor *t, int32_t fix);

/* creation: on device -1 (the CPU) or n (cuda:n; no allocator exists for it yet) ---- */

/* A contiguous tensor of uninitialised memory. */
int tide_empty(int32_t dtype, int32_t ndim, const int64_t *shape, int32_t device, tide_tensor **out);
/* A contiguous tensor with every element value (converted to dtype). */
int tide_full(int32_t dtype, int32_t ndim, const int64_t *shape, double value, int32_t device, tide_tensor **out);
/* The 1-d tensor start, start + step, ... of n elements. */
int tide_arange(double start, double step, int64_t n, int32_t dtype, int32_t device, tide_tensor **out);
/* Sets every element of t (any view) to value. */
int tide_fill_(tide_tensor *t, double value);
/* Fills t with uniform values in [low, high) from g (layout in runtime/philox.h). */
int tide_rand_(tide_tensor *t, tide_generator *g, double low, double high);
/* Fills t with normal values of mean and std from g. */
int tide_randn_(tide_tensor *t, tide_generator *g, double mean, double std);
/* Fills t with integers in [low, high) from g. */
int tide_randint_(tide_tensor *t, tide_generator *g, int64_t low, int64_t high);
/* Sets each element of t to 1 where an f64 uniform draw from g is < p, else 0 (p in [0, 1]). */
int tide_bernoulli_(tide_tensor *t, tide_generator *g, double p);
/* A random permutation of 0..n-1 from g (Fisher-Yates, n - 1 draws) as a 1-d tensor of dtype. */
int tide_randperm(int64_t n, int32_t dtype, tide_generator *g, tide_tensor **out);
/* tide_randperm on device (-1: the CPU, n: cuda:n): the same permutation on every device. */
int tide_randperm_on(int64_t n, int32_t dtype, int32_t device, tide_generator *g, tide_tensor **out);

/* views: share t's storage; a -1 in a shape is inferred ------------------------- */

/* t with a new shape, without copying; fails when the strides do not allow it. */
int tide_view(const tide_tensor *t, int32_t ndim, const int64_t *shape, tide_tensor **out);
/* A view when possible, else a contiguous copy with the new shape. */
int tide_reshape(const tide_tensor *t, int32_t ndim, const int64_t *shape, tide_tensor **out);
/* Any geometry over t's storage (offset in elements), bounds-checked. */
int tide_as_strided(const tide_tensor *t, int32_t ndim, const int64_t *shape, const int64_t *stride, int64_t offset, tide_tensor **out);
/* t's dims reordered: out dim i is t's dim dims[i]. */
int tide_permute(const tide_tensor *t, const int32_t *dims, tide_tensor **out);
/* t with dims d0 and d1 swapped. */
int tide_transpose(const tide_tensor *t, int32_t d0, int32_t d1, tide_tensor **out);
/* Elements start .. start + length - 1 of dim. */
int tide_narrow(const tide_tensor *t, int32_t dim, int64_t start, int64_t length, tide_tensor **out);
/* The slice at index of dim, which it removes. */
int tide_select(const tide_tensor *t, int32_t dim, int64_t index, tide_tensor **out);
/* Size-1 dims (and new leading ones) repeated to shape with stride 0; -1 keeps a size. */
int tide_expand(const tide_tensor *t, int32_t ndim, const int64_t *shape, tide_tensor **out);
/* Drops dim if its size is 1, or every size-1 dim when dim < 0. */
int tide_squeeze(const tide_tensor *t, int32_t dim, tide_tensor **out);
/* Inserts a size-1 dim at position dim (0..ndim). */
int tide_unsqueeze(const tide_tensor *t, int32_t dim, tide_tensor **out);
/* t itself (a new reference) if contiguous, else a contiguous copy. */
int tide_contiguous(const tide_tensor *t, tide_tensor **out);

/* copy and cast -------------------------------------------------------------------- */

/* A contiguous copy of t converted to dtype (floats to integers saturate). */
int tide_cast(const tide_tensor *t, int32_t dtype, tide_tensor **out);
/* Copies src, broadcast to dst's shape, into dst with conversion. */
int tide_copy_(tide_tensor *dst, const tide_tensor *src);
/* t itself (a new reference) when it is on device (-1: CPU, n: cuda:n), else a contiguous copy
   there; tide_to_device(t, -1, &h) is the host transfer before Lua reads elements. */
int tide_to_device(const tide_tensor *t, int32_t device, tide_tensor **out);

/* elementwise: broadcasting, PyTorch's dtype promotion; *_ forms write into
   their first argument ------------------------------------------------------------ */

/* op(a) for a tide_unary_op. */
int tide_unary(int32_t op, const tide_tensor *a, tide_tensor **out);
/* a = op(a). */
int tide_unary_(int32_t op, tide_tensor *a);
/* a op b for a tide_binary_op. */
int tide_binary(int32_t op, const tide_tensor *a, const tide_tensor *b, tide_tensor **out);
/* a = a op b (b broadcast to a's shape, the result stored in a's dtype). */
int tide_binary_(int32_t op, tide_tensor *a, const tide_tensor *b);
/* a op s, or s op a when scalar_first is 1. */
int tide_binary_scalar(int32_t op, const tide_tensor *a, double s, int32_t scalar_first, tide_tensor **out);
/* a = a op s. */
int tide_binary_scalar_(int32_t op, tide_tensor *a, double s);
/* a clamped to [lo, hi]; a NaN bound means no bound on that side. */
int tide_clamp(const tide_tensor *a, double lo, double hi, tide_tensor **out);
/* a where cond is nonzero, else b, all three broadcast. */
int tide_where(const tide_tensor *cond, const tide_tensor *a, const tide_tensor *b, tide_tensor **out);

/* reductions -------------------------------------------------------------------------- */

/* op over dim (dim < 0: over all elements); indices (may be NULL) receives the
   positions for TIDE_MAX / TIDE_MIN over one dim. */
int tide_reduce(int32_t op, const tide_tensor *a, int32_t dim, int32_t keepdim, tide_tensor **out, tide_tensor **indices);
/* Inclusive running sum along dim (integers and bool give i64). */
int tide_cumsum(const tide_tensor *a, int32_t dim, tide_tensor **out);

/* linear algebra ---------------------------------------------------------------------- */

/* torch.matmul: 1-d operands, broadcast batch dims; f32/f64 through OpenBLAS. */
int tide_matmul(const tide_tensor *a, const tide_tensor *b, tide_tensor **out);

/* indexing, joining, ordering, sampling -------------------------------------------------- */

/* The slices of a along dim at the positions in the 1-d integer tensor index. */
int tide_index_select(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out);
/* out[i][j] = a[index[i][j]][j] along dim (torch.gather). */
int tide_gather(const tide_tensor *a, int32_t dim, const tide_tensor *index, tide_tensor **out);
/* a[index[i][j]][j] += src[i][j] along dim; every index is checked before any write. */
int tide_scatter_add_(tide_tensor *a, int32_t dim, const tide_tensor *index, const tide_tensor *src);
/* Sets the elements of a where mask (broadcast) is nonzero to value. */
int tide_masked_fill_(tide_tensor *a, const tide_tensor *mask, double value);
/* The n tensors joined along an existing dim (dtypes promoted). */
int tide_cat(int32_t n, tide_tensor *const *ts, int32_t dim, tide_tensor **out);
/* The n equal-shape tensors joined along a new dim. */
int tide_stack(int32_t n, tide_tensor *const *ts, int32_t dim, tide_tensor **out);
/* Stable sort along dim (NaN as the largest), with the i64 positions. */
int tide_sort(const tide_tensor *a, int32_t dim, int32_t descending, tide_tensor **values, tide_tensor **indices);
/* The k largest (or smallest) along dim, with their i64 positions. */
int tide_topk(const tide_tensor *a, int64_t k, int32_t dim, int32_t largest, int32_t sorted, tide_tensor **values, tide_tensor **indices);
/* n category ids per row of non-negative weights probs (1-d or 2-d), i64. */
int tide_multinomial(const tide_tensor *probs, int64_t n, int32_t replacement, tide_generator *g, tide_tensor **out);

/* neural-network ops, forward and backward (kernels/cpu/nn_*.c). Floats
   only: f32 and f64 compute natively, bf16/f16 through f32. ---------------------- */

enum tide_reduction { TIDE_REDUCE_NONE = 0, TIDE_REDUCE_MEAN = 1, TIDE_REDUCE_SUM = 2 };

/* Layer norm over the last dim of x ([..., C]); weight and bias [C] may be NULL.
   mean and rstd ([...], f32 or f64) are saved for the backward. */
int tide_layer_norm(const tide_tensor *x, const tide_tensor *weight, const tide_tensor *bias, double eps,
                    tide_tensor **out, tide_tensor **mean, tide_tensor **rstd);
/* Gradients of layer norm; dweight/dbias may be NULL when not wanted (or weight is NULL). */
int tide_layer_norm_backward(const tide_tensor *dout, const tide_tensor *x, const tide_tensor *weight,
                             const tide_tensor *mean, const tide_tensor *rstd,
                             tide_tensor **dx, tide_tensor **dweight, tide_tensor **dbias);
/* s = x + r (r NULL: *s is set to NULL and x is normalised) and out = layer_norm(s) over the last dim in one pass; x, r, weight, bias of one dtype; mean and rstd as tide_layer_norm's. */
int tide_residual_layer_norm(const tide_tensor *x, const tide_tensor *r, const tide_tensor *weight, const tide_tensor *bias,
                             double eps, tide_tensor **s, tide_tensor **out, tide_tensor **mean, tide_tensor **rstd);
/* dx = ds + layer_norm_backward(dout) over s (the gradient of both x and r); ds or dout may be NULL, not both; dweight/dbias as tide_layer_norm_backward's, in s's dtype. */
int tide_residual_layer_norm_backward(const tide_tensor *ds, const tide_tensor *dout, const tide_tensor *s,
                                      const tide_tensor *weight, const tide_tensor *mean, const tide_tensor *rstd,
                                      tide_tensor **dx, tide_tensor **dweight, tide_tensor **dbias);
/* Softmax (log_softmax when log is 1) along dim, computed stably. */
int tide_softmax(const tide_tensor *x, int32_t dim, int32_t log, tide_tensor **out);
/* Gradient of softmax / log_softmax from its output. */
int tide_softmax_backward(const tide_tensor *dout, const tide_tensor *out, int32_t dim, int32_t log, tide_tensor **dx);
/* Gradient of the tanh-approximated GELU at x. */
int tide_gelu_backward(const tide_tensor *dout, const tide_tensor *x, tide_tensor **dx);
/* The activation of tide_linear_act: none, or the tanh GELU (GPT-2's gelu_new). */
enum tide_act { TIDE_ACT_NONE = 0, TIDE_ACT_GELU = 1 };
/* A Linear/Conv1D layer as one op: y = act(x @ op(w) + b) for x [M, K] and w [N, K] (transw 1: nn.Linear's
   layout, op(w) = w^T) or [K, N] (transw 0: GPT-2's Conv1D); b [N] or NULL; y [M, N]. With TIDE_ACT_GELU,
   *pre receives the GELU's input x @ op(w) + b (what the backward reads), else *pre is set to NULL (pre may
   be NULL then). Where x, w and b share a dtype the backend's GEMM takes (f32, f64; bf16 on CUDA), one
   fused kernel (cuBLASLt's bias/GELU epilogues on CUDA); otherwise, and on the CPU bit for bit always, the
   result is that of matmul, then add, then gelu, with their dtype rules. */
int tide_linear_act(const tide_tensor *x, const tide_tensor *w, const tide_tensor *b, int32_t transw, int32_t act,
                    tide_tensor **y, tide_tensor **pre);
/* Gradients of tide_linear_act from dy [M, N], x, w and (TIDE_ACT_GELU) pre: dx [M, K], dw (w's shape), db
   [N], each computed when its out pointer is not NULL (db only where the forward had a bias). On CUDA the
   weight and bias gradients come from one product (cuBLASLt's bias-gradient epilogue); elsewhere they are
   what the unfused ops' backward computes: gelu_backward, then the matmuls and a sum over rows. */
int tide_linear_act_backward(const tide_tensor *dy, const tide_tensor *x, const tide_tensor *w, const tide_tensor *pre,
                             int32_t transw, int32_t act, tide_tensor **dx, tide_tensor **dw, tide_tensor **db);
/* Rows of weight [V, C] at the 0-based ids (any shape): [..., C]. */
int tide_embedding(const tide_tensor *weight, const tide_tensor *ids, tide_tensor **out);
/* Gradient of embedding: dout [..., C] summed into rows of a [num_embeddings, C] tensor. */
int tide_embedding_backward(const tide_tensor *dout, const tide_tensor *ids, int64_t num_embeddings, tide_tensor **dweight);
/* GPT-2's input embedding in one pass: out [B, T, C] in wte's dtype, out[b, t] = wte[ids[b, t]] + wpe[pos],
   pos = past + t when position_ids is NULL, else position_ids[b, t] (position_ids [B, T], or [1, T] / [T]
   shared by the batch). wte [V, C] and wpe [P, C] share one float dtype; bf16/f16 add in f32 and round
   once. Fails naming the first id outside 0..V-1 or position outside 0..P-1, or past + T > P. */
int tide_gpt2_embedding(const tide_tensor *ids, const tide_tensor *wte, const tide_tensor *wpe,
                        const tide_tensor *position_ids, int64_t past, tide_tensor **out);
/* Gradients of tide_gpt2_embedding from dout [B, T, C]: dwte [vocab_size, C] (dout's rows summed by id, in
   the order of b * T + t) and dwpe [n_positions, C] (summed by position; the batch summed first where the
   positions are shared by every row), in dout's dtype (summed in f32, f64 for f64). dwte or dwpe NULL:
   that gradient is not computed. Same ids, position_ids and past as the forward. */
int tide_gpt2_embedding_backward(const tide_tensor *dout, const tide_tensor *ids, const tide_tensor *position_ids,
                                 int64_t past, int64_t vocab_size, int64_t n_positions, tide_tensor **dwte,
                                 tide_tensor **dwpe);
/* Cross-entropy of logits [N, V] (or [..., V]) against 0-based targets [N] (or [...]),
   skipping targets equal to ignore_index; log-sum-exp in f32 or better, no one-hot, no stored
   probabilities (on CUDA bf16 logits are read in place). lse ([N], f32/f64) is saved for the
   backward; loss (the logits' dtype) is 0-d unless reduction is NONE. A target outside 0..V-1
   that is not ignore_index is an error naming it (on CUDA: one small host round trip). */
int tide_cross_entropy(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index, int32_t reduction,
                       tide_tensor **loss, tide_tensor **lse);
/* tide_cross_entropy with the loss in loss_dtype (a float dtype; -1: the logits'): bf16 logits give an
   f32 loss without an f32 copy of the logits, as autocast wants. */
int tide_cross_entropy_as(const tide_tensor *logits, const tide_tensor *targets, int64_t ignore_index,
                          int32_t reduction, int32_t loss_dtype, tide_tensor **loss, tide_tensor **lse);
/* Gradient of cross-entropy with respect to the logits (the logits' dtype): dloss (any float dtype)
   scales each row, one value for MEAN/SUM or one per target for NONE. The CPU checks the targets again;
   CUDA does not (the forward did): a row with a target out of range gets NaN there. */
int tide_cross_entropy_backward(const tide_tensor *dloss, const tide_tensor *logits, const tide_tensor *targets,
                                const tide_tensor *lse, int64_t ignore_index, int32_t reduction, tide_tensor **dlogits);
/* Inverted dropout: zeroes elements with probability p from g and scales the rest by 1/(1-p);
   mask (u8, 1 = kept) is saved for the backward. */
int tide_dropout(const tide_tensor *x, double p, tide_generator *g, tide_tensor **out, tide_tensor **mask);
/* Gradient of dropout: dout * mask / (1 - p). */
int tide_dropout_backward(const tide_tensor *dout, const tide_tensor *mask, double p, tide_tensor **dx);
/* Scaled dot-product attention of q [B, H, T, D] with k, v [B, H, S, D]: softmax(q k^T * scale) v,
   with a causal mask when causal is 1 and, when key_mask ([B, S] bool/u8, nonzero = attend) is not
   NULL, padding keys hidden; a query left no key gets zeros. lse [B, H, T] is saved for the backward.
   Under the causal mask query t sees keys s <= t + q_offset: q_offset = 0 is the top-left triangle
   (PyTorch's is_causal, also for T != S), q_offset = S - T the bottom-right one (the queries are the
   last T of S positions: a KV cache). q_offset > 0 needs causal and q_offset + T <= S. */
int tide_attention(const tide_tensor *q, const tide_tensor *k, const tide_tensor *v, const tide_tensor *key_mask,
                   int32_t causal, int64_t q_offset, double scale, tide_tensor **out, tide_tensor **lse);
/* Gradients of attention with respect to q, k and v (the same key_mask, causal and q_offset as the
   forward). */
int tide_attention_backward(const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k, const tide_tensor *v,
                            const tide_tensor *key_mask, const tide_tensor *out, const tide_tensor *lse, int32_t causal,
                            int64_t q_offset, double scale, tide_tensor **dq, tide_tensor **dk, tide_tensor **dv);
/* tide_attention_backward for self-attention (S == T, no q_offset) whose gradients go to one packed
   tensor: dq, dk and dv written as the three parts of dqkv [B, T, 3 * H * D] ([B, T, 3, H, D] memory),
   the gradient of a [B, T, 3C] projection that q, k and v are head views of (GPT-2's c_attn output),
   with no copy to join them. Same values as tide_attention_backward. */
int tide_attention_backward_qkv(const tide_tensor *dout, const tide_tensor *q, const tide_tensor *k,
                                const tide_tensor *v, const tide_tensor *key_mask, const tide_tensor *out,
                                const tide_tensor *lse, int32_t causal, double scale, tide_tensor **dqkv);
/* One AdamW step in place, exactly torch.optim.AdamW's arithmetic: decoupled decay
   p -= lr*wd*p, then moments and the bias-corrected update (step counts from 1). */
int tide_adamw_step_(tide_tensor *param, const tide_tensor *grad, tide_tensor *exp_avg, tide_tensor *exp_avg_sq,
                     double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step);
/* The p-norm (p may be +-inf or 0) of the n tensors' own p-norms, in argument order: torch's total norm
   in clip_grad_norm_. Each norm is taken in its tensor's dtype (f32 for all but f64; the 2-norm in
   torch's CPU summation order); out is 0-d, f64 when a tensor is f64, else f32 (0 when n is 0). */
int tide_multi_norm(int32_t n, const tide_tensor *const *ts, double p, tide_tensor **out);
/* The AdamW step of n tensors in one call (torch's fused/foreach AdamW): entry i updates params[i],
   exp_avgs[i] and exp_avg_sqs[i] from grads[i] with step count steps[i] (>= 1, after this update),
   with exactly tide_adamw_step_'s arithmetic (the same bits). shadows may be NULL or hold NULL
   entries; a non-NULL shadows[i] is a bf16 tensor of params[i]'s shape that receives the updated
   parameter rounded to bf16 (as a cast would), in the same pass. All tensors on one device, one
   dtype (f32 or f64) for all params, grads and moments; per entry one shape; no tensor written may
   share memory with another operand. On CUDA a few launches over all contiguous entries (views
   take the per-tensor kernel). Every check runs before anything is written. */
int tide_adamw_multi_step_(int32_t n, tide_tensor *const *params, const tide_tensor *const *grads,
                           tide_tensor *const *exp_avgs, tide_tensor *const *exp_avg_sqs, tide_tensor *const *shadows,
                           const int64_t *steps, double lr, double beta1, double beta2, double eps, double weight_decay);
/* Gradient clipping's scaling without reading the norm on the host: multiplies each of the n
   floating-point tensors in place by min(max_norm / (total + 1e-6), 1) (NaN stays NaN), computed
   on the tensors' device from the 0-d f32 or f64 `total` (tide_multi_norm's) as torch's
   clip_grad_norm_ computes it in total's dtype, then multiplied as mul_ by that number would
   (in f64 for f64 tensors, else in f32, rounded to the tensor's dtype). One launch on CUDA. */
int tide_clip_grads_(int32_t n, tide_tensor *const *ts, const tide_tensor *total, double max_norm);

/* safetensors and JSON (runtime/safetensors.c, runtime/json.c) --------------------- */

typedef struct tide_st_file tide_st_file;

/* Opens and validates a safetensors file (header bounds, offsets, overlaps, shapes). */
int tide_st_open(const char *path, tide_st_file **out);
/* Closes a file from tide_st_open (NULL is fine). */
void tide_st_close(tide_st_file *f);
/* Number of tensors in the file. */
int64_t tide_st_count(const tide_st_file *f);
/* Name of tensor i (in file order), or NULL when i is out of range. */
const char *tide_st_name(const tide_st_file *f, int64_t i);
/* dtype code and shape of tensor i without reading it. */
int tide_st_info(const tide_st_file *f, int64_t i, int32_t *dtype, int32_t *ndim, int64_t *shape);
/* Reads tensor i into a new contiguous tensor. */
int tide_st_load(tide_st_file *f, int64_t i, tide_tensor **out);
/* The __metadata__ object as JSON text ("{}" when absent). */
const char *tide_st_metadata(const tide_st_file *f);
/* Writes n named tensors (any strides) atomically: temp file, fsync, rename.
   metadata_json is a JSON object of string values, or NULL. */
int tide_st_save(const char *path, int32_t n, const char *const *names, tide_tensor *const *tensors, const char *metadata_json);

/* A parsed JSON document; node 0 is the root, children are reached by index. */
typedef struct tide_json tide_json;
enum tide_json_type { TIDE_JSON_NULL = 0, TIDE_JSON_FALSE, TIDE_JSON_TRUE, TIDE_JSON_NUMBER,
                      TIDE_JSON_STRING, TIDE_JSON_ARRAY, TIDE_JSON_OBJECT };

/* Parses len bytes of JSON (RFC 8259); errors name the line and column. */
int tide_json_parse(const char *text, int64_t len, tide_json **out);
/* Frees a document (NULL is fine). */
void tide_json_free(tide_json *doc);
/* The type of a node (a tide_json_type), -1 for a bad node. */
int32_t tide_json_type(const tide_json *doc, int64_t node);
/* A number node's value. */
double tide_json_number(const tide_json *doc, int64_t node);
/* A string node's bytes (escapes decoded, may hold NUL) and their length. */
const char *tide_json_string(const tide_json *doc, int64_t node, int64_t *len);
/* Elements of an array or members of an object (0 for other nodes). */
int64_t tide_json_length(const tide_json *doc, int64_t node);
/* The node of element i (array) or of member i's value (object), -1 if out of range. */
int64_t tide_json_child(const tide_json *doc, int64_t node, int64_t i);
/* Member i's key of an object node and its length, NULL if out of range. */
const char *tide_json_key(const tide_json *doc, int64_t node, int64_t i, int64_t *len);

/* tokenizer: byte-level BPE, GPT-2-exact (runtime/bpe.c, runtime/pretokenize.c) -- */

/* A loaded byte-level BPE tokenizer; read-only after loading, so one may be shared by threads. */
typedef struct tide_bpe tide_bpe;

/* Loads GPT-2-style vocab.json and merges.txt; errors name the file and, for merges, the line. */
int tide_bpe_load(const char *vocab_path, const char *merges_path, tide_bpe **out);
/* Loads a Hugging Face tokenizer.json (model.type BPE, vocab, merges, added_tokens). */
int tide_bpe_load_json(const char *path, tide_bpe **out);
/* Frees a tokenizer (NULL is fine). */
void tide_bpe_free(tide_bpe *t);
/* One more than the largest token id (vocabulary and added tokens). */
int64_t tide_bpe_vocab_size(const tide_bpe *t);
/* The id of a token given as its byte-mapped string ("\xc4\xa0say" for " say"), -1 when absent. */
int64_t tide_bpe_token_to_id(const tide_bpe *t, const char *s, int64_t len);
/* The byte-mapped string of token id and its length, NULL when no token has that id. */
const char *tide_bpe_id_to_token(const tide_bpe *t, int64_t id, int64_t *len);
/* Number of added tokens (tokenizer.json added_tokens; <|endoftext|> for vocab.json files that hold it). */
int32_t tide_bpe_added_count(const tide_bpe *t);
/* Added token i (0-based): its content and length, with its id and special flag, NULL if out of range. */
const char *tide_bpe_added_token(const tide_bpe *t, int32_t i, int64_t *len, int32_t *id, int32_t *special);
/* Encodes len bytes into ids (capacity len + 1 suffices); added tokens whose ids are in allowed (nallowed, or all when nallowed < 0) are matched in the text. */
int tide_bpe_encode(const tide_bpe *t, const char *text, int64_t len, const int32_t *allowed, int32_t nallowed, int32_t *ids, int64_t *nids);
/* The bytes of n ids: *len is set to their length; they are written to out only when out is not NULL and cap >= *len. */
int tide_bpe_decode(const tide_bpe *t, const int32_t *ids, int64_t n, char *out, int64_t cap, int64_t *len);
/* Copies n bytes to out (capacity 3n), each maximal invalid UTF-8 subsequence replaced by U+FFFD; returns the length written. */
int64_t tide_utf8_replace_invalid(const char *in, int64_t n, char *out);
/* GPT-2 pre-tokenization of len bytes: the end offset of each piece into ends (when cap allows), their number in *n. */
int tide_pretokenize(const char *text, int64_t len, int64_t *ends, int64_t cap, int64_t *n);
/* The Unicode version of the pre-tokenizer's letter, number and space tables. */
const char *tide_unicode_version_str(void);

/* tokenizer (more): saving and batches (runtime/bpe.c) ---------------------------------- */

/* Number of distinct merges, in rank order (what merges.txt lists). */
int64_t tide_bpe_merge_count(const tide_bpe *t);
/* Merge i (0-based, rank order) as the ids of its left and right tokens. */
int tide_bpe_merge(const tide_bpe *t, int64_t i, int32_t *left, int32_t *right);
/* Encodes n texts over OpenMP threads; text i's ids go to ids + sum over j < i of (lens[j] + 1), their count to nids[i]. */
int tide_bpe_encode_batch(const tide_bpe *t, int64_t n, const char *const *texts, const int64_t *lens, const int32_t *allowed, int32_t nallowed, int32_t *ids, int64_t *nids);

/* tokenizer training: Hugging Face BpeTrainer-exact byte-level BPE (runtime/bpe_train.c) ---- */

/* A BPE trainer: counts of the distinct pre-tokenized pieces, then the learned vocabulary and merges. */
typedef struct tide_bpe_trainer tide_bpe_trainer;
/* Makes an empty trainer. */
int tide_bpe_trainer_new(tide_bpe_trainer **out);
/* Frees a trainer (NULL is fine). */
void tide_bpe_trainer_free(tide_bpe_trainer *t);
/* Splits len bytes with the GPT-2 pre-tokenizer and adds one to the count of each piece. */
int tide_bpe_trainer_add_text(tide_bpe_trainer *t, const char *text, int64_t len);
/* tide_bpe_trainer_add_text for n texts at once, counted over the OpenMP threads. */
int tide_bpe_trainer_add_texts(tide_bpe_trainer *t, int64_t n, const char *const *texts, const int64_t *lens);
/* Number of distinct pieces counted so far. */
int64_t tide_bpe_trainer_piece_count(const tide_bpe_trainer *t);
/* Learns as BpeTrainer does: specials (nspecial strings with lengths) first, the alphabet (all 256 byte chars when full_alphabet, else those seen) by code point, then merges until vocab_size tokens or a best count below max(min_frequency, 1); max_token_length <= 0: unlimited. */
int tide_bpe_trainer_train(tide_bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, int64_t max_token_length, const char *const *specials, const int64_t *special_lens, int32_t nspecial, int32_t full_alphabet);
/* tide_bpe_trainer_train in steps, so a caller can report progress between them (C never calls up into Lua): begin takes train's arguments and prepares the merges; merge_some then makes up to max_merges of them (< 0: all) and sets *done to 1 when training has ended. merge_count counts the merges so far. */
int tide_bpe_trainer_begin(tide_bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, int64_t max_token_length, const char *const *specials, const int64_t *special_lens, int32_t nspecial, int32_t full_alphabet);
int tide_bpe_trainer_merge_some(tide_bpe_trainer *t, int64_t max_merges, int32_t *done);
/* Merges the running training wants at most (vocab_size less the specials and alphabet); 0 when none runs. */
int64_t tide_bpe_trainer_merges_wanted(const tide_bpe_trainer *t);
/* Number of tokens the last train learned (specials, alphabet and merged tokens). */
int64_t tide_bpe_trainer_vocab_size(const tide_bpe_trainer *t);
/* The byte-mapped string of learned token id and its length, NULL if out of range. */
const char *tide_bpe_trainer_token(const tide_bpe_trainer *t, int64_t id, int64_t *len);
/* Number of merges the last train learned. */
int64_t tide_bpe_trainer_merge_count(const tide_bpe_trainer *t);
/* Merge i (0-based, rank order): the ids of its left, right and resulting tokens; -1 if out of range. */
int tide_bpe_trainer_merge(const tide_bpe_trainer *t, int64_t i, int32_t *left, int32_t *right, int32_t *result);

/* data: line readers, JSON Lines fields (runtime/lines.c, runtime/jsonl.c) ----------- */

/* A line reader over one plain or gzip file. */
typedef struct tide_lines tide_lines;
/* Opens path to read line by line; gzip (found by its magic bytes, any number of members) is inflated as it streams, in constant memory. */
int tide_lines_open(const char *path, tide_lines **out);
/* The next line, without its '\n' ('\r' kept), valid until the next call: 1 for a line, 0 at the end, 2 when a line longer than the maximum was skipped (never held whole; tide_last_error() names the file and line, and reading may go on), -1 on error (a corrupt or truncated gzip names the file and the compressed byte offset; every whole line before it was delivered). */
int tide_lines_next(tide_lines *r, const char **line, int64_t *len);
/* Sets the longest line returned, in bytes without the '\n' (1..2^50; default 256 MiB): longer ones are skipped, and memory stays under about 1.5 times it. */
int tide_lines_set_max_line(tide_lines *r, int64_t max_bytes);
/* The longest line returned (see tide_lines_set_max_line). */
int64_t tide_lines_max_line(const tide_lines *r);
/* 1-based number of the last line returned (0 before the first). */
int64_t tide_lines_lineno(const tide_lines *r);
/* Bytes of the file consumed so far (compressed for gzip), bytes of text delivered, and the file's size. */
void tide_lines_counts(const tide_lines *r, int64_t *file_bytes, int64_t *text_bytes, int64_t *file_size);
/* Closes the reader (NULL is fine). */
void tide_lines_close(tide_lines *r);

/* A JSON Lines field extractor: parses one JSON object per line, keeping only the named fields ("a.b": member b of object a, as datasets flatten() names it; a top-level key "a.b" first). */
typedef struct tide_jsonl tide_jsonl;
/* Kinds of extracted values. */
enum { TIDE_JV_MISSING = 0, TIDE_JV_STRING = 1, TIDE_JV_NUMBER = 2, TIDE_JV_TRUE = 3, TIDE_JV_FALSE = 4, TIDE_JV_NULL = 5, TIDE_JV_RAW = 6 };
/* An extractor for the nfields named fields (lengths in field_lens; at most 15 dots in a name), or for every top-level field when nfields is 0. */
int tide_jsonl_new(const char *const *fields, const int64_t *field_lens, int32_t nfields, tide_jsonl **out);
/* Frees an extractor (NULL is fine). */
void tide_jsonl_free(tide_jsonl *p);
/* Parses one line: 1 when it holds an object, 0 when it is blank (only whitespace), -1 when it is not one valid JSON object (the message gives the column and what was expected). */
int tide_jsonl_parse(tide_jsonl *p, const char *line, int64_t len);
/* Number of fields of the last parsed line: nfields (in the order named, missing ones of kind TIDE_JV_MISSING) or, with none named, those present in order. */
int32_t tide_jsonl_count(const tide_jsonl *p);
/* Field i of the last parsed line: its key, kind, and value (strings unescaped, invalid UTF-8 kept as bytes; numbers as their JSON text; arrays and objects as raw JSON text), valid until the next parse. */
int tide_jsonl_field(const tide_jsonl *p, int32_t i, const char **key, int64_t *key_len, int32_t *kind, const char **val, int64_t *val_len);

/* data: Parquet files (runtime/parquet.c; thrift_compact.c, parquet_encoding.c, parquet_codec.c) -- */

/* A Parquet file open for reading: its footer parsed, one row group's column chunks decoded at a time, whole (tide_parquet_read) or page by page (tide_parquet_start/next). */
typedef struct tide_parquet tide_parquet;
/* Parquet's physical types (TIDE_PQ_GROUP: a nested field, not a leaf). */
enum { TIDE_PQ_BOOLEAN = 0, TIDE_PQ_INT32 = 1, TIDE_PQ_INT64 = 2, TIDE_PQ_INT96 = 3, TIDE_PQ_FLOAT = 4, TIDE_PQ_DOUBLE = 5,
       TIDE_PQ_BYTE_ARRAY = 6, TIDE_PQ_FIXED_LEN_BYTE_ARRAY = 7, TIDE_PQ_GROUP = 8 };
/* One column of one row group, decoded: entry i is row i. valid[i] is 0 for a null (valid is NULL when the column is required);
   BYTE_ARRAY rows are ptrs[i]/lens[i] (into the reader's page buffers); other types are values[i] as int32_t (INT32), int64_t (INT64),
   float, double, or uint8_t 0/1 (BOOLEAN). Valid until the same column is read again, released or the reader closed. */
typedef struct tide_parquet_column {
  int32_t type;
  int64_t rows;
  int64_t nulls;
  const uint8_t *valid;
  const char *const *ptrs;
  const int32_t *lens;
  const void *values;
} tide_parquet_column;
/* Opens path, checks its magic bytes and parses the footer (every size checked against the file); errors name the file and byte offset. */
int tide_parquet_open(const char *path, tide_parquet **out);
/* Closes the reader and frees every buffer (NULL is fine). */
void tide_parquet_close(tide_parquet *p);
/* The file's size in bytes and its number of rows (from the footer). */
int64_t tide_parquet_file_size(const tide_parquet *p);
int64_t tide_parquet_num_rows(const tide_parquet *p);
/* Number of row groups, and the rows of row group rg (0-based; -1 if out of range). */
int32_t tide_parquet_num_row_groups(const tide_parquet *p);
int64_t tide_parquet_row_group_rows(const tide_parquet *p, int32_t rg);
/* Compressed bytes of row group rg's column chunks for the top-level column col (-1 if out of range). */
int64_t tide_parquet_chunk_bytes(const tide_parquet *p, int32_t rg, int32_t col);
/* Number of top-level columns (fields of the schema's root). */
int32_t tide_parquet_num_columns(const tide_parquet *p);
/* Top-level column i: its name (NUL-terminated, valid while the reader is open) and type (TIDE_PQ_*); -1 if out of range. */
int tide_parquet_column_info(const tide_parquet *p, int32_t i, const char **name, int32_t *type);
/* Index of the top-level column named name (len bytes), or -1. */
int32_t tide_parquet_find_column(const tide_parquet *p, const char *name, int64_t len);
/* 0 when column i can be read; -1 with a message naming the file, the column and what it is when it cannot (nested, repeated, INT96, FIXED_LEN_BYTE_ARRAY). */
int tide_parquet_check_column(const tide_parquet *p, int32_t i);
/* Decodes column col of row group rg into *out (buffers owned by the reader, replacing the column's previous ones); errors name the file, column, row group and byte offset. */
int tide_parquet_read(tide_parquet *p, int32_t rg, int32_t col, tide_parquet_column *out);
/* Reads column col's chunk of row group rg and finds its pages, to decode them one at a time with tide_parquet_next (memory: the compressed chunk and one page); replaces the column's previous buffers. */
int tide_parquet_start(tide_parquet *p, int32_t rg, int32_t col);
/* The next data page of the column started: 1 with its rows in *out (valid until the next call for the column), 0 when the chunk's rows are all given, -1 on error (naming the file, column, row group and page). */
int tide_parquet_next(tide_parquet *p, int32_t col, tide_parquet_column *out);
/* Frees the buffers of column col's last read. */
void tide_parquet_release(tide_parquet *p, int32_t col);

/* data: dedup hashes (runtime/dedup.c) ------------------------------------------------ */

/* 64-bit hash (FNV-1a based, stable across runs and machines) of text with every whitespace run replaced by one space and leading and trailing whitespace dropped: equal for texts that differ only in whitespace. */
uint64_t tide_hash_normalized(const char *text, int64_t len);
/* MinHash signature (num_perm minimums of seeded 32-bit-range hashes) of the set of tokens of text, tokens being maximal runs of [A-Za-z0-9_] as in CodeParrot's near-dedup; *ntokens gets the number of distinct tokens (a text without tokens gets all-UINT32_MAX minimums). */
int tide_minhash(const char *text, int64_t len, int32_t num_perm, uint64_t seed, uint32_t *sig, int64_t *ntokens);
/* Estimated Jaccard similarity of two signatures: the fraction of equal positions. */
double tide_minhash_jaccard(const uint32_t *a, const uint32_t *b, int32_t num_perm);
/* LSH band keys of a signature: bands keys, band i hashing positions [i*rows, (i+1)*rows) with the band number, each key below 2^52 so Lua numbers hold it exactly. */
int tide_minhash_bands(const uint32_t *sig, int32_t num_perm, int32_t bands, int32_t rows, double *keys);

/* data: token shards in llm.c's format (runtime/shards.c) ----------------------------- */

/* A shard being written: tokens go to PATH.tmp, renamed to PATH only by a committing close. */
typedef struct tide_shard_writer tide_shard_writer;
/* Opens a shard for writing tokens of token_bytes (2: llm.c's GPT-2 format, magic 20240520 version 1, uint16; 4: llm.c's uint32 format, magic 20240801 version 7). */
int tide_shard_writer_open(const char *path, int32_t token_bytes, tide_shard_writer **out);
/* Appends n tokens; each must fit the token width (an error names the value and its index). */
int tide_shard_writer_write(tide_shard_writer *w, const int32_t *tokens, int64_t n);
/* Tokens written so far. */
int64_t tide_shard_writer_count(const tide_shard_writer *w);
/* Closes the writer: with commit, patches the header's token count, flushes and renames PATH.tmp to PATH; without, removes PATH.tmp. Frees w either way (NULL is fine). */
int tide_shard_writer_close(tide_shard_writer *w, int32_t commit);

/* An open token shard, read with pread (a file that shrinks while open is an error naming it, never SIGBUS). */
typedef struct tide_shard tide_shard;
/* Opens a shard: llm.c's uint16 (20240520 v1) or uint32 (20240801 v7) format, or with raw_uint16 a header-less nanoGPT .bin; a size that disagrees with the header is an error naming both. */
int tide_shard_open(const char *path, int32_t raw_uint16, tide_shard **out);
/* Number of tokens in the shard. */
int64_t tide_shard_ntokens(const tide_shard *s);
/* Bytes per token (2 or 4). */
int32_t tide_shard_token_bytes(const tide_shard *s);
/* Copies tokens [start, start + n) widened to int32 into out; a range outside the shard is an error. */
int tide_shard_read(const tide_shard *s, int64_t start, int64_t n, int32_t *out);
/* Unmaps and frees (NULL is fine). */
void tide_shard_close(tide_shard *s);

/* the process ------------------------------------------------------------------------- */

/* 1 if Ctrl-C arrived since the last call, clearing it (the tide executable
   raises it from its SIGINT handler) */
int32_t tide_interrupt_take(void);
/* Deferred mode (on != 0): tide_interrupt_take returns 0 and leaves a
   pending Ctrl-C for a loop that polls tide_interrupt_pending at a safe point
   (tide.train finishes the step, saves, exits 130); off, a pending one is
   taken by the next op as before. Returns the previous mode. */
int32_t tide_interrupt_defer(int32_t on);
/* 1 if a Ctrl-C is pending (not yet taken), without clearing it. */
int32_t tide_interrupt_pending(void);

/* collectives across processes (runtime/dist.c; tide.dist in Lua) ----------------------------
   Backends are plugins loaded on first use (runtime/dist_backend.h). Collectives are in place
   unless they take out; op is TIDE_SUM, TIDE_MEAN (the average), TIDE_MAX or TIDE_MIN. Before
   each one the ranks compare what they were called with (unless check is 0): a mismatch is an
   error on every rank. One still blocked after the timeout ends the process (exit code 124). */

/* Joins the job: backend "mpi" (ranks from the launcher: mpirun, srun) or "none" (a world of one);
   timeout_s in seconds (0: none); writes this process's rank and the world size. */
int tide_dist_init(const char *backend, double timeout_s, int32_t check, int32_t *rank, int32_t *world_size);
/* After tide_dist_init, on every rank: NCCL for tensors on CUDA device (its id sent over MPI). *used is
   1 when every rank could load it; when one cannot, NCCL is used by none (CUDA tensors are staged
   through host memory and MPI) or, with required, it is an error. */
int tide_dist_init_nccl(int32_t device, int32_t required, int32_t *used);
/* Leaves the job (MPI_Finalize); a no-op when not joined. */
int tide_dist_finalize(void);
/* Ends every process of the job with code (MPI_Abort), after an error this rank cannot recover from. */
void tide_dist_abort(int32_t code);
/* 1 between init and finalize. */
int32_t tide_dist_is_initialized(void);
/* This process's rank (0 when not joined). */
int32_t tide_dist_rank(void);
/* The number of processes (1 when not joined). */
int32_t tide_dist_world_size(void);
/* t = op over every rank's t (any dtype, device and layout; avg needs floats). */
int tide_dist_all_reduce(tide_tensor *t, int32_t op);
/* A started all_reduce_async (opaque): wait on it, then free it. */
typedef struct tide_dist_work tide_dist_work;
/* Starts t = op over every rank's t and returns at once with *out, a handle; a communication thread runs
   the started ones in order. t must not be touched until tide_dist_wait; a blocking collective first
   waits for the started ones to run (their copies back happen at their wait). */
int tide_dist_all_reduce_async(tide_tensor *t, int32_t op, tide_dist_work **out);
/* Waits for w's all-reduce and writes the result into its tensor; its error (naming the call) if it failed.
   A second wait returns 0. */
int tide_dist_wait(tide_dist_work *w);
/* 1 when w's all-reduce has run (tide_dist_wait then does not block). */
int32_t tide_dist_work_done(const tide_dist_work *w);
/* Frees w, first waiting for its all-reduce to run (without writing back when it was never waited). */
void tide_dist_work_free(tide_dist_work *w);
/* t = rank src's t. */
int tide_dist_broadcast(tide_tensor *t, int32_t src);
/* out (world_size * numel(t) elements) = every rank's t in rank order. */
int tide_dist_all_gather(tide_tensor *out, const tide_tensor *t);
/* out = op over ranks of this rank's slice of t (t holds world_size * numel(out) elements in rank order). */
int tide_dist_reduce_scatter(tide_tensor *out, const tide_tensor *t, int32_t op);
/* Returns when every rank has called it. */
int tide_dist_barrier(void);
/* Sends bufs[r] (lens[r] bytes) to rank r for each of the n = world_size ranks; *recv gets one malloc'd
   buffer (free with tide_dist_free) holding what each rank r sent here, recv_lens[r] bytes each, in rank order. */
int tide_dist_all_to_all_bytes(int32_t n, const char *const *bufs, const int64_t *lens, char **recv, int64_t *recv_lens);
/* Frees a buffer tide_dist_all_to_all_bytes returned. */
void tide_dist_free(void *p);

/* CUDA: how many devices the driver reports (0 without CUDA or a GPU) */
int32_t tide_cuda_device_count(void);
/* "CUDA" (the GPU), "cudaemu" (the CPU emulator of the test build) or "" (built without CUDA). */
const char *tide_cuda_runtime_name(void);
/* One device's caching allocator, in bytes and counts (tide.cuda.memory_stats). */
typedef struct tide_cuda_memstats {
  uint64_t allocated, reserved, peak_allocated, peak_reserved;
  uint64_t num_mallocs, num_frees, num_ooms, requests, segments, free_blocks, live_blocks;
} tide_cuda_memstats;
int tide_cuda_memory_stats(int32_t device, tide_cuda_memstats *out);
/* Returns the device's cached free segments to the driver; the bytes returned, or -1. */
int64_t tide_cuda_empty_cache(int32_t device);
/* Sets the peaks to the current allocated and reserved bytes. */
int tide_cuda_reset_peak_memory_stats(int32_t device);
/* Waits for the device's kernels; an asynchronous fault is reported here with the recent ops. */
int tide_cuda_synchronize(int32_t device);
/* on = 1: synchronise and check after every kernel launch, so a fault names its own op. */
int tide_cuda_set_sync_debug(int32_t on);
/* Free and total memory of the device, as the driver reports them. */
int tide_cuda_mem_info(int32_t device, int64_t *free_bytes, int64_t *total_bytes);
/* Bytes live in tensors on every CUDA device (the Lua GC pacer reads it). */
int64_t tide_cuda_live_bytes(void);
/* cuBLAS's version (major * 10000 + minor * 100 + patch), loading the
   library on first use; 0 without CUDA or when it cannot be loaded (the
   reason is then the last error) */
int tide_cuda_blas_version(void);
/* on = 1 lets f32 matmuls on CUDA use TF32 tensor cores (inputs rounded to 10
   mantissa bits); off by default. Returns the previous setting (0 without CUDA). */
int32_t tide_cuda_set_allow_tf32(int32_t on);

/* the process: sandboxed commands (runtime/sandbox.c) ---------------------------------- */

/* Limits for every job of a sandbox; 0 means none for the integer ones. */
typedef struct tide_sandbox_limits {
  double timeout_s;       /* wall clock from the start; then the job's process group is killed (required, > 0) */
  int64_t cpu_s;          /* RLIMIT_CPU of the command */
  int64_t memory_bytes;   /* RLIMIT_AS of the command */
  int64_t max_procs;      /* processes the command may add (RLIMIT_NPROC; as root each job runs under a uid of its own) */
  int64_t file_bytes;     /* RLIMIT_FSIZE: the largest file it may write */
  int64_t tail_bytes;     /* the last bytes of stdout and of stderr kept per job (0: 4096) */
  int32_t isolate;        /* 1: new user, network and pid namespaces when the kernel allows (tide_sandbox_isolation) */
} tide_sandbox_limits;
/* What became of a job (tide_sandbox_result). */
typedef struct tide_sandbox_outcome {
  int32_t state;          /* 1 running, 2 finished */
  int32_t exit_code;      /* the command's exit status, -1 when it was killed or never ran */
  int32_t signal;         /* the signal that ended it (SIGKILL after a timeout, SIGXCPU past cpu_s...), 0 if none */
  int32_t timed_out;      /* 1 when the wall-clock timeout ended it */
  int32_t start_error;    /* errno when the command never ran (not found, unshare refused...), 0 if it ran */
  int32_t start_stage;    /* where it failed: 1 setuid, 2 unshare, 3 fork, 4 limits, 5 chdir, 6 stdio, 7 exec */
  double wall_s;          /* seconds from start to its end (or to now) */
  int64_t stdout_bytes, stderr_bytes;  /* bytes written in all (only the tails are kept) */
} tide_sandbox_outcome;
typedef struct tide_sandbox tide_sandbox;
/* A sandbox running jobs under limits; with limits->isolate it probes once whether the kernel allows the namespaces. */
int tide_sandbox_new(const tide_sandbox_limits *limits, tide_sandbox **out);
/* Kills every job still running, removes their folders and frees s (NULL is fine). */
void tide_sandbox_free(tide_sandbox *s);
/* 1 when jobs run in new user, network and pid namespaces (no network), 0 when not (asked for or refused). */
int32_t tide_sandbox_isolation(const tide_sandbox *s);
/* A sentence on the isolation in use, and why there is none when the kernel refused it. */
const char *tide_sandbox_isolation_note(const tide_sandbox *s);
/* Starts argv[0..argc) (argv[0] found on PATH unless it holds a '/') in a new temporary folder, which holds file_name with file_data when file_name is not NULL; cwd, HOME and TMPDIR are that folder, stdin /dev/null, the environment otherwise only PATH and LANG. *job gets the job's id. Returns at once. */
int tide_sandbox_start(tide_sandbox *s, const char *const *argv, int32_t argc, const char *file_name, const char *file_data, int64_t file_len, int32_t *job);
/* Waits up to max_wait_s seconds for a job to finish (reading the jobs' output and killing those past their timeout meanwhile): *job is a finished job's id, each reported once, or -1 when none finished in that time or none is running. */
int tide_sandbox_wait(tide_sandbox *s, double max_wait_s, int32_t *job);
/* Jobs still running. */
int32_t tide_sandbox_running(const tide_sandbox *s);
/* A job's state, status and byte counts. */
int tide_sandbox_result(const tide_sandbox *s, int32_t job, tide_sandbox_outcome *out);
/* The kept tail of a job's stdout (stream 1) or stderr (2) and its length, valid until the job is released; NULL on error. */
const char *tide_sandbox_output(const tide_sandbox *s, int32_t job, int32_t stream, int64_t *len);
/* Frees a job's slot (killing it first if it still runs); its id may then be reused. */
int tide_sandbox_release(tide_sandbox *s, int32_t job);
