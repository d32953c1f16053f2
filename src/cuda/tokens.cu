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

/* ---- the model's fusion plumbing ------------------------------------------------------- */

__global__ void fusion_input_kernel(float *fin, const float *nv, const float *nu,
                                    const int32_t *partner, int A, int B, int Fv, int Ft)
{
    const int W = Fv + Ft;
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)A * B * W) return;
    const int k = (int)(e % W);
    const size_t ai = e / W;
    const int i = (int)(ai % B), c = partner[ai];
    fin[e] = k < Fv ? nv[(size_t)i * Fv + k] : c >= 0 ? nu[((size_t)c * B + i) * Ft + (k - Fv)] : 0.0f;
}

extern "C" void fusion_input_gpu(float *fin, const float *nv, const float *nu,
                                 const int32_t *partner, int A, int B, int Fv, int Ft)
{
    const size_t n = (size_t)A * B * (Fv + Ft);
    fusion_input_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(fin, nv, nu, partner, A, B,
                                                                       Fv, Ft);
    LAUNCH_OK();
}

__global__ void fusion_add_kernel(float *h, const float *v, const float *fout,
                                  const int32_t *partner, int A, int B, int Fv)
{
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)A * B * Fv) return;
    const size_t ai = e / Fv;
    const int i = (int)(ai % B), k = (int)(e % Fv);
    const float base = v[(size_t)i * Fv + k];
    h[e] = fout && partner[ai] >= 0 ? base + fout[e] : base;
}

extern "C" void fusion_add_gpu(float *h, const float *v, const float *fout, const int32_t *partner,
                               int A, int B, int Fv)
{
    const size_t n = (size_t)A * B * Fv;
    fusion_add_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(h, v, fout, partner, A, B, Fv);
    LAUNCH_OK();
}

__global__ void fusion_dout_kernel(float *dfout, const float *dh, const int32_t *partner_a, int B,
                                   int Fv)
{
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)B * Fv) return;
    dfout[e] = partner_a[e / Fv] >= 0 ? dh[e] : 0.0f;
}

extern "C" void fusion_dout_gpu(float *dfout, const float *dh, const int32_t *partner_a, int B,
                                int Fv)
{
    const size_t n = (size_t)B * Fv;
    fusion_dout_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(dfout, dh, partner_a, B, Fv);
    LAUNCH_OK();
}

/* One thread per element of dnv [B, Fv] and of dnu [A, B, Ft]: a gather
 * over the attributes in order, no atomics. */
__global__ void fusion_input_bwd_kernel(float *dnv, float *dnu, const float *dfin,
                                        const int32_t *partner, int A, int B, int Fv, int Ft)
{
    const int W = Fv + Ft;
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t nv = (size_t)B * Fv;
    if (e < nv) {
        const int i = (int)(e / Fv), k = (int)(e % Fv);
        float acc = dnv[e];
        for (int a = 0; a < A; a++)
            if (partner[(size_t)a * B + i] >= 0) acc += dfin[((size_t)a * B + i) * W + k];
        dnv[e] = acc;
        return;
    }
    e -= nv;
    if (e >= (size_t)A * B * Ft) return;
    const int k = (int)(e % Ft);
    const size_t ci = e / Ft;
    const int c = (int)(ci / B), i = (int)(ci % B);
    float acc = dnu[e];
    for (int a = 0; a < A; a++)
        if (partner[(size_t)a * B + i] == c) acc += dfin[((size_t)a * B + i) * W + Fv + k];
    dnu[e] = acc;
}

extern "C" void fusion_input_backward_gpu(float *dnv, float *dnu, const float *dfin,
                                          const int32_t *partner, int A, int B, int Fv, int Ft)
{
    const size_t n = (size_t)B * Fv + (size_t)A * B * Ft;
    fusion_input_bwd_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(dnv, dnu, dfin, partner,
                                                                           A, B, Fv, Ft);
    LAUNCH_OK();
}
