/*
 * GPU twins of conv2d (cuDNN 9's convolution API) and batch norm (own
 * kernels, so that the statistics can pass through the same reduction
 * hook as on the CPU).
 *
 * Convolution: NCHW float tensors, cross-correlation as PyTorch. The
 * algorithm is cuDNN's first heuristic choice that runs in the workspace
 * we can give it; in fp32 mode the descriptor's math type is FMA only, so
 * no TF32 tensor cores (the checks against the CPU to 1e-4); in TF32 and
 * bf16 modes tensor cores are allowed (TF32: the tensors stay fp32). Descriptors are made per call: cheap next to
 * the convolution, and a cache keyed by shape can come when profiles say.
 */
#include "cuda/gpu_internal.cuh"

typedef struct {
    cudnnTensorDescriptor_t x, y, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} conv_desc;

static void conv_desc_make(conv_desc *d, int N, int C, int H, int W, int OC, int KH, int KW,
                           int stride, int pad)
{
    CUDNN_OK(cudnnCreateTensorDescriptor(&d->x));
    CUDNN_OK(cudnnCreateTensorDescriptor(&d->y));
    CUDNN_OK(cudnnCreateTensorDescriptor(&d->b));
    CUDNN_OK(cudnnCreateFilterDescriptor(&d->w));
    CUDNN_OK(cudnnCreateConvolutionDescriptor(&d->conv));
    CUDNN_OK(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W));
    CUDNN_OK(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, OC, C, KH, KW));
    CUDNN_OK(cudnnSetConvolution2dDescriptor(d->conv, pad, pad, stride, stride, 1, 1,
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_OK(cudnnSetConvolutionMathType(
        d->conv, gpu_ctx()->math == AES_MATH_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    const int OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    CUDNN_OK(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, OC, OH, OW));
    CUDNN_OK(cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, OC, 1, 1));
}

static void conv_desc_free(conv_desc *d)
{
    CUDNN_OK(cudnnDestroyConvolutionDescriptor(d->conv));
    CUDNN_OK(cudnnDestroyFilterDescriptor(d->w));
    CUDNN_OK(cudnnDestroyTensorDescriptor(d->b));
    CUDNN_OK(cudnnDestroyTensorDescriptor(d->y));
    CUDNN_OK(cudnnDestroyTensorDescriptor(d->x));
}

/* Larger workspaces than this are not asked for: an algorithm that wants
 * more is passed over for the next. */
static const size_t WORKSPACE_CAP = (size_t)1 << 30;

/* The first of cuDNN's ranked choices that runs within the cap. */
template <typename Perf> static int pick_algo(const Perf *perf, int got, const char *what)
{
    for (int i = 0; i < got; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= WORKSPACE_CAP) return i;
    aes_internal_error("cuDNN offers no %s algorithm for this convolution", what);
}

extern "C" void conv2d_forward_gpu(float *out, const float *inp, const float *w, const float *b,
                                   int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                                   int pad)
{
    conv_desc d;
    conv_desc_make(&d, N, C, H, W, OC, KH, KW, stride, pad);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    CUDNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(gpu_cudnn(), d.x, d.w, d.conv, d.y,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    const int pick = pick_algo(perf, got, "forward");
    size_t ws = 0;
    CUDNN_OK(cudnnGetConvolutionForwardWorkspaceSize(gpu_cudnn(), d.x, d.w, d.conv, d.y,
                                                     perf[pick].algo, &ws));
    void *wsp = ws ? gpu_workspace(ws) : NULL;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_OK(cudnnConvolutionForward(gpu_cudnn(), &one, d.x, inp, d.w, w, d.conv, perf[pick].algo,
                                     wsp, ws, &zero, d.y, out));
    if (b) CUDNN_OK(cudnnAddTensor(gpu_cudnn(), &one, d.b, b, &one, d.y, out));
    conv_desc_free(&d);
}

extern "C" void conv2d_backward_gpu(float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, int N, int C, int H, int W,
                                    int OC, int KH, int KW, int stride, int pad)
{
    conv_desc d;
    conv_desc_make(&d, N, C, H, W, OC, KH, KW, stride, pad);
    const float one = 1.0f;
    /* Accumulate, as the CPU functions do: beta = 1. */
    if (db) CUDNN_OK(cudnnConvolutionBackwardBias(gpu_cudnn(), &one, d.y, dout, &one, d.b, db));

    cudnnConvolutionBwdFilterAlgoPerf_t pf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        gpu_cudnn(), d.x, d.y, d.conv, d.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, pf));
    int pick = pick_algo(pf, got, "filter-gradient");
    size_t ws = 0;
    CUDNN_OK(cudnnGetConvolutionBackwardFilterWorkspaceSize(gpu_cudnn(), d.x, d.y, d.conv, d.w,
                                                            pf[pick].algo, &ws));
    void *wsp = ws ? gpu_workspace(ws) : NULL;
    CUDNN_OK(cudnnConvolutionBackwardFilter(gpu_cudnn(), &one, d.x, inp, d.y, dout, d.conv,
                                            pf[pick].algo, wsp, ws, &one, d.w, dw));

    if (dinp) {
        cudnnConvolutionBwdDataAlgoPerf_t pd[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        got = 0;
        CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            gpu_cudnn(), d.w, d.y, d.conv, d.x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, pd));
        pick = pick_algo(pd, got, "data-gradient");
        CUDNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(gpu_cudnn(), d.w, d.y, d.conv, d.x,
                                                              pd[pick].algo, &ws));
        wsp = ws ? gpu_workspace(ws) : NULL;
        CUDNN_OK(cudnnConvolutionBackwardData(gpu_cudnn(), &one, d.w, w, d.y, dout, d.conv,
                                              pd[pick].algo, wsp, ws, &one, d.x, dinp));
    }
    conv_desc_free(&d);
}

