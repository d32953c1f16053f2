/*
 * GPU twins of the layers in src/nn (include/aesnet/gpu.h): GEMMs through
 * cuBLAS (row-major tensors seen as their column-major transposes), the
 * rest as plain kernels. Reductions that the CPU does in double are done
 * in double here too; column sums (bias, layer-norm and embedding-position
 * gradients) give each column to one thread that walks the rows in order,
 * so they repeat bit for bit. The token-embedding gradient is the one
 * scatter with atomics (rows of dwte hit by several tokens).
 */
#include <math.h>

#include "cuda/gpu_internal.cuh"


/* ---- linear --------------------------------------------------------------------- */

__global__ void bias_fill_kernel(float *out, const float *b, int N, int OC)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] = b[i % OC];
}

/* db[o] += sum_n dout[n, o]: one thread per column, rows in order. */
__global__ void colsum_add_kernel(float *db, const float *dout, int N, int OC)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    double acc = 0.0;
    for (int n = 0; n < N; n++) acc += dout[(size_t)n * OC + o];
    db[o] += (float)acc;
}

extern "C" void linear_forward_gpu(float *out, const float *inp, const float *w, const float *b,
                                   int N, int C, int OC)
{
    float beta = 0.0f;
    if (b) {
        bias_fill_kernel<<<blocks_for((size_t)N * OC, 256), 256, 0, gpu_stream()>>>(out, b, N, OC);
        LAUNCH_OK();
        beta = 1.0f;
    }
    /* out^T [OC, N] = w [OC, C] . inp^T [C, N] */
    gpu_gemm(0, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 1.0f, w, C, inp, C, beta, out, OC);
}

extern "C" void linear_backward_gpu(float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, int N, int C, int OC)
{
    /* dinp^T [C, N] += w^T [C, OC] . dout^T [OC, N] */
    if (dinp)
        gpu_gemm(0, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, 1.0f, w, C, dout, OC, 1.0f, dinp, C);
    /* dw^T [C, OC] += inp^T [C, N] . dout [N, OC] */
    gpu_gemm(0, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, C);
    if (db) {
        colsum_add_kernel<<<blocks_for(OC, 128), 128, 0, gpu_stream()>>>(db, dout, N, OC);
        LAUNCH_OK();
    }
}

/* ---- element-wise ---------------------------------------------------------------- */

#define ELEMENTWISE(name, body)                                                        \
    __global__ void name##_kernel(float *y, const float *a, const float *b, size_t n)  \
    {                                                                                  \
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;          \
             i += (size_t)gridDim.x * blockDim.x) {                                    \
            body;                                                                      \
        }                                                                              \
    }

ELEMENTWISE(relu_fwd, { y[i] = a[i] < 0.0f ? 0.0f : a[i]; }) /* NaN passes, as on the CPU */
ELEMENTWISE(relu_bwd, { y[i] += b[i] > 0.0f ? a[i] : 0.0f; }) /* a = dout, b = out */
ELEMENTWISE(gelu_fwd, { y[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f)); })
ELEMENTWISE(gelu_bwd, {                                        /* a = dout, b = inp */
    const float x = b[i];
    const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    y[i] += a[i] * (cdf + x * pdf);
})
ELEMENTWISE(add, { y[i] += a[i]; })

#define RUN_ELEMENTWISE(name, y, a, b, n)                                                   \
    do {                                                                                    \
        if ((n) == 0) return;                                                               \
        name##_kernel<<<blocks_for((n), 256), 256, 0, gpu_stream()>>>((y), (a), (b), (n)); \
        LAUNCH_OK();                                                                        \
    } while (0)

extern "C" void relu_forward_gpu(float *out, const float *inp, size_t n)
{
    RUN_ELEMENTWISE(relu_fwd, out, inp, NULL, n);
}
extern "C" void relu_backward_gpu(float *dinp, const float *dout, const float *out, size_t n)
{
    RUN_ELEMENTWISE(relu_bwd, dinp, dout, out, n);
}
extern "C" void gelu_forward_gpu(float *out, const float *inp, size_t n)
{
    RUN_ELEMENTWISE(gelu_fwd, out, inp, NULL, n);
}
extern "C" void gelu_backward_gpu(float *dinp, const float *dout, const float *inp, size_t n)
{
    RUN_ELEMENTWISE(gelu_bwd, dinp, dout, inp, n);
}
extern "C" void add_inplace_gpu(float *out, const float *inp, size_t n)
{
    RUN_ELEMENTWISE(add, out, inp, NULL, n);
}

