/*
 * Layers: the CPU fp32 reference of every layer the encoders use, one
 * forward and one backward function per layer, shapes in the signatures
 * (llm.c style). Tensors are dense row-major; images are NCHW.
 *
 * Conventions:
 * - Backward functions ACCUMULATE (+=) into parameter gradients (dw, db,
 *   ...) and into dinp, so a tensor used twice gets both contributions;
 *   callers zero gradient buffers once per step.
 * - Work is spread over the CPU's cores with OpenMP (static schedules, no
 *   atomics: a run repeats bit for bit on the same thread count) and GEMMs
 *   go through CBLAS (sgemm).
 * - Scratch memory is passed in by the caller (no allocation inside a
 *   training step); each function says how much it needs.
 */
#ifndef AESNET_NN_H
#define AESNET_NN_H

#include <stddef.h>
#include <stdint.h>

#include "aesnet/core.h"

/* Sums over ranks for batch-norm statistics. NULL, or a NULL fn, means
 * this process holds the whole batch (one rank, or per-rank statistics). */
typedef struct aes_reducer {
    void (*allreduce_sum)(double *buf, int n, void *ctx);
    void *ctx;
} aes_reducer;

/* ---- linear: out[N, OC] = inp[N, C] @ w[OC, C]^T + b[OC] (b may be NULL) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                    int OC);
/* dinp may be NULL (input needs no gradient); db may be NULL when b was. */
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int N, int C, int OC);

/* ---- conv2d: inp [N, C, H, W], w [OC, C, KH, KW], b [OC] or NULL,
 * out [N, OC, OH, OW] with OH = (H + 2*pad - KH) / stride + 1 (same for W).
 * col: scratch of conv2d_scratch_floats(...) floats, sized for batches of
 * up to N samples. */
size_t conv2d_scratch_floats(int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                             int pad);
void conv2d_forward(float *out, float *col, const float *inp, const float *w, const float *b,
                    int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad);
/* dinp may be NULL (the first layer's input). */
void conv2d_backward(float *dinp, float *dw, float *db, float *col, const float *dout,
                     const float *inp, const float *w, int N, int C, int H, int W, int OC, int KH,
                     int KW, int stride, int pad);
/* 0 (the default, unless the environment sets AESNET_CONV=implicit):
 * im2col + BLAS for every conv; 1: the AVX-512 implicit GEMM where the
 * CPU has it (src/nn/conv.c says for which parts). Returns whether the
 * implicit GEMM was in use. */
int conv2d_set_implicit(int on);
/* Which path the convs take, in words (for --version and run logs). Reads
 * AESNET_CONV on first use; a value other than implicit or im2col is a
 * user error. */
const char *conv2d_path(void);

/* ---- batch norm over [N, C, HW] (HW = 1 after a linear layer).
 * train = 1: normalise with the batch statistics (reduced over ranks by
 * red), save mean and rstd [C] for backward, and update the running
 * statistics: running = (1 - momentum) * running + momentum * batch, with
 * the unbiased variance, as PyTorch does. train = 0: use the running
 * statistics (mean/rstd outputs still filled, from the running values). */
void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *gamma, const float *beta, float *running_mean,
                       float *running_var, int N, int C, int HW, int train, float momentum,
                       float eps, const aes_reducer *red);
/* Backward of the training-mode forward: the two per-channel sums it needs
 * (of dout and of dout * xhat) are reduced over ranks by red. */
void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *gamma, int N, int C, int HW, const aes_reducer *red);

/* ---- element-wise ---- */
void relu_forward(float *out, const float *inp, size_t n);
/* Uses the forward OUTPUT (so relu can run in place). */
void relu_backward(float *dinp, const float *dout, const float *out, size_t n);
/* GELU, exact (erf) form, as torch.nn.GELU(). */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* out += inp (residual connections). */
void add_inplace(float *out, const float *inp, size_t n);

/* ---- pooling over [N, C, H, W] ---- */
/* Max pool with padding (padded cells never win); argmax [N, C, OH, OW]
 * keeps the winning input index within its plane for backward. */
void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, int N, int C, int H, int W,
                       int K, int stride, int pad);
void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, int N, int C,
                        int H, int W, int K, int stride, int pad);
/* Average pool, padding counted in the divisor (count_include_pad = True). */
void avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int K,
                       int stride, int pad);
void avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int K,
                        int stride, int pad);
/* Global average pool: out [N, C]. */
void gap_forward(float *out, const float *inp, int N, int C, int HW);
void gap_backward(float *dinp, const float *dout, int N, int C, int HW);

/* ---- layer norm over the last dimension: inp [N, C]; mean, rstd [N]. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C);

/* ---- multi-head self-attention core (the projections are linear layers):
 * qkv [B, T, 3C] (q, k, v concatenated on the last axis, head h at
 * columns h*hs .. of each), out [B, T, C], att [B, NH, T, T] the softmax
 * probabilities kept for backward; scale 1/sqrt(hs); causal = 1 masks
 * keys after the query (text), 0 attends everywhere (ViT). */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal);
/* dqkv is accumulated. scratch: attention_scratch_floats(T, C, NH) floats per
 * thread (omp_get_max_threads() of them). */
size_t attention_scratch_floats(int T, int C, int NH);
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH, int causal);
/* 1 (the default): attention's AVX-512 kernels where the CPU has them; 0:
 * sgemm calls and scalar row loops, the path of CPUs without AVX-512 (for
 * tests; not to be called while another thread runs attention). Returns
 * the previous setting. */
int attention_set_kernels(int on);

/* ---- token + position embedding: out [B, T, C] = wte[tok] + wpe[t]. */
void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C, int V);
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B,
                        int T, int C, int V);

/* ---- row softmax: out [N, C] = softmax(inp * scale) per row. */
void softmax_forward(float *out, const float *inp, int N, int C, float scale);
void softmax_backward(float *dinp, const float *dout, const float *out, int N, int C, float scale);

/* ---- L2 normalisation of rows: out = inp / max(||inp||, eps); norm [N]
 * keeps ||inp|| (as torch.nn.functional.normalize, eps 1e-12). */
void l2norm_forward(float *out, float *norm, const float *inp, int N, int C);
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int N,
                     int C);

/* ---- the BLAS in use ---- */
/* The kernel set OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...). */
const char *aes_blas_core(void);
/* sgemm in every transpose case and several edge shapes against a double
 * loop: 0, or -1 with what went wrong (wrong kernels for this CPU). */
int aes_blas_selfcheck(aes_err *err);

#endif