/* ---- batch norm ---------------------------------------------------------------------------
 * As src/nn/batchnorm.c: per channel, in double, the sum over N*HW, then
 * (after the means are known) the sum of squared deviations; each through
 * the reduction hook when there is one. One block per channel. */

__global__ void bn_sum_kernel(double *sum, const float *inp, int N, int C, int HW)
{
    const int c = blockIdx.x;
    double s = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + ((size_t)n * C + c) * HW;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) s += x[i];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) sum[c] = s;
    if (c == 0 && threadIdx.x == 0) sum[C] = (double)N * HW;
}

__global__ void bn_ssd_kernel(double *ssd, const double *sum, const float *inp, int N, int C,
                              int HW)
{
    const int c = blockIdx.x;
    const double m = sum[c] / sum[C];
    double s = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = inp + ((size_t)n * C + c) * HW;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) {
            const double d = x[i] - m;
            s += d * d;
        }
    }
    s = block_sum(s);
    if (threadIdx.x == 0) ssd[c] = s;
}

__global__ void bn_stats_kernel(float *mean, float *rstd, float *rmean, float *rvar,
                                const double *sum, const double *ssd, int C, int train,
                                float momentum, float eps)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    if (!train) {
        mean[c] = rmean[c];
        rstd[c] = (float)(1.0 / sqrt((double)rvar[c] + (double)eps));
        return;
    }
    const double count = sum[C], m = sum[c] / count, var = ssd[c] / count;
    mean[c] = (float)m;
    rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
    rmean[c] = (float)((1.0 - momentum) * rmean[c] + (double)momentum * m);
    rvar[c] = (float)((1.0 - momentum) * rvar[c] + (double)momentum * var * count / (count - 1.0));
}

__global__ void bn_apply_kernel(float *out, const float *inp, const float *mean, const float *rstd,
                                const float *gamma, const float *beta, size_t total, int C, int HW)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int c = (int)((i / HW) % C);
    out[i] = (inp[i] - mean[c]) * (rstd[c] * gamma[c]) + beta[c];
}

/* sd[c] = sum dout, sd[C + c] = sum dout * xhat, sd[2C] = N*HW. */
__global__ void bn_dsums_kernel(double *sd, const float *dout, const float *inp, const float *mean,
                                const float *rstd, int N, int C, int HW)
{
    const int c = blockIdx.x;
    const float m = mean[c], r = rstd[c];
    double a = 0.0, b = 0.0;
    for (int n = 0; n < N; n++) {
        const size_t o = ((size_t)n * C + c) * HW;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) {
            const float d = dout[o + i];
            a += d;
            b += (double)d * ((inp[o + i] - m) * r);
        }
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) sd[c] = a, sd[C + c] = b;
    if (c == 0 && threadIdx.x == 0) sd[2 * C] = (double)N * HW;
}

__global__ void bn_param_grad_kernel(float *dgamma, float *dbeta, const double *sd, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    dbeta[c] += (float)sd[c];
    dgamma[c] += (float)sd[C + c];
}