/* ---- pooling ------------------------------------------------------------------------ */

/* One block per plane (n, c). */
__global__ void gap_fwd_kernel(float *out, const float *inp, int HW)
{
    const float *x = inp + (size_t)blockIdx.x * HW;
    double s = 0.0;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) s += x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)(s / HW);
}

__global__ void gap_bwd_kernel(float *dinp, const float *dout, size_t total, int HW)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) dinp[i] += dout[i / HW] / (float)HW;
}

extern "C" void gap_forward_gpu(float *out, const float *inp, int N, int C, int HW)
{
    gap_fwd_kernel<<<N * C, 128, 0, gpu_stream()>>>(out, inp, HW);
    LAUNCH_OK();
}

extern "C" void gap_backward_gpu(float *dinp, const float *dout, int N, int C, int HW)
{
    const size_t total = (size_t)N * C * HW;
    gap_bwd_kernel<<<blocks_for(total, 256), 256, 0, gpu_stream()>>>(dinp, dout, total, HW);
    LAUNCH_OK();
}

/* As the CPU: only real cells are visited (padding never wins), the first
 * maximum in row-major window order wins, a NaN wins at once. */
__global__ void maxpool_fwd_kernel(float *out, int32_t *argmax, const float *inp, int planes,
                                   int H, int W, int OH, int OW, int K, int stride, int pad)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)planes * OH * OW) return;
    const int ow = (int)(i % OW), oh = (int)((i / OW) % OH);
    const size_t pl = i / ((size_t)OH * OW);
    const float *x = inp + pl * H * W;
    const int h0 = oh * stride - pad, w0 = ow * stride - pad;
    const int ha = max(h0, 0), hb = min(h0 + K, H), wa = max(w0, 0), wb = min(w0 + K, W);
    float best = -INFINITY;
    int at = ha * W + wa;
    for (int ih = ha; ih < hb; ih++)
        for (int iw = wa; iw < wb; iw++) {
            const float v = x[ih * W + iw];
            if (v > best || isnan(v)) {
                best = v;
                at = ih * W + iw;
                if (isnan(v)) goto done;
            }
        }
done:
    out[i] = best;
    argmax[i] = at;
}

/* Gather: each input cell sums the gradients of the windows whose winner
 * it is (no atomics; windows overlap when stride < K). */
__global__ void maxpool_bwd_kernel(float *dinp, const float *dout, const int32_t *argmax,
                                   int planes, int H, int W, int OH, int OW, int K, int stride,
                                   int pad)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)planes * H * W) return;
    const int iw = (int)(i % W), ih = (int)((i / W) % H);
    const size_t pl = i / ((size_t)H * W);
    const int idx = ih * W + iw;
    /* windows oh with oh*stride - pad <= ih < oh*stride - pad + K */
    const int oh0 = max(0, (ih + pad - K + stride) / stride), oh1 = min(OH - 1, (ih + pad) / stride);
    const int ow0 = max(0, (iw + pad - K + stride) / stride), ow1 = min(OW - 1, (iw + pad) / stride);
    float acc = 0.0f;
    for (int oh = oh0; oh <= oh1; oh++)
        for (int ow = ow0; ow <= ow1; ow++) {
            const size_t o = (pl * OH + oh) * OW + ow;
            if (argmax[o] == idx) acc += dout[o];
        }
    dinp[i] += acc;
}

static int pool_out(int in, int K, int stride, int pad) { return (in + 2 * pad - K) / stride + 1; }

extern "C" void maxpool2d_forward_gpu(float *out, int32_t *argmax, const float *inp, int N, int C,
                                      int H, int W, int K, int stride, int pad)
{
    const int OH = pool_out(H, K, stride, pad), OW = pool_out(W, K, stride, pad);
    const size_t n = (size_t)N * C * OH * OW;
    maxpool_fwd_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(out, argmax, inp, N * C, H, W,
                                                                      OH, OW, K, stride, pad);
    LAUNCH_OK();
}

