/*
 * The CUDA backend: the GPU context of a rank (its device, stream, cuBLAS
 * and cuDNN handles, the math mode) and device memory; the layer twins,
 * with the signatures of include/aesnet/nn.h and the same conventions
 * (backward ACCUMULATES into parameter gradients and dinp), on device
 * pointers, queued on the context's stream; the AdamW twin of optim.h.
 *
 * The CPU functions stay the reference: test/unit/test_gpu_layers.c runs
 * every twin against its CPU function (skipped where no GPU is found).
 *
 * In a build without CUDA only aes_gpu_available and aes_gpu_init exist;
 * aes_gpu_init then reports that the build has no CUDA.
 */
#ifndef AESNET_GPU_H
#define AESNET_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "aesnet/core.h"
#include "aesnet/loss.h"
#include "aesnet/nn.h"
#include "aesnet/optim.h"

typedef enum {
    AES_MATH_FP32 = 0, /* IEEE fp32 everywhere: TF32 off (the checks against the CPU) */
    AES_MATH_TF32 = 1, /* fp32 storage, TF32 tensor cores in GEMMs and convolutions */
    AES_MATH_BF16 = 2, /* fp32 storage and master weights; the layers' GEMMs multiply in bf16
                        * on tensor cores (fp32 accumulation), convolutions in TF32; the
                        * losses and the optimizer stay fp32 */
} aes_gpu_math;

typedef struct aes_gpu {
    int device;          /* CUDA ordinal in use */
    int n_devices;       /* visible on this node */
    char name[256];      /* e.g. "NVIDIA H100 80GB HBM3" */
    int cc_major, cc_minor;
    size_t mem_total;
    aes_gpu_math math;
    void *stream;        /* cudaStream_t */
    void *cublas;        /* cublasHandle_t */
    void *cudnn;         /* cudnnHandle_t */
    void *workspace;     /* cuDNN workspace, grown on demand */
    size_t workspace_bytes;
    double *bn_sums;     /* batch norm's per-channel sums, grown on demand */
    size_t bn_sums_n;
} aes_gpu;

/* Whether this build has CUDA and the machine a driver and a GPU; when
 * not, why, in why (one line). */
int aes_gpu_available(char *why, size_t cap);
/* Select device local_rank mod (GPUs on the node), so that several ranks
 * may share one GPU, and create the stream and handles. 0, or -1 with
 * err filled (no driver, no GPU, not built with CUDA). */
int aes_gpu_init(aes_gpu *g, int local_rank, aes_gpu_math math, aes_err *err);
void aes_gpu_free(aes_gpu *g);
/* The context the twins below queue on (set by aes_gpu_init). */
aes_gpu *aes_gpu_current(void);
void aes_gpu_set_math(aes_gpu *g, aes_gpu_math math);
/* Wait for the stream. */
void aes_gpu_sync(aes_gpu *g);

/* ---- device memory (failures are fatal, with the size and what for) ---- */
void *aes_gpu_malloc(size_t bytes, const char *what);
void aes_gpu_free_mem(void *p);
/* host -> device on the stream. From pageable memory CUDA copies src to a
 * staging buffer before returning, so src may be reused at once; from
 * pinned memory (the GPU step's staging buffers) the copy is truly
 * asynchronous: src must stay untouched until the stream has passed it. */
void aes_gpu_upload(void *dst, const void *src, size_t bytes);
void aes_gpu_download(void *dst, const void *src, size_t bytes); /* device -> host, then waits */
void aes_gpu_zero(void *p, size_t bytes);
void aes_gpu_copy(void *dst, const void *src, size_t bytes);     /* device -> device */

/* ---- data movement kernels of the encoder tapes ---- */
/* dst[r, 0:cols] (+)= src[r, 0:cols] for rows r, leading dimensions ldd
 * and lds (floats): column slices, interleaving, token selection. */
void copy_cols_gpu(float *dst, int ldd, const float *src, int lds, int rows, int cols, int acc);
/* ViT tokens: in [B, C, P] (patch conv output) -> out [B, 1 + P, C], the
 * class token first, positions added; backward accumulates. */
void patch_tokens_forward_gpu(float *out, const float *in, const float *cls, const float *pos,
                              int B, int C, int P);
void patch_tokens_backward_gpu(float *din, float *dcls, float *dpos, const float *dout, int B,
                               int C, int P);
/* pos[b] = the first position of token eot in tokens[b, 0:T] (T - 1 when
 * none); out[b] = in[b, pos[b], :]; backward adds into those rows. */
void pool_eot_forward_gpu(float *out, int32_t *pos, const float *in, const int32_t *tokens,
                          int eot, int B, int T, int C);
void pool_eot_backward_gpu(float *din, const float *dout, const int32_t *pos, int B, int T, int C);

/* ---- the model's fusion plumbing (src/nn/model.c has the CPU loops) ----
 * partner [A, B]: the attribute fused into (a, i), -1 for none. */
/* fin [A*B, Fv + Ft] = [nv[i]; nu[partner, i] or 0]. */
void fusion_input_gpu(float *fin, const float *nv, const float *nu, const int32_t *partner, int A,
                      int B, int Fv, int Ft);
/* h [A, B, Fv] = v[i] + (partner >= 0 ? fout[a, i] : 0). */
void fusion_add_gpu(float *h, const float *v, const float *fout, const int32_t *partner, int A,
                    int B, int Fv);
/* dfout [B, Fv] (attribute a's rows) = partner >= 0 ? dh[i] : 0. */
void fusion_dout_gpu(float *dfout, const float *dh, const int32_t *partner_a, int B, int Fv);
/* dnv[i] += sum_a dfin[a, i, :Fv] and dnu[c, i] += sum of dfin[a, i, Fv:]
 * over the a whose partner is c, in attribute order (as the CPU). */
