/*
 * Shared by the CUDA sources: the check macros (every CUDA, cuBLAS and
 * cuDNN call reports the call, file, line and the library's message
 * through the fatal-error hook), the context's handles, and launch helpers.
 */
#ifndef AESNET_GPU_INTERNAL_CUH
#define AESNET_GPU_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "aesnet/core.h"
#include "aesnet/gpu.h"
}

#define CUDA_OK(call)                                                                       \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess)                                                              \
            aes_fatal(AES_ERR_INTERNAL, __FILE__, __LINE__, __func__, "%s: %s", #call,      \
                      cudaGetErrorString(e_));                                              \
    } while (0)

#define CUBLAS_OK(call)                                                                     \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                    \
            aes_fatal(AES_ERR_INTERNAL, __FILE__, __LINE__, __func__, "%s: %s", #call,      \
                      cublasGetStatusString(s_));                                           \
    } while (0)

#define CUDNN_OK(call)                                                                      \
    do {                                                                                    \
        cudnnStatus_t s_ = (call);                                                          \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                     \
            aes_fatal(AES_ERR_INTERNAL, __FILE__, __LINE__, __func__, "%s: %s", #call,      \
                      cudnnGetErrorString(s_));                                             \
    } while (0)

/* A kernel launch: the launch error now, an execution error at the next
 * synchronising call (reported there, naming that call). */
#define LAUNCH_OK() CUDA_OK(cudaGetLastError())

static inline aes_gpu *gpu_ctx(void)
{
    aes_gpu *g = aes_gpu_current();
    if (!g) aes_internal_error("a GPU function was called before aes_gpu_init");
    return g;
}
static inline cudaStream_t gpu_stream(void) { return (cudaStream_t)gpu_ctx()->stream; }
static inline cublasHandle_t gpu_cublas(void) { return (cublasHandle_t)gpu_ctx()->cublas; }
static inline cudnnHandle_t gpu_cudnn(void) { return (cudnnHandle_t)gpu_ctx()->cudnn; }
/* The cuDNN workspace, grown to at least bytes. */
void *gpu_workspace(size_t bytes);

/* C = alpha op(A) op(B) + beta C on fp32 matrices (column-major, as
 * cuBLAS), multiplied as the context's math mode says (fp32, TF32, or
 * bf16 inputs with fp32 accumulation); strict fp32 where exact says so
 * (the losses: fp32 loss arithmetic in every mode). */
static inline cublasComputeType_t gpu_compute(int exact)
{
    if (exact) return CUBLAS_COMPUTE_32F;
    switch (gpu_ctx()->math) {
    case AES_MATH_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case AES_MATH_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    default: return CUBLAS_COMPUTE_32F;
    }
}

static inline void gpu_gemm(int exact, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                            int k, float alpha, const float *A, int lda, const float *B, int ldb,
                            float beta, float *C, int ldc)
{
    CUBLAS_OK(cublasGemmEx(gpu_cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F,
                           ldb, &beta, C, CUDA_R_32F, ldc, gpu_compute(exact), CUBLAS_GEMM_DEFAULT));
}

/* Blocks to cover n elements: every kernel launched with it may index
 * element blockIdx.x * blockDim.x + threadIdx.x directly (the grid's x
 * limit, 2^31 - 1 blocks, is far above any tensor here; checked). */
static inline unsigned blocks_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b > 0x7fffffffu) aes_internal_error("a kernel over %zu elements exceeds the grid", n);
    return (unsigned)(b < 1 ? 1 : b);
}

/* Sum over a block of blockDim.x <= 1024 threads (a multiple of 32);
 * every thread gets the total. */
template <typename T> __device__ inline T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T> __device__ inline T block_sum(T v)
{
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* part may still be read by a previous call */
    if (lane == 0) part[wid] = v;
    __syncthreads();
    const int nw = (blockDim.x + 31) >> 5;
    T t = lane < nw ? part[lane] : T(0);
    return warp_sum(t);
}

#endif