extern "C" void maxpool2d_backward_gpu(float *dinp, const float *dout, const int32_t *argmax,
                                       int N, int C, int H, int W, int K, int stride, int pad)
{
    const int OH = pool_out(H, K, stride, pad), OW = pool_out(W, K, stride, pad);
    const size_t n = (size_t)N * C * H * W;
    maxpool_bwd_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(dinp, dout, argmax, N * C, H,
                                                                      W, OH, OW, K, stride, pad);
    LAUNCH_OK();
}

/* ---- layer norm ------------------------------------------------------------------------ */

/* One block per row; two passes as the CPU (mean, then squared deviations). */
__global__ void layernorm_fwd_kernel(float *out, float *mean, float *rstd, const float *inp,
                                     const float *w, const float *b, int C, float eps)
{
    const float *x = inp + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    double s = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[c];
    const double m = block_sum(s) / C;
    double v = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const double d = x[c] - m;
        v += d * d;
    }
    v = block_sum(v);
    const float fm = (float)m, rs = (float)(1.0 / sqrt(v / C + (double)eps));
    if (threadIdx.x == 0) mean[blockIdx.x] = fm, rstd[blockIdx.x] = rs;
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = (x[c] - fm) * rs * w[c] + b[c];
}

__global__ void layernorm_bwd_dx_kernel(float *dinp, const float *dout, const float *inp,
                                        const float *w, const float *mean, const float *rstd,
                                        int C)
{
    const size_t o = (size_t)blockIdx.x * C;
    const float m = mean[blockIdx.x], rs = rstd[blockIdx.x];
    double sg = 0.0, sgx = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float g = dout[o + c] * w[c];
        sg += g;
        sgx += g * ((inp[o + c] - m) * rs);
    }
    sg = block_sum(sg);
    sgx = block_sum(sgx);
    const float mg = (float)(sg / C), mgx = (float)(sgx / C);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float xh = (inp[o + c] - m) * rs;
        dinp[o + c] += rs * (dout[o + c] * w[c] - mg - xh * mgx);
    }
}

__global__ void layernorm_bwd_dw_kernel(float *dw, float *db, const float *dout, const float *inp,
                                        const float *mean, const float *rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double aw = 0.0, ab = 0.0;
    for (int n = 0; n < N; n++) {
        const float d = dout[(size_t)n * C + c];
        aw += d * ((inp[(size_t)n * C + c] - mean[n]) * rstd[n]);
        ab += d;
    }
    dw[c] += (float)aw;
    db[c] += (float)ab;
}

extern "C" void layernorm_forward_gpu(float *out, float *mean, float *rstd, const float *inp,
                                      const float *w, const float *b, int N, int C, float eps)
{
    layernorm_fwd_kernel<<<N, 256, 0, gpu_stream()>>>(out, mean, rstd, inp, w, b, C, eps);
    LAUNCH_OK();
}

extern "C" void layernorm_backward_gpu(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C)
{
    layernorm_bwd_dw_kernel<<<blocks_for(C, 128), 128, 0, gpu_stream()>>>(dw, db, dout, inp, mean,
                                                                          rstd, N, C);
    LAUNCH_OK();
    layernorm_bwd_dx_kernel<<<N, 256, 0, gpu_stream()>>>(dinp, dout, inp, w, mean, rstd, C);
    LAUNCH_OK();
}

/* ---- softmax and L2 normalisation (one block per row) ------------------------------------ */

/* Rows of length C; causal T > 0 masks columns after (row mod T), as the
 * attention probabilities (masked entries exact zeros). */
__global__ void softmax_rows_kernel(float *out, const float *inp, int C, float scale, int causal_T)
{
    const size_t o = (size_t)blockIdx.x * C;
    const int n = causal_T ? (int)(blockIdx.x % causal_T) + 1 : C;
    __shared__ float smax;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < n; c += blockDim.x) mx = fmaxf(mx, inp[o + c] * scale);
    for (int k = 16; k > 0; k >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, k));
    __shared__ float wm[32];
    if ((threadIdx.x & 31) == 0) wm[threadIdx.x >> 5] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = -INFINITY;
        for (int k = 0; k < (int)((blockDim.x + 31) >> 5); k++) m = fmaxf(m, wm[k]);
        smax = m;
    }
    __syncthreads();
    mx = smax;
    double s = 0.0;
    for (int c = threadIdx.x; c < n; c += blockDim.x) {
        const float e = expf(inp[o + c] * scale - mx);
        out[o + c] = e;
        s += e;
    }
    s = block_sum(s);
    const float inv = (float)(1.0 / s);
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[o + c] = c < n ? out[o + c] * inv : 0.0f;
}