void fusion_input_backward_gpu(float *dnv, float *dnu, const float *dfin, const int32_t *partner,
                               int A, int B, int Fv, int Ft);

/* ---- layer twins (device pointers; see nn.h for the shapes) ---- */
void linear_forward_gpu(float *out, const float *inp, const float *w, const float *b, int N, int C,
                        int OC);
void linear_backward_gpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int C, int OC);

/* cuDNN: the algorithm by its heuristics, the workspace from the context. */
void conv2d_forward_gpu(float *out, const float *inp, const float *w, const float *b, int N, int C,
                        int H, int W, int OC, int KH, int KW, int stride, int pad);
void conv2d_backward_gpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad);

/* mean, rstd [C] and running statistics are device arrays. With red, the
 * per-channel sums go through the host for the hook (a round trip per
 * layer; CUDA-aware reduction on device is future work). */
void batchnorm_forward_gpu(float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, float *running_mean,
                           float *running_var, int N, int C, int HW, int train, float momentum,
                           float eps, const aes_reducer *red);
void batchnorm_backward_gpu(float *dinp, float *dgamma, float *dbeta, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *gamma, int N, int C, int HW, const aes_reducer *red);

void relu_forward_gpu(float *out, const float *inp, size_t n);
void relu_backward_gpu(float *dinp, const float *dout, const float *out, size_t n);
void gelu_forward_gpu(float *out, const float *inp, size_t n);
void gelu_backward_gpu(float *dinp, const float *dout, const float *inp, size_t n);
void add_inplace_gpu(float *out, const float *inp, size_t n);

void maxpool2d_forward_gpu(float *out, int32_t *argmax, const float *inp, int N, int C, int H,
                           int W, int K, int stride, int pad);
void maxpool2d_backward_gpu(float *dinp, const float *dout, const int32_t *argmax, int N, int C,
                            int H, int W, int K, int stride, int pad);
void gap_forward_gpu(float *out, const float *inp, int N, int C, int HW);
void gap_backward_gpu(float *dinp, const float *dout, int N, int C, int HW);

void layernorm_forward_gpu(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps);
void layernorm_backward_gpu(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const float *mean, const float *rstd, int N, int C);

/* scratch: attention_scratch_floats_gpu(B, T, C, NH) device floats (the
 * heads laid out [B, NH, T, hs] for batched GEMMs). att as on the CPU. */
size_t attention_scratch_floats_gpu(int B, int T, int C, int NH);
void attention_forward_gpu(float *out, float *att, float *scratch, const float *qkv, int B, int T,
                           int C, int NH, int causal);
void attention_backward_gpu(float *dqkv, float *scratch, const float *dout, const float *qkv,
                            const float *att, int B, int T, int C, int NH, int causal);

void embedding_forward_gpu(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                           int B, int T, int C, int V);
void embedding_backward_gpu(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                            int B, int T, int C, int V);

void softmax_forward_gpu(float *out, const float *inp, int N, int C, float scale);
void softmax_backward_gpu(float *dinp, const float *dout, const float *out, int N, int C,
                          float scale);
void l2norm_forward_gpu(float *out, float *norm, const float *inp, int N, int C);
void l2norm_backward_gpu(float *dinp, const float *dout, const float *out, const float *norm,
                         int N, int C);

/* ---- loss twins (include/aesnet/loss.h), row-block form, device memory:
 * args' x, y, mask, hash, logscale, v and ref are device pointers; the MAC
 * weights stay host memory (the config's). Nothing is copied back: out
 * (device doubles) gets MAC: loss_a[A] then the loss share at [A]; SA: the
 * loss share. Gradients are OVERWRITTEN as on the CPU. */
size_t aes_mac_scratch_floats_gpu(int B, int Bg, int A);
void aes_mac_loss_gpu(const aes_mac_args *args, float *scratch, double *out, float *dx,
                      float *dy, float *dlogscale);
size_t aes_sa_scratch_floats_gpu(int B, int Bg, int F, int Fr);
void aes_sa_loss_gpu(const aes_sa_args *args, float *scratch, double *out, float *dv);

/* ---- optimizer twin: the arithmetic of aes_adamw_step, element for element. */
void aes_adamw_step_gpu(float *p, const float *g, float *m, float *v, size_t n, float lr,
                        const aes_adamw *cfg, int decay, int64_t t);
/* The same, steered from the device: ctrl [2] (device) holds the clip
 * factor the gradient is scaled by first, and 1 to update or 0 to skip
 * (aes_step_control_gpu), so the skip needs no host round trip. */
void aes_adamw_step_gpu_ctrl(float *p, const float *g, float *m, float *v, size_t n, float lr,
                             const aes_adamw *cfg, int decay, int64_t t, const float *ctrl);
/* ctrl [2] from the squared gradient norm (device) and the loss: the clip
 * factor of aes_clip_factor, and whether both are finite. */
void aes_step_control_gpu(float *ctrl, const double *sumsq, double loss, float max_norm);

/* The GEMM rate this GPU reaches (8192^3, best of 5), TFLOP/s, in a math
 * mode: bf16 inputs with fp32 accumulation, TF32, or fp32 with TF32 off. */
double aes_gpu_gemm_peak_tflops(aes_gpu_math math);
/* g *= s. */
void aes_scale_gpu(float *g, size_t n, float s);
/* scratch[0] = sum of g^2 in double, in an order fixed by n (scratch:
 * aes_sumsq_scratch_gpu() device doubles). */
size_t aes_sumsq_scratch_gpu(void);
void aes_sumsq_gpu(const float *g, size_t n, double *scratch);
/* p = min(p, cap) (the logit-scale clamp). */
void aes_clamp_max_gpu(float *p, size_t n, float cap);

#endif
