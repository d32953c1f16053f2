/*
 * Data movement of the encoder tapes on the GPU (include/aesnet/gpu.h):
 * strided column copies, the ViT's token assembly and the text encoder's
 * pooling at the end-of-text token. Sums over the batch walk the samples
 * in order in one thread, as on the CPU.
 */
#include "cuda/gpu_internal.cuh"

extern "C" void aes_gpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, gpu_stream()));
}

__global__ void copy_cols_kernel(float *dst, int ldd, const float *src, int lds, int rows, int cols,
                                 int acc)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * cols) return;
    const size_t r = i / cols, c = i % cols;
    const float v = src[r * lds + c];
    float *d = dst + r * ldd + c;
    *d = acc ? *d + v : v;
}

extern "C" void copy_cols_gpu(float *dst, int ldd, const float *src, int lds, int rows, int cols,
                              int acc)
{
    const size_t n = (size_t)rows * cols;
    if (!n) return;
    copy_cols_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(dst, ldd, src, lds, rows, cols,
                                                                    acc);
    LAUNCH_OK();
}

__global__ void patch_fwd_kernel(float *out, const float *in, const float *cls, const float *pos,
                                 int B, int C, int P)
{
    const int T = P + 1;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * T * C) return;
    const int c = (int)(i % C), t = (int)((i / C) % T), b = (int)(i / ((size_t)T * C));
    const float v = t == 0 ? cls[c] : in[((size_t)b * C + c) * P + (t - 1)];
    out[i] = v + pos[(size_t)t * C + c];
}

__global__ void patch_bwd_in_kernel(float *din, const float *dout, int B, int C, int P)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; /* over din [B, C, P] */
    if (i >= (size_t)B * C * P) return;
    const int p = (int)(i % P), c = (int)((i / P) % C), b = (int)(i / ((size_t)C * P));
    din[i] += dout[((size_t)b * (P + 1) + 1 + p) * C + c];
}

__global__ void patch_bwd_pos_kernel(float *dcls, float *dpos, const float *dout, int B, int C,
                                     int P)
{
    const int T = P + 1;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; /* over dpos [T, C] */
    if (i >= (size_t)T * C) return;
    float acc = 0.0f; /* in sample order, then added once */
    for (int b = 0; b < B; b++) acc += dout[(size_t)b * T * C + i];
    dpos[i] += acc;
    if (i < (size_t)C) dcls[i] += acc;
}

extern "C" void patch_tokens_forward_gpu(float *out, const float *in, const float *cls,
                                         const float *pos, int B, int C, int P)
{
    const size_t n = (size_t)B * (P + 1) * C;
    patch_fwd_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(out, in, cls, pos, B, C, P);
    LAUNCH_OK();
}

extern "C" void patch_tokens_backward_gpu(float *din, float *dcls, float *dpos, const float *dout,
                                          int B, int C, int P)
{
    const size_t n = (size_t)B * C * P;
    patch_bwd_in_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(din, dout, B, C, P);
    LAUNCH_OK();
    const size_t m = (size_t)(P + 1) * C;
    patch_bwd_pos_kernel<<<blocks_for(m, 256), 256, 0, gpu_stream()>>>(dcls, dpos, dout, B, C, P);
    LAUNCH_OK();
}

__global__ void eot_pos_kernel(int32_t *pos, const int32_t *tokens, int eot, int B, int T)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    int t = 0;
    while (t < T && tokens[(size_t)b * T + t] != eot) t++;
    pos[b] = t == T ? T - 1 : t;
}

__global__ void gather_rows_kernel(float *out, const float *in, const int32_t *pos, int B, int T,
                                   int C, int backward)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * C) return;
    const int c = (int)(i % C), b = (int)(i / C);
    const size_t row = ((size_t)b * T + pos[b]) * C + c;
    if (backward) out[row] += in[i]; /* out = din, in = dout */
    else out[i] = in[row];
}

extern "C" void pool_eot_forward_gpu(float *out, int32_t *pos, const float *in,
                                     const int32_t *tokens, int eot, int B, int T, int C)
{
    eot_pos_kernel<<<blocks_for(B, 128), 128, 0, gpu_stream()>>>(pos, tokens, eot, B, T);
    LAUNCH_OK();
    gather_rows_kernel<<<blocks_for((size_t)B * C, 256), 256, 0, gpu_stream()>>>(out, in, pos, B, T,
                                                                                 C, 0);
    LAUNCH_OK();
}

extern "C" void pool_eot_backward_gpu(float *din, const float *dout, const int32_t *pos, int B,
                                      int T, int C)
{
    gather_rows_kernel<<<blocks_for((size_t)B * C, 256), 256, 0, gpu_stream()>>>(din, dout, pos, B,
                                                                                 T, C, 1);
    LAUNCH_OK();
}
