/*
 * The GPU context of a rank and device memory (include/aesnet/gpu.h), and
 * the runtime queries of aesnet --version. A machine without a GPU or
 * driver is reported, not treated as a fault.
 */
#include <stdio.h>
#include <string.h>

#include "cuda/gpu_internal.cuh"

extern "C" int aes_cuda_describe(char *out, size_t cap)
{
    int rt = 0, drv = 0, ndev = 0;
    cudaRuntimeGetVersion(&rt);
    cudaError_t e = cudaDriverGetVersion(&drv);
    if (e != cudaSuccess || drv == 0) {
        snprintf(out, cap, "CUDA runtime %d.%d (built for sm_80, sm_90); no CUDA driver on this machine",
                 rt / 1000, (rt % 1000) / 10);
        return 0;
    }
    e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess) {
        snprintf(out, cap, "CUDA runtime %d.%d, driver %d.%d; no usable GPU (%s)", rt / 1000,
                 (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10, cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    snprintf(out, cap, "CUDA runtime %d.%d, driver %d.%d, %d GPU(s), cuBLAS %d, cuDNN %zu",
             rt / 1000, (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10, ndev, CUBLAS_VERSION,
             cudnnGetVersion());
    return ndev;
}

static aes_gpu *g_current;

extern "C" aes_gpu *aes_gpu_current(void) { return g_current; }

extern "C" int aes_gpu_available(char *why, size_t cap)
{
    int drv = 0, ndev = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0) {
        snprintf(why, cap, "no CUDA driver on this machine");
        cudaGetLastError();
        return 0;
    }
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0) {
        snprintf(why, cap, "no usable GPU (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
        cudaGetLastError();
        return 0;
    }
    why[0] = 0;
    return 1;
}

extern "C" void aes_gpu_set_math(aes_gpu *g, aes_gpu_math math)
{
    g->math = math;
    /* The GEMMs name their compute type (gpu_gemm); pedantic elsewhere. */
    CUBLAS_OK(cublasSetMathMode((cublasHandle_t)g->cublas, CUBLAS_DEFAULT_MATH));
}

extern "C" int aes_gpu_init(aes_gpu *g, int local_rank, aes_gpu_math math, aes_err *err)
{
    memset(g, 0, sizeof *g);
    char why[256];
    if (!aes_gpu_available(why, sizeof why)) {
        aes_err_set(err, "%s", why);
        return -1;
    }
    CUDA_OK(cudaGetDeviceCount(&g->n_devices));
    g->device = (local_rank < 0 ? 0 : local_rank) % g->n_devices;
    CUDA_OK(cudaSetDevice(g->device));
    cudaDeviceProp p;
    CUDA_OK(cudaGetDeviceProperties(&p, g->device));
    snprintf(g->name, sizeof g->name, "%s", p.name);
    g->cc_major = p.major;
    g->cc_minor = p.minor;
    g->mem_total = p.totalGlobalMem;
    cudaStream_t s;
    CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    g->stream = s;
    cublasHandle_t cb;
    CUBLAS_OK(cublasCreate(&cb));
    CUBLAS_OK(cublasSetStream(cb, s));
    g->cublas = cb;
    cudnnHandle_t cd;
    CUDNN_OK(cudnnCreate(&cd));
    CUDNN_OK(cudnnSetStream(cd, s));
    g->cudnn = cd;
    aes_gpu_set_math(g, math);
    g_current = g;
    return 0;
}

extern "C" void aes_gpu_free(aes_gpu *g)
{
    if (!g->stream) return;
    CUDA_OK(cudaStreamSynchronize((cudaStream_t)g->stream));
    if (g->workspace) CUDA_OK(cudaFree(g->workspace));
    if (g->bn_sums) CUDA_OK(cudaFree(g->bn_sums));
    CUDNN_OK(cudnnDestroy((cudnnHandle_t)g->cudnn));
    CUBLAS_OK(cublasDestroy((cublasHandle_t)g->cublas));
    CUDA_OK(cudaStreamDestroy((cudaStream_t)g->stream));
    if (g_current == g) g_current = NULL;
    memset(g, 0, sizeof *g);
}

extern "C" void aes_gpu_sync(aes_gpu *g) { CUDA_OK(cudaStreamSynchronize((cudaStream_t)g->stream)); }

void *gpu_workspace(size_t bytes)
{
    aes_gpu *g = gpu_ctx();
    if (bytes > g->workspace_bytes) {
        if (g->workspace) {
            CUDA_OK(cudaStreamSynchronize((cudaStream_t)g->stream));
            CUDA_OK(cudaFree(g->workspace));
        }
        g->workspace = aes_gpu_malloc(bytes, "cuDNN workspace");
        g->workspace_bytes = bytes;
    }
    return g->workspace;
}

extern "C" void *aes_gpu_malloc(size_t bytes, const char *what)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        aes_internal_error("cannot allocate %zu bytes of GPU memory for %s (%zu of %zu free): %s",
                           bytes, what, fr, tot, cudaGetErrorString(e));
    }
    return p;
}

extern "C" void aes_gpu_free_mem(void *p)
{
    if (p) CUDA_OK(cudaFree(p));
}

extern "C" void aes_gpu_upload(void *dst, const void *src, size_t bytes)
{
    CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, gpu_stream()));
}

extern "C" void aes_gpu_download(void *dst, const void *src, size_t bytes)
{
    CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, gpu_stream()));
    CUDA_OK(cudaStreamSynchronize(gpu_stream()));
}

extern "C" void aes_gpu_zero(void *p, size_t bytes)
{
    CUDA_OK(cudaMemsetAsync(p, 0, bytes, gpu_stream()));
}

/* The GEMM peak this GPU reaches: best of 5 products n x n x n (n = 8192)
 * in the math mode (bf16 inputs with fp32 accumulation, TF32, or fp32),
 * in TFLOP/s: what model FLOP utilisation is reported against. */
extern "C" double aes_gpu_gemm_peak_tflops(aes_gpu_math math)
{
    const int bf16 = math == AES_MATH_BF16;
    const cublasComputeType_t ct =
        math == AES_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const int n = 8192;
    const size_t el = bf16 ? 2 : 4;
    void *a = aes_gpu_malloc(el * n * n, "peak A"), *b = aes_gpu_malloc(el * n * n, "peak B");
    void *c = aes_gpu_malloc(4 * (size_t)n * n, "peak C");
    CUDA_OK(cudaMemsetAsync(a, 0, el * n * n, gpu_stream()));
    CUDA_OK(cudaMemsetAsync(b, 0, el * n * n, gpu_stream()));
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType t = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    double best = 0;
    for (int r = 0; r < 6; r++) {
        CUDA_OK(cudaEventRecord(e0, gpu_stream()));
        CUBLAS_OK(cublasGemmEx(gpu_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, t, n, b, t, n,
                               &zero, c, CUDA_R_32F, n, ct, CUBLAS_GEMM_DEFAULT));
        CUDA_OK(cudaEventRecord(e1, gpu_stream()));
        CUDA_OK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        const double tf = 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
        if (r > 0 && tf > best) best = tf; /* the first warms up */
    }
    CUDA_OK(cudaEventDestroy(e0));
    CUDA_OK(cudaEventDestroy(e1));
    aes_gpu_free_mem(a), aes_gpu_free_mem(b), aes_gpu_free_mem(c);
    return best;
}