/* dinp += scale * y * (dy - sum(dy * y)) per row; with causal_T the
 * masked columns get 0 (their y is 0). acc = 0 writes instead of adding. */
__global__ void softmax_bwd_kernel(float *dinp, const float *dout, const float *out, int C,
                                   float scale, int causal_T, int acc)
{
    const size_t o = (size_t)blockIdx.x * C;
    const int n = causal_T ? (int)(blockIdx.x % causal_T) + 1 : C;
    double dot = 0.0;
    for (int c = threadIdx.x; c < n; c += blockDim.x) dot += (double)dout[o + c] * out[o + c];
    const float fdot = (float)block_sum(dot);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float g = c < n ? scale * out[o + c] * (dout[o + c] - fdot) : 0.0f;
        dinp[o + c] = acc ? dinp[o + c] + g : g;
    }
}

extern "C" void softmax_forward_gpu(float *out, const float *inp, int N, int C, float scale)
{
    softmax_rows_kernel<<<N, 128, 0, gpu_stream()>>>(out, inp, C, scale, 0);
    LAUNCH_OK();
}

extern "C" void softmax_backward_gpu(float *dinp, const float *dout, const float *out, int N,
                                     int C, float scale)
{
    softmax_bwd_kernel<<<N, 128, 0, gpu_stream()>>>(dinp, dout, out, C, scale, 0, 1);
    LAUNCH_OK();
}

#define L2NORM_EPS 1e-12

__global__ void l2norm_fwd_kernel(float *out, float *norm, const float *inp, int C)
{
    const size_t o = (size_t)blockIdx.x * C;
    double ss = 0.0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += (double)inp[o + c] * inp[o + c];
    const double nr = sqrt(block_sum(ss));
    if (threadIdx.x == 0) norm[blockIdx.x] = (float)nr;
    const float inv = (float)(1.0 / (nr > L2NORM_EPS ? nr : L2NORM_EPS));
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[o + c] = inp[o + c] * inv;
}

__global__ void l2norm_bwd_kernel(float *dinp, const float *dout, const float *out,
                                  const float *norm, int C)
{
    const size_t o = (size_t)blockIdx.x * C;
    const float nr = norm[blockIdx.x];
    if ((double)nr >= L2NORM_EPS) {
        double dot = 0.0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) dot += (double)dout[o + c] * out[o + c];
        const float fdot = (float)block_sum(dot), inv = (float)(1.0 / nr);
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dinp[o + c] += (dout[o + c] - out[o + c] * fdot) * inv;
    } else {
        const float inv = (float)(1.0 / L2NORM_EPS);
        for (int c = threadIdx.x; c < C; c += blockDim.x) dinp[o + c] += dout[o + c] * inv;
    }
}

extern "C" void l2norm_forward_gpu(float *out, float *norm, const float *inp, int N, int C)
{
    l2norm_fwd_kernel<<<N, 128, 0, gpu_stream()>>>(out, norm, inp, C);
    LAUNCH_OK();
}

extern "C" void l2norm_backward_gpu(float *dinp, const float *dout, const float *out,
                                    const float *norm, int N, int C)
{
    l2norm_bwd_kernel<<<N, 128, 0, gpu_stream()>>>(dinp, dout, out, norm, C);
    LAUNCH_OK();
}

/* ---- embeddings -------------------------------------------------------------------------- */

__global__ void embedding_fwd_kernel(float *out, const int32_t *tok, const float *wte,
                                     const float *wpe, int BT, int T, int C)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)BT * C) return;
    const int c = (int)(i % C), bt = (int)(i / C), t = bt % T;
    out[i] = wte[(size_t)tok[bt] * C + c] + (wpe ? wpe[(size_t)t * C + c] : 0.0f);
}