__global__ void bn_dx_kernel(float *dinp, const float *dout, const float *inp, const float *mean,
                             const float *rstd, const float *gamma, const double *sd, size_t total,
                             int C, int HW)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int c = (int)((i / HW) % C);
    const double count = sd[2 * C];
    const float m = mean[c], r = rstd[c], k = gamma[c] * r;
    const float md = (float)(sd[c] / count), mdx = (float)(sd[C + c] / count);
    const float xhat = (inp[i] - m) * r;
    dinp[i] += k * (dout[i] - md - xhat * mdx);
}

/* Sums through the hook: down to the host, reduced, back up. With count
 * set, the last entry is the global N*HW, which must exceed 1 (as the
 * CPU checks). */
static void reduce_via_host(const aes_reducer *red, double *dbuf, int n, int count)
{
    if (!red || !red->allreduce_sum) return;
    double *h = (double *)aes_malloc(sizeof(double) * n, "batch-norm sums");
    aes_gpu_download(h, dbuf, sizeof(double) * n);
    red->allreduce_sum(h, n, red->ctx);
    if (count && !(h[n - 1] > 1.0))
        aes_internal_error("batch norm in training needs more than one value per channel "
                           "(global N*HW = %g)",
                           h[n - 1]);
    aes_gpu_upload(dbuf, h, sizeof(double) * n);
    free(h); /* the upload staged h before returning (see aes_gpu_upload) */
}

/* Per-channel double scratch of the context, grown on demand (batch norm
 * runs on one stream, one layer at a time). */
static double *bn_scratch(size_t n)
{
    aes_gpu *g = gpu_ctx();
    if (n > g->bn_sums_n) {
        if (g->bn_sums) {
            aes_gpu_sync(g);
            aes_gpu_free_mem(g->bn_sums);
        }
        g->bn_sums = (double *)aes_gpu_malloc(sizeof(double) * n, "batch-norm sums");
        g->bn_sums_n = n;
    }
    return g->bn_sums;
}

extern "C" void batchnorm_forward_gpu(float *out, float *mean, float *rstd, const float *inp,
                                      const float *gamma, const float *beta, float *running_mean,
                                      float *running_var, int N, int C, int HW, int train,
                                      float momentum, float eps, const aes_reducer *red)
{
    AES_CHECK(N > 0 && C > 0 && HW > 0);
    double *sum = bn_scratch(2 * (size_t)C + 2), *ssd = sum + C + 1;
    if (train) {
        if (!red && (size_t)N * HW <= 1)
            aes_internal_error("batch norm in training needs more than one value per channel "
                               "(N*HW = %zu)",
                               (size_t)N * HW);
        bn_sum_kernel<<<C, 256, 0, gpu_stream()>>>(sum, inp, N, C, HW);
        LAUNCH_OK();
        reduce_via_host(red, sum, C + 1, 1);
        bn_ssd_kernel<<<C, 256, 0, gpu_stream()>>>(ssd, sum, inp, N, C, HW);
        LAUNCH_OK();
        reduce_via_host(red, ssd, C, 0);
    }
    bn_stats_kernel<<<blocks_for(C, 128), 128, 0, gpu_stream()>>>(
        mean, rstd, running_mean, running_var, sum, ssd, C, train, momentum, eps);
    LAUNCH_OK();
    const size_t total = (size_t)N * C * HW;
    bn_apply_kernel<<<blocks_for(total, 256), 256, 0, gpu_stream()>>>(out, inp, mean, rstd, gamma,
                                                                      beta, total, C, HW);
    LAUNCH_OK();
}

extern "C" void batchnorm_backward_gpu(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                       const float *inp, const float *mean, const float *rstd,
                                       const float *gamma, int N, int C, int HW,
                                       const aes_reducer *red)
{
    AES_CHECK(N > 0 && C > 0 && HW > 0);
    double *sd = bn_scratch(2 * (size_t)C + 2);
    bn_dsums_kernel<<<C, 256, 0, gpu_stream()>>>(sd, dout, inp, mean, rstd, N, C, HW);
    LAUNCH_OK();
    /* The parameter gradients take the local sums (the gradient
     * all-reduce adds the other ranks'); dinp the global ones. */
    bn_param_grad_kernel<<<blocks_for(C, 128), 128, 0, gpu_stream()>>>(dgamma, dbeta, sd, C);
    LAUNCH_OK();
    reduce_via_host(red, sd, 2 * C + 1, 0);
    const size_t total = (size_t)N * C * HW;
    bn_dx_kernel<<<blocks_for(total, 256), 256, 0, gpu_stream()>>>(dinp, dout, inp, mean, rstd,
                                                                   gamma, sd, total, C, HW);
    LAUNCH_OK();
}