__global__ void embedding_bwd_wte_kernel(float *dwte, const float *dout, const int32_t *tok,
                                         int BT, int C)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)BT * C) return;
    const int c = (int)(i % C), bt = (int)(i / C);
    atomicAdd(dwte + (size_t)tok[bt] * C + c, dout[i]);
}

/* dwpe[t, c] += sum_b dout[b, t, c], b in order. */
__global__ void embedding_bwd_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    double acc = 0.0;
    for (int b = 0; b < B; b++) acc += dout[(size_t)b * T * C + i];
    dwpe[i] += (float)acc;
}

extern "C" void embedding_forward_gpu(float *out, const int32_t *tokens, const float *wte,
                                      const float *wpe, int B, int T, int C, int V)
{
    (void)V; /* tokens were checked against V when the data set was opened */
    const size_t n = (size_t)B * T * C;
    embedding_fwd_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(out, tokens, wte, wpe, B * T,
                                                                        T, C);
    LAUNCH_OK();
}

extern "C" void embedding_backward_gpu(float *dwte, float *dwpe, const float *dout,
                                       const int32_t *tokens, int B, int T, int C, int V)
{
    (void)V;
    const size_t n = (size_t)B * T * C;
    embedding_bwd_wte_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(dwte, dout, tokens,
                                                                            B * T, C);
    LAUNCH_OK();
    if (!dwpe) return;
    embedding_bwd_wpe_kernel<<<blocks_for((size_t)T * C, 256), 256, 0, gpu_stream()>>>(dwpe, dout,
                                                                                         B, T, C);
    LAUNCH_OK();
}

/* ---- attention ----------------------------------------------------------------------------
 * Per (b, h) the same products as the CPU (src/nn/attention.c), as
 * pointer-array batched GEMMs over the B*NH heads reading the strided
 * slices of qkv in place. Scratch: [B*NH, T, T] floats (dP, then dS, in
 * backward), then ten arrays of B*NH device pointers. */

enum { PTR_ARRAYS = 10 };

size_t attention_scratch_floats_gpu(int B, int T, int C, int NH)
{
    (void)C;
    const size_t nbh = (size_t)B * NH;
    size_t f = nbh * T * T;
    f += f & 1; /* 8-byte alignment of the pointers */
    return f + 2 * PTR_ARRAYS * nbh;
}

/* The heads' pointers: q, k, v (into qkv), o (into out, ld C), p (into
 * att, ld T), and the same for the gradient side. */
__global__ void head_ptrs_kernel(const float **P, const float *base3, const float *baseC,
                                 const float *baseTT, const float *g3, const float *gC,
                                 const float *gTT, int nbh, int NH, int T, int C)
{
    int bh = blockIdx.x * blockDim.x + threadIdx.x;
    if (bh >= nbh) return;
    const int b = bh / NH, h = bh % NH, hs = C / NH;
    const size_t o3 = (size_t)b * T * 3 * C + (size_t)h * hs, oC = (size_t)b * T * C + (size_t)h * hs;
    const size_t oTT = (size_t)bh * T * T;
    P[0 * nbh + bh] = base3 ? base3 + o3 : NULL;          /* q */
    P[1 * nbh + bh] = base3 ? base3 + o3 + C : NULL;      /* k */
    P[2 * nbh + bh] = base3 ? base3 + o3 + 2 * C : NULL;  /* v */
    P[3 * nbh + bh] = baseC ? baseC + oC : NULL;          /* o / dout */
    P[4 * nbh + bh] = baseTT ? baseTT + oTT : NULL;       /* p (att) */
    P[5 * nbh + bh] = g3 ? g3 + o3 : NULL;                /* dq */
    P[6 * nbh + bh] = g3 ? g3 + o3 + C : NULL;            /* dk */
    P[7 * nbh + bh] = g3 ? g3 + o3 + 2 * C : NULL;        /* dv */
    P[8 * nbh + bh] = gC ? gC + oC : NULL;                /* unused */
    P[9 * nbh + bh] = gTT ? gTT + oTT : NULL;             /* ds (scratch) */
}

static const float **head_ptrs(float *scratch, const float *qkv, const float *oc, const float *att,
                               const float *dqkv, const float *ds, int B, int T, int C, int NH)
{
    const int nbh = B * NH;
    size_t f = (size_t)nbh * T * T;
    f += f & 1;
    const float **P = (const float **)(scratch + f);
    head_ptrs_kernel<<<blocks_for(nbh, 128), 128, 0, gpu_stream()>>>(P, qkv, oc, att, dqkv, NULL,
                                                                      ds, nbh, NH, T, C);
    LAUNCH_OK();
    return P;
}

static void batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                    const float *const *A, int lda, const float *const *Bp, int ldb, float beta,
                    const float *const *Cp, int ldc, int count)
{
    CUBLAS_OK(cublasGemmBatchedEx(gpu_cublas(), ta, tb, m, n, k, &alpha, (const void *const *)A,
                                  CUDA_R_32F, lda, (const void *const *)Bp, CUDA_R_32F, ldb, &beta,
                                  (void *const *)Cp, CUDA_R_32F, ldc, count, gpu_compute(0),
                                  CUBLAS_GEMM_DEFAULT));
}

extern "C" void attention_forward_gpu(float *out, float *att, float *scratch, const float *qkv,
                                      int B, int T, int C, int NH, int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH, C3 = 3 * C, nbh = B * NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const float **P = head_ptrs(scratch, qkv, out, att, NULL, NULL, B, T, C, NH);
    const float *const *q = P, *const *k = P + nbh, *const *v = P + 2 * nbh;
    const float *const *o = P + 3 * nbh, *const *p = P + 4 * nbh;
    /* S^T [Tk, Tq] = K . Q^T, scaled */
    batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, scale, k, C3, q, C3, 0.0f, p, T, nbh);
    softmax_rows_kernel<<<nbh * T, 128, 0, gpu_stream()>>>(att, att, T, 1.0f, causal ? T : 0);
    LAUNCH_OK();
    /* O^T [hs, Tq] = V^T . P^T */
    batched(CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, v, C3, p, T, 0.0f, o, C, nbh);
}

extern "C" void attention_backward_gpu(float *dqkv, float *scratch, const float *dout,
                                       const float *qkv, const float *att, int B, int T, int C,
                                       int NH, int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH, C3 = 3 * C, nbh = B * NH;
    const float scale = 1.0f / sqrtf((float)hs);
    float *ds = scratch;
    const float **P = head_ptrs(scratch, qkv, dout, att, dqkv, ds, B, T, C, NH);
    const float *const *q = P, *const *k = P + nbh, *const *v = P + 2 * nbh;
    const float *const *dO = P + 3 * nbh, *const *p = P + 4 * nbh;
    const float *const *dq = P + 5 * nbh, *const *dk = P + 6 * nbh, *const *dv = P + 7 * nbh;
    const float *const *dsp = P + 9 * nbh;
    /* dP^T [Tk, Tq] = V . dO^T */
    batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, 1.0f, v, C3, dO, C, 0.0f, dsp, T, nbh);
    /* dV^T [hs, Tk] += dO^T . P */
    batched(CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, dO, C, p, T, 1.0f, dv, C3, nbh);
    /* dS = scale * P * (dP - rowsum(dP * P)), in place */
    softmax_bwd_kernel<<<nbh * T, 128, 0, gpu_stream()>>>(ds, ds, att, T, scale, causal ? T : 0, 0);
    LAUNCH_OK();
    /* dQ^T [hs, Tq] += K^T . dS^T;  dK^T [hs, Tk] += Q^T . dS */
    batched(CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, k, C3, dsp, T, 1.0f, dq, C3, nbh);
    batched(CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, q, C3, dsp, T, 1.0f, dk, C3, nbh);
}

/* ---- AdamW: aes_adamw_step's arithmetic (src/optim/adamw.c) element for element ---- */

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1,
                             float b2, float one_m_b1, float one_m_b2, float keep, float neg_step,
                             float bc2_sqrt, float eps, int decay, const float *ctrl)
{
    /* ctrl (device): [0] the clip factor, [1] 1 to update, 0 to skip */
    if (ctrl && ctrl[1] == 0.0f) return;
    const float cf = ctrl ? ctrl[0] : 1.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float w = p[i];
        if (decay) w = w * keep;
        const float gi = ctrl ? __fmul_rn(g[i], cf) : g[i]; /* as aes_scale, then the step */
        const float mi = __fmaf_rn(gi, one_m_b1, __fmul_rn(m[i], b1));
        const float vi = __fmaf_rn(__fmul_rn(one_m_b2, gi), gi, __fmul_rn(v[i], b2));
        m[i] = mi;
        v[i] = vi;
        const float d = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        p[i] = __fadd_rn(w, __fdiv_rn(__fmul_rn(neg_step, mi), d));
    }
}

extern "C" void aes_adamw_step_gpu(float *p, const float *g, float *m, float *v, size_t n, float lr,
                                   const aes_adamw *cfg, int decay, int64_t t)
{
    aes_adamw_step_gpu_ctrl(p, g, m, v, n, lr, cfg, decay, t, NULL);
}

extern "C" void aes_adamw_step_gpu_ctrl(float *p, const float *g, float *m, float *v, size_t n,
                                        float lr, const aes_adamw *cfg, int decay, int64_t t,
                                        const float *ctrl)
{
    if (t < 1) aes_internal_error("AdamW step count %lld: must be >= 1", (long long)t);
    if (n == 0) return;
    const float b1 = cfg->beta1, b2 = cfg->beta2;
    const double bc1 = 1.0 - pow((double)b1, (double)t), bc2 = 1.0 - pow((double)b2, (double)t);
    adamw_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(
        p, g, m, v, n, b1, b2, (float)(1.0 - (double)b1), (float)(1.0 - (double)b2),
        (float)(1.0 - (double)lr * (double)cfg->weight_decay), (float)(-((double)lr / bc1)),
        (float)sqrt(bc2), cfg->eps, decay != 0, ctrl);
    LAUNCH_OK();
}

/* ---- the rest of the update ----------------------------------------------------------- */

__global__ void scale_host_kernel(float *g, size_t n, float s)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        g[i] *= s;
}

extern "C" void aes_scale_gpu(float *g, size_t n, float s)
{
    if (n == 0 || s == 1.0f) return;
    scale_host_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(g, n, s);
    LAUNCH_OK();
}

/* A fixed grid of SUMSQ_BLOCKS blocks, each striding the same elements
 * every time, then one thread adding the block sums in order: the result
 * depends on n alone. */
enum { SUMSQ_BLOCKS = 256 };

__global__ void sumsq_blocks_kernel(double *part, const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    s = block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_in_order_kernel(double *out, const double *part, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += part[i];
    out[0] = s;
}

extern "C" size_t aes_sumsq_scratch_gpu(void) { return SUMSQ_BLOCKS + 1; }

extern "C" void aes_sumsq_gpu(const float *g, size_t n, double *scratch)
{
    sumsq_blocks_kernel<<<SUMSQ_BLOCKS, 256, 0, gpu_stream()>>>(scratch + 1, g, n);
    LAUNCH_OK();
    sum_in_order_kernel<<<1, 1, 0, gpu_stream()>>>(scratch, scratch + 1, SUMSQ_BLOCKS);
    LAUNCH_OK();
}

/* The step's decision on the device, from the squared gradient norm and
 * the loss: ctrl[0] the clip factor (aes_clip_factor's arithmetic),
 * ctrl[1] 1 when both are finite (update) and 0 when not (skip). */
__global__ void step_control_kernel(float *ctrl, const double *sumsq, double loss, float max_norm)
{
    const double norm = sqrt(sumsq[0]);
    const int ok = isfinite(loss) && isfinite(norm);
    float c = 1.0f;
    if (max_norm > 0.0f) {
        c = max_norm / ((float)norm + 1e-6f);
        c = c < 1.0f ? c : 1.0f;
    }
    ctrl[0] = c;
    ctrl[1] = ok ? 1.0f : 0.0f;
}

extern "C" void aes_step_control_gpu(float *ctrl, const double *sumsq, double loss, float max_norm)
{
    step_control_kernel<<<1, 1, 0, gpu_stream()>>>(ctrl, sumsq, loss, max_norm);
    LAUNCH_OK();
}

__global__ void clamp_max_kernel(float *p, size_t n, float cap)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && p[i] > cap) p[i] = cap;
}

extern "C" void aes_clamp_max_gpu(float *p, size_t n, float cap)
{
    if (n == 0) return;
    clamp_max_kernel<<<blocks_for(n, 256), 256, 0, gpu_stream()>>>(p, n, cap);
    LAUNCH_OK();
}
